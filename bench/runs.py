"""The figures of the run path: P1 and P2 (a resubmission), P3 and P6 (a busy slot), P7 (a typical
first submission), the seed recipe they are compared with, and where a build's and a run's time goes."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from common import (
    P6_N,
    REPEATS,
    REPO,
    REQUIREMENTS,
    SEED_REPEATS,
    SKIP_SEED,
    TRIVIAL_MAIN,
    TYPICAL_FIRST,
    WORK,
    Figure,
    check_succeeded,
    make_zip,
    median,
    new_to_the_layer_cache,
    say,
    spread,
    submit,
    timeline,
    trivial_zip,
    wait_finished,
)
from django.conf import settings

from runner import docker_api

# --- the seed recipe -----------------------------------------------------------------------------


def seed_build(zip_path: Path) -> tuple[float, str]:
    """Build the seed recipe for one submission; returns (seconds, build log). Tried twice: on a
    shared machine the engine or the package index may drop a long build."""
    try:
        return _seed_build(zip_path)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        say(f"the seed recipe failed, once more: {str(exc)[-200:]}")
        return _seed_build(zip_path)


def _seed_build(zip_path: Path) -> tuple[float, str]:
    return timed_build(
        "seed",
        "the seed recipe",
        {"submission.zip": zip_path.read_bytes()},
        ["--build-arg", f"BASE_IMAGE={os.environ.get('M2D_BASE_IMAGE', 'm2d-base:bookworm')}"],
    )


def timed_build(kind: str, what: str, files: dict[str, bytes], arguments: list[str]) -> tuple[float, str]:
    """`docker build` of bench/KIND/Dockerfile beside `files`, timed; returns (seconds, build log).
    The image is removed again."""
    with tempfile.TemporaryDirectory(dir=WORK) as ctx:
        (Path(ctx) / "Dockerfile").write_bytes((REPO / f"bench/{kind}/Dockerfile").read_bytes())
        for name, data in files.items():
            (Path(ctx) / name).write_bytes(data)
        tag = f"m2d-bench-{kind}:{uuid.uuid4().hex[:8]}"
        started = time.monotonic()
        proc = subprocess.run(
            [
                "docker", "build", "--rm", "--force-rm", *arguments, "-t", tag,
                "--label", f"org.m2d.instance={settings.M2D_INSTANCE}",
                ctx,
            ],
            capture_output=True, text=True, env={**os.environ, "DOCKER_BUILDKIT": "0"}, timeout=1800,
        )  # fmt: skip
        seconds = time.monotonic() - started
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed to build: {(proc.stdout + proc.stderr)[-1500:]}")
    return seconds, proc.stdout


def downloads(build_log: str) -> list[str]:
    return re.findall(r"Downloading (\S+)", build_log)


# --- P1, P2: a resubmission on an idle slot ------------------------------------------------------


def p1_p2(user, figures: dict[str, Figure], costs: dict[str, list[float]]) -> None:
    say(f"P1/P2: a warm-up submission, then {REPEATS} code-only resubmissions, one at a time")
    check_succeeded(wait_finished([submit(user, trivial_zip("warm")).pk], 600))
    for _ in range(REPEATS):
        sub = submit(user, trivial_zip("p1"))
        (sub,) = wait_finished([sub.pk], 300)
        check_succeeded([sub])
        t = timeline(sub)
        figures["P1"].values.append(t.build_end - t.received)
        figures["P2"].values.append(t.first_line - t.received)
        costs["accepted -> build starts (task dispatch)"].append(t.build_start - t.received)
        costs["build (context upload, cache lookups, code layer)"].append(t.build_end - t.build_start)
        costs["image ready -> slot claims it"].append(t.run_start - t.build_end)
        costs["claimed -> first line (export volume, gateway, forwarder, container, python)"].append(
            t.first_line - t.run_start
        )
        costs["last line -> run recorded finished (clean-up, provenance, metrics)"].append(t.run_end - t.last_line)
    if not SKIP_SEED:
        say(f"P1: the seed recipe for the same code-only change, {SEED_REPEATS}x (downloads every requirement)")
        try:
            for _ in range(SEED_REPEATS):
                seconds, _log = seed_build(trivial_zip("seed"))
                figures["P1"].seed.append(seconds)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            figures["P1"].note += f" Seed recipe not measured: {str(exc)[-300:]}"
    p1 = figures["P1"]
    faster = median(p1.seed) / median(p1.values) if p1.seed else None
    if faster:
        p1.note = f"{faster:.0f}x faster than the seed recipe (medians)." + p1.note
    p1.met = median(p1.values) <= 2.0 and (faster is None or faster >= 20)
    figures["P2"].met = median(figures["P2"].values) <= 3.0


# --- P3, P6: a busy slot -------------------------------------------------------------------------


def container_start_seconds(client) -> list[float]:
    image = settings.M2D_RUNTIME_IMAGE
    times = []
    for _ in range(5):
        started = time.monotonic()
        client.containers.run(image, ["true"], remove=True, network_mode="none",
                              labels={"org.m2d.instance": settings.M2D_INSTANCE})  # fmt: skip
        times.append(time.monotonic() - started)
    return times


def p3_p6(user, figures: dict[str, Figure], costs: dict[str, list[float]], container_start: float) -> None:
    say(f"P3/P6: {P6_N} trivial submissions at once through one slot")
    zips = [trivial_zip("p6") for _ in range(P6_N)]
    first = time.time()
    ids = [submit(user, z).pk for z in zips]
    subs = wait_finished(ids, P6_N * 60 + 300)
    check_succeeded(subs)
    lines = sorted((timeline(s) for s in subs), key=lambda t: t.run_start)
    total = max(t.run_end for t in lines) - first
    budget = P6_N * (container_start + 1.0)
    p6 = figures["P6"]
    p6.values = [total]
    p6.target = f"<= {P6_N} x (container start {container_start:.2f} s + 1 s) = {budget:.0f} s"
    p6.what = f"{P6_N} trivial submissions through one slot: first accepted -> last finished"
    per_run = [b.run_end - a.run_end for a, b in zip(lines, lines[1:], strict=False)]
    builds = [t.build_end - t.build_start for t in lines]
    p6.note = f"per submission: {spread(per_run, 's')}; each build {spread(builds, 's')}."
    p6.met = total <= budget
    run_phase_costs(set(ids), costs)
    say(f"P3: a run that sleeps while {REPEATS + 1} more are built and queued behind it")
    blocker = make_zip(
        WORK / "p3-blocker.zip",
        TRIVIAL_MAIN.format(nonce=uuid.uuid4()).replace("# ", f"time.sleep({3 * (REPEATS + 1)})  # "),
        REQUIREMENTS,
    )
    ids = [submit(user, blocker).pk] + [submit(user, trivial_zip("p3")).pk for _ in range(REPEATS + 1)]
    subs = wait_finished(ids, 600)
    check_succeeded(subs)
    lines = sorted((timeline(s) for s in subs), key=lambda t: t.run_start)
    p3 = figures["P3"]
    for prev, nxt in zip(lines, lines[1:], strict=False):
        if nxt.build_end <= prev.run_end:  # the next one was waiting: the slot was busy
            p3.values.append(nxt.run_start - prev.run_end)
            costs["busy slot: last line -> next first line (the real idle gap)"].append(nxt.first_line - prev.last_line)
    if p3.values:
        p3.met = median(p3.values) <= 1.0
    else:
        p3.note = "no pair of runs found with the next one already queued"


# --- P7: a typical first submission --------------------------------------------------------------


def p7(user, figures: dict[str, Figure]) -> None:
    fig = figures["P7"]
    repeats = max(1, REPEATS // 2)
    say("P7: a typical first submission (" + ", ".join(TYPICAL_FIRST) + f"), {repeats}x with new requirements")
    fetched: list[str] = []
    for _ in range(repeats):
        requirements = new_to_the_layer_cache(TYPICAL_FIRST)
        sub = submit(user, make_zip(WORK / "p7.zip", TRIVIAL_MAIN.format(nonce=uuid.uuid4()), requirements))
        (sub,) = wait_finished([sub.pk], 1800)
        check_succeeded([sub])
        t = timeline(sub)
        fig.values.append(t.build_end - t.received)
        log = settings.VAR_DIR / "logs" / str(sub.pk) / "build.log"
        fetched += downloads(log.read_text(errors="replace") if log.exists() else sub.build_log_tail)
    fig.met = not fetched
    fig.note = f"downloaded by the platform: {', '.join(fetched) or 'nothing'}."
    if SKIP_SEED:
        return
    seed_reqs = [r for r in TYPICAL_FIRST if not r.startswith("torch")]
    say("P7: the seed recipe with the same requirements minus torch (" + ", ".join(seed_reqs) + ")")
    try:
        seconds, log = seed_build(
            make_zip(WORK / "p7-seed.zip", TRIVIAL_MAIN.format(nonce=""), "\n".join(seed_reqs) + "\n")
        )
        fig.seed.append(seconds)
        fig.note += (
            f" Seed side without torch (its default wheel pulls a multi-GB CUDA build); "
            f"the seed downloaded {len(downloads(log))} files."
        )
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        fig.note += f" Seed recipe not measured (offline?): {str(exc)[-300:]}"


# --- where the time goes -------------------------------------------------------------------------


def engine_costs(client, costs: dict[str, list[float]]) -> None:
    runtime = settings.M2D_RUNTIME_IMAGE
    for _ in range(3):
        started = time.monotonic()
        fwd = client.containers.run(
            settings.M2D_FORWARDER_IMAGE, network_mode="none", detach=True, read_only=True, cap_drop=["ALL"],
            labels={"org.m2d.instance": settings.M2D_INSTANCE},
        )  # fmt: skip
        while b"ready" not in fwd.logs():
            time.sleep(0.01)
        costs["forwarder create + start -> ready"].append(time.monotonic() - started)
        fwd.remove(force=True)
        out = client.containers.run(
            runtime,
            ["python3", "-c", "import time; t = time.time(); import mlflow; print(time.time() - t)"],
            remove=True, network_mode="none", environment={"MLFLOW_DISABLE_TELEMETRY": "true"},
            labels={"org.m2d.instance": settings.M2D_INSTANCE},
        )  # fmt: skip
        costs["first import of mlflow (in a run container)"].append(float(out.decode().strip().splitlines()[-1]))


def cached_build_costs(costs: dict[str, list[float]]) -> None:
    """The same archive built again: every layer cached, so this is context upload + cache lookups."""
    archive = trivial_zip("ctx")
    for i in range(3):
        spec = docker_api.BuildSpec(
            submission_id=0,
            archive=archive,
            dockerfile=settings.M2D_DOCKER_SCRIPTS_DIR / "execute_code-without-gpu",
            runtime_image=settings.M2D_RUNTIME_IMAGE,
            tag=f"m2d-bench-cached:{settings.M2D_INSTANCE}",
            labels={"org.m2d.instance": settings.M2D_INSTANCE},
            log_path=WORK / "cached-build.log",
            timeout=600,
            log_max_bytes=1024**2,
        )
        started = time.monotonic()
        docker_api.build_image(spec)
        if i:  # the first one builds the code layer
            costs["build with every layer cached (context upload + cache lookups)"].append(time.monotonic() - started)
    docker_api.remove_image(spec.tag)


PHASES = re.compile(r"\[submission (\d+)\] submission \d+: run phases: (.*)$", re.M)


def run_phase_costs(ids: set[int], costs: dict[str, list[float]]) -> None:
    """Each step of these runs, as the run worker logged it (runner/phases.py)."""
    log = settings.VAR_DIR / "log" / f"{os.environ.get('M2D_STACK', 'bench')}-run-worker.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    for match in PHASES.finditer(text):
        if int(match[1]) not in ids:
            continue
        for step in match[2].split(", "):
            name, seconds, _unit = step.rsplit(" ", 2)
            costs.setdefault(f"run step: {name}", []).append(float(seconds))
