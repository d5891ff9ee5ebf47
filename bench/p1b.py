"""P1b: a resubmission that adds one package the runtime image does not hold.

The platform's build is timed the first time its package index sees that package (cold), then for
the same change with the index's cache warm; beside it the same change built with plain pip
straight from the upstream index (what the platform did before it had an index of its own) and
with the seed recipe; last, resubmissions that only reorder, repeat or comment requirement lines.
What the index fetched upstream is read from its log (`reading remote` lines); where a build's
time goes, from its log watched while it grows (the engine's log has no times of its own).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path

from common import (
    REPEATS,
    SEED_REPEATS,
    SKIP_SEED,
    TRIVIAL_MAIN,
    WORK,
    Figure,
    check_succeeded,
    make_zip,
    median,
    new_to_the_layer_cache,
    say,
    submit,
    timeline,
    wait_finished,
)
from django.conf import settings
from runs import downloads, seed_build, timed_build

BASE = ["pydicom==3.0.1"]
# Not in the runtime image; its one dependency (numpy>=2) is, so the change installs one package.
ADDED = "opencv-python-headless==4.13.0.92"
TARGET_SECONDS = 3.0
INDEX_CONTAINER = f"m2d-{os.environ.get('M2D_STACK', 'bench')}-index"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
STEP = re.compile(r"^Step \d+/\d+ : .*$", re.M)
UV_TIMES = re.compile(r"^(Resolved|Prepared|Installed) .*? in ([0-9.]+)(ms|s)\s*$", re.M)
REMOTE_URL = re.compile(r"reading remote: URL\('([^']*)'")


# --- what the index fetched upstream -------------------------------------------------------------


def index_fetches() -> list[str]:
    """The index's `reading remote` log lines so far, oldest first."""
    out = subprocess.run(["docker", "logs", INDEX_CONTAINER], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"could not read the package index's log: {out.stderr.strip()[-300:]}")
    return [line for line in (out.stdout + out.stderr).splitlines() if "reading remote" in line]


def files(count: int) -> str:
    return f"{count} file{'' if count == 1 else 's'}"


def fetched_names(lines: list[str]) -> str:
    """What those lines fetched, by file or project name only (no host)."""
    names = []
    for line in lines:
        match = REMOTE_URL.search(line)
        path = match[1].split("#")[0].rstrip("/") if match else ""
        names.append(path.rsplit("/", 1)[-1] or "?")
    return ", ".join(names)


# --- a build watched while it goes ---------------------------------------------------------------


class LogClock:
    """Each line of a build's log with the time it first appeared there, polled every 20 ms."""

    def __init__(self, path: Path):
        self.path, self.lines = path, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        offset, partial = 0, ""
        while not self._stop.wait(0.02):
            try:
                with open(self.path, "rb") as log:
                    log.seek(offset)
                    data = log.read()
            except FileNotFoundError:
                continue
            offset += len(data)
            *complete, partial = (partial + data.decode(errors="replace")).split("\n")
            now = time.time()
            self.lines += [(now, ANSI.sub("", line)) for line in complete]
            if any(line.startswith("Successfully built") for line in complete):
                return

    def stop(self) -> list[tuple[float, str]]:
        self._stop.set()
        self._thread.join()
        return self.lines


def build_log(sub) -> str:
    path = settings.VAR_DIR / "logs" / str(sub.pk) / "build.log"
    return ANSI.sub("", path.read_text(errors="replace") if path.exists() else sub.build_log_tail)


def requirements_step_cached(log: str) -> bool | None:
    """Whether the step installing the requirements came from the layer cache (None: no such step)."""
    for step in re.split(r"^(?=Step \d+/\d+ : )", log, flags=re.M):
        if step.startswith("Step ") and "install-requirements" in step.split("\n", 1)[0]:
            return " ---> Using cache" in step
    return None


def resubmit(user, tag: str, requirements: str, timeout: float):
    """Submit trivial code with these requirements and wait for it; returns (submission, its
    build log's lines with the time each appeared)."""
    zip_path = make_zip(
        WORK / f"p1b-{tag}-{uuid.uuid4().hex[:8]}.zip", TRIVIAL_MAIN.format(nonce=uuid.uuid4()), requirements
    )
    sub = submit(user, zip_path)
    clock = LogClock(settings.VAR_DIR / "logs" / str(sub.pk) / "build.log")
    try:
        (sub,) = wait_finished([sub.pk], timeout)
    finally:
        lines = clock.stop()
    check_succeeded([sub])
    return sub, lines


def where_the_time_goes(sub, lines: list[tuple[float, str]], costs: dict[str, list[float]]) -> None:
    """A warm build's phases: from the events, the watched log, and uv's own figures."""
    t = timeline(sub)
    steps = [(at, line) for at, line in lines if STEP.match(line)]
    built = next((at for at, line in lines if line.startswith("Successfully built")), None)
    if not steps or built is None:
        return
    first = steps[0][0]
    # The requirements step, from its header to the next: its container started, uv done, then
    # pip freeze, the container's exit and the layer's commit.
    marks: dict[str, float] = {}
    for at, line in lines:
        if STEP.match(line):
            if "header" in marks:
                marks["next"] = at
                break
            if "install-requirements" in line:
                marks["header"] = at
        elif "header" in marks and line.startswith(" ---> Running in"):
            marks["running"] = at
        elif "header" in marks and line.startswith("Installed "):
            marks["uv"] = at

    def add(name: str, value: float) -> None:
        costs.setdefault(f"P1b warm: {name}", []).append(value)

    add("accepted -> build starts (task dispatch)", t.build_start - t.received)
    add("build starts -> first step (index door, build context)", first - t.build_start)
    if {"header", "running", "uv", "next"} <= marks.keys():
        add("requirements step: its container created and started", marks["running"] - marks["header"])
        add("requirements step: uv (resolve, download from the index, install)", marks["uv"] - marks["running"])
        add("requirements step: pip freeze, exit, layer commit", marks["next"] - marks["uv"])
        add("the other steps (COPY, USER, WORKDIR, ENV, CMD, LABEL)", built - first - (marks["next"] - marks["header"]))
    add("built -> image ready (size check, provenance, queued)", t.build_end - built)
    for phase, value, unit in UV_TIMES.findall(build_log(sub)):
        add(f"uv's own figure: {phase.lower()}", float(value) / (1000 if unit == "ms" else 1))


# --- the same change without the platform --------------------------------------------------------


def upstream_index_url() -> str:
    """The upstream index the host's pip is configured with, as the package index mirrors it
    (scripts/services.sh); empty: pip's own default."""
    url = os.environ.get("PIP_INDEX_URL", "")
    if not url:
        out = subprocess.run(
            ["python3", "-m", "pip", "config", "get", "global.index-url"], capture_output=True, text=True
        )
        url = out.stdout.strip() if out.returncode == 0 else ""
    return url if url.startswith(("http://", "https://")) else ""


def plain_pip_build(requirements: str) -> tuple[float, str]:
    """bench/pip/Dockerfile with no layer cache; returns (seconds, build log)."""
    return timed_build(
        "pip",
        "plain pip",
        {"requirements.txt": requirements.encode()},
        [
            "--no-cache", "--network", "bridge",
            "--build-arg", f"RUNTIME_IMAGE={settings.M2D_RUNTIME_IMAGE}",
            "--build-arg", f"UPSTREAM_INDEX_URL={upstream_index_url()}",
        ],
    )  # fmt: skip


# --- P1b -----------------------------------------------------------------------------------------


def p1b(user, figures: dict[str, Figure], costs: dict[str, list[float]]) -> None:
    # Both new to the layer cache, which outlives a bench stack: the change is really built.
    base = new_to_the_layer_cache(BASE)
    changed = base + ADDED + "\n"
    say(f"P1b: a submission with {', '.join(BASE)}, then the same plus {ADDED}, its first time in the index")
    resubmit(user, "base", base, 1800)
    before = index_fetches()
    sub, _lines = resubmit(user, "cold", changed, 1800)
    fetched = index_fetches()[len(before) :]
    t = timeline(sub)
    cold = figures["P1b-cold"]
    cold.values.append(t.build_end - t.received)
    cold.note = f"the index fetched {files(len(fetched))} upstream: {fetched_names(fetched) or 'nothing'}."
    log = build_log(sub)
    uv = ", ".join(f"{phase.lower()} in {value} {unit}" for phase, value, unit in UV_TIMES.findall(log))
    cold.note += f" uv: {uv or 'no figures in the build log'}."
    if requirements_step_cached(log):
        cold.note += " The requirements step came from the layer cache: not a cold build."

    say(f"P1b: the same change {REPEATS}x with the index warm, each with requirements new to the layer cache")
    warm = figures["P1b"]
    before = index_fetches()
    for i in range(REPEATS):
        last = new_to_the_layer_cache([*BASE, ADDED])
        sub, lines = resubmit(user, f"warm{i}", last, 600)
        if requirements_step_cached(build_log(sub)):
            warm.note += f" Warm build {i + 1} came from the layer cache, left out."
            continue
        t = timeline(sub)
        warm.values.append(t.build_end - t.received)
        where_the_time_goes(sub, lines, costs)
    fetched = index_fetches()[len(before) :]
    warm.note += f" The index fetched {files(len(fetched))} upstream meanwhile{': ' if fetched else '.'}"
    warm.note += f"{fetched_names(fetched)}." if fetched else ""
    if warm.values:
        warm.met = median(warm.values) <= TARGET_SECONDS and not fetched

    say("P1b: resubmissions whose requirements only reorder, repeat, or comment the previous one's lines")
    lines = last.splitlines()
    reuse, cached = figures["P1b-reuse"], []
    for what, text in (
        ("reordered", lines[::-1]),
        ("repeated", [*lines[::-1], lines[-1]]),
        ("commented", [*lines[::-1], f"# {uuid.uuid4()}"]),
    ):
        sub, _lines = resubmit(user, what, "\n".join(text) + "\n", 600)
        t = timeline(sub)
        reuse.values.append(t.build_end - t.received)
        cached.append(f"{what}: {'yes' if requirements_step_cached(build_log(sub)) else 'no'}")
    reuse.note = f"requirements step `Using cache`: {'; '.join(cached)}."

    say(f"P1b: the same change with plain pip from upstream, no layer cache, {SEED_REPEATS}x")
    pip = figures["P1b-pip"]
    try:
        for _ in range(SEED_REPEATS):
            seconds, log = plain_pip_build(changed)
            pip.values.append(seconds)
        pip.note = f"pip downloaded {files(len(downloads(log)))} (the last time)."
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        pip.note = f"not measured (offline?): {str(exc)[-300:]}"
    if warm.values and pip.values:
        warm.note = f"{median(pip.values) / median(warm.values):.1f}x faster than plain pip (medians)." + warm.note

    if SKIP_SEED:
        return
    say(f"P1b: the seed recipe for the same change, {SEED_REPEATS}x")
    try:
        for _ in range(SEED_REPEATS):
            seconds, _log = seed_build(make_zip(WORK / "p1b-seed.zip", TRIVIAL_MAIN.format(nonce=""), changed))
            warm.seed.append(seconds)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        warm.note += f" Seed recipe not measured: {str(exc)[-300:]}"
