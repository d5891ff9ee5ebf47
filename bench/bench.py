"""The performance figures P1-P7, measured against a running stack (bench/run.sh starts one).

Submissions go through the same service the portal uses (`submission_create`); times come from
the submissions' events and from the first line each `main.py` prints (its own `time.time()`),
all on this machine's clock. Every figure is given as min / median / max over its repeats.
"""

from __future__ import annotations

import http.client
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "m2d.settings")

import django  # noqa: E402

django.setup()

import docker  # noqa: E402
import requests  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402

from submissions.models import Submission, SubmissionEvent  # noqa: E402
from submissions.services import submission_cancel, submission_create  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
REPEATS = int(os.environ.get("BENCH_REPEATS", "3" if QUICK else "5"))
SEED_REPEATS = int(os.environ.get("BENCH_SEED_REPEATS", "1" if QUICK else "2"))
P6_N = int(os.environ.get("BENCH_P6_N", "10" if QUICK else "100"))
P4_SECONDS = int(os.environ.get("BENCH_P4_SECONDS", "8" if QUICK else "15"))
P4_ROUNDS = int(os.environ.get("BENCH_P4_ROUNDS", "2" if QUICK else "3"))
P4_KIND_SECONDS = max(2, P4_SECONDS // 3)
P4_ALONE_SECONDS = 2
P5_MB = int(os.environ.get("BENCH_P5_MB", "100" if QUICK else "500"))
SKIP_SEED = os.environ.get("BENCH_SKIP_SEED") == "1"
PORTAL = os.environ.get("M2D_PORTAL_URL", "http://127.0.0.1:8000")
WORK = settings.VAR_DIR / "bench-work"
S = Submission.Status
FINISHED = set(Submission.FINISHED)

REQUIREMENTS = (REPO / "sample_code/toy-dataset/requirements.txt").read_text()
TYPICAL_FIRST = ["mlflow", "numpy", "pandas", "scikit-learn", "torch==2.13.0"]
TRIVIAL_MAIN = 'import time\nprint("bench-first-line", time.time())\n# {nonce}\nprint("bench-last-line", time.time())\n'


def say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


# --- figures -------------------------------------------------------------------------------------


@dataclass
class Figure:
    name: str
    what: str
    target: str
    values: list[float] = field(default_factory=list)
    unit: str = "s"
    seed: list[float] = field(default_factory=list)
    met: bool | None = None
    note: str = ""

    def measured(self) -> str:
        return spread(self.values, self.unit) if self.values else "not measured"

    def seed_text(self) -> str:
        return spread(self.seed, "s") if self.seed else ""


def spread(values: list[float], unit: str) -> str:
    fmt = "{:.0f}" if unit in ("MB", "ms", "/s") and max(values) >= 10 else "{:.2f}"
    if len(values) == 1:
        return f"{fmt.format(values[0])} {unit} (n=1)"
    return (
        f"{fmt.format(min(values))} / {fmt.format(statistics.median(values))} / "
        f"{fmt.format(max(values))} {unit} (n={len(values)})"
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --- submitting ----------------------------------------------------------------------------------


def make_zip(path: Path, main_py: str, requirements: str, payload_mb: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("main.py", main_py)
        zf.writestr("requirements.txt", requirements)
        if payload_mb:
            with zf.open(zipfile.ZipInfo("data.bin"), "w", force_zip64=True) as data:
                for _ in range(payload_mb):
                    data.write(os.urandom(1024 * 1024))
    return path


def trivial_zip(tag: str) -> Path:
    return make_zip(WORK / f"{tag}-{uuid.uuid4().hex[:8]}.zip", TRIVIAL_MAIN.format(nonce=uuid.uuid4()), REQUIREMENTS)


def submit(user, zip_path: Path) -> Submission:
    with open(zip_path, "rb") as upload:
        return submission_create(by=user, upload=upload, filename=zip_path.name)


def wait_finished(ids: list[int], timeout: float) -> list[Submission]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        subs = list(Submission.objects.filter(pk__in=ids))
        if all(s.status in FINISHED for s in subs):
            return sorted(subs, key=lambda s: s.pk)
        time.sleep(0.2)
    raise TimeoutError(f"submissions {ids} did not finish in {timeout:.0f} s")


@dataclass
class Timeline:
    received: float
    build_start: float | None = None
    build_end: float | None = None
    run_start: float | None = None
    run_end: float | None = None
    first_line: float | None = None
    last_line: float | None = None


def timeline(sub: Submission) -> Timeline:
    t = Timeline(received=sub.created_at.timestamp())
    for event in SubmissionEvent.objects.filter(submission=sub).order_by("at", "id"):
        at = event.at.timestamp()
        if event.to_status == S.BUILDING and t.build_start is None:
            t.build_start = at
        elif event.from_status == S.BUILDING and t.build_end is None:
            t.build_end = at
        elif event.to_status == S.RUNNING and t.run_start is None:
            t.run_start = at
        elif event.from_status == S.RUNNING and event.to_status in FINISHED and t.run_end is None:
            t.run_end = at
    log = settings.VAR_DIR / "logs" / str(sub.pk) / "run.log"
    text = log.read_text(errors="replace") if log.exists() else sub.run_log_tail
    if m := re.search(r"bench-first-line ([0-9.]+)", text):
        t.first_line = float(m.group(1))
    if m := re.search(r"bench-last-line ([0-9.]+)", text):
        t.last_line = float(m.group(1))
    return t


def check_succeeded(subs: list[Submission]) -> None:
    bad = [s for s in subs if s.status != S.SUCCEEDED]
    if bad:
        s = bad[0]
        raise RuntimeError(f"submission {s.pk} {s.status} ({s.failure_stage}): {s.reason[:800]}")


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
    with tempfile.TemporaryDirectory(dir=WORK) as ctx:
        (Path(ctx) / "Dockerfile").write_bytes((REPO / "bench/seed/Dockerfile").read_bytes())
        (Path(ctx) / "submission.zip").write_bytes(zip_path.read_bytes())
        tag = f"m2d-bench-seed:{uuid.uuid4().hex[:8]}"
        started = time.monotonic()
        proc = subprocess.run(
            [
                "docker", "build", "--rm", "--force-rm", "-t", tag,
                "--label", f"org.m2d.instance={settings.M2D_INSTANCE}",
                "--build-arg", f"BASE_IMAGE={os.environ.get('M2D_BASE_IMAGE', 'm2d-base:bookworm')}",
                ctx,
            ],
            capture_output=True, text=True, env={**os.environ, "DOCKER_BUILDKIT": "0"}, timeout=1800,
        )  # fmt: skip
        seconds = time.monotonic() - started
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the seed recipe failed to build: {(proc.stdout + proc.stderr)[-1500:]}")
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
    p6.note = f"per submission: {spread(per_run, 's')}."
    p6.met = total <= budget
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
        requirements = "\n".join(TYPICAL_FIRST) + f"\n# {uuid.uuid4()}\n"  # new file: no cached layer
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


# --- P4: pages under load ------------------------------------------------------------------------


def session_cookie(user) -> str:
    """A logged-in portal session for `user`, made the way django.contrib.auth.login makes one."""
    from importlib import import_module

    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return store.session_key


def seed_rows(researchers: int, per_researcher: int) -> list[tuple[object, list[int]]]:
    from accounts.services import researcher_approve, researcher_create

    say(f"P4: seeding {researchers * per_researcher} submissions of {researchers} researchers (rows only)")
    owners = []
    for i in range(researchers):
        name = f"bench-load-{i:02d}"
        user = get_user_model().objects.filter(username=name).first()
        if user is None:
            researcher = researcher_create(username=name, email=f"{name}@example.org")
            user = researcher_approve(by=None, researcher=researcher, provision_now=True).user
        rows = [
            Submission(
                owner=user,
                status=S.SUCCEEDED,
                archive="submissions/bench-seeded.zip",
                archive_sha256="0" * 64,
                original_name="submission.zip",
                requirements=REQUIREMENTS,
                exit_code=0,
                run_log_tail="epoch 1 loss 0.5\n" * 20,
                metrics={"accuracy": 0.9, "loss": 0.1},
            )
            for _ in range(per_researcher)
        ]
        created = Submission.objects.bulk_create(rows)
        ids = [s.pk for s in created] or list(
            Submission.objects.filter(owner=user).order_by("-id").values_list("pk", flat=True)[:per_researcher]
        )
        events = [
            SubmissionEvent(submission_id=pk, from_status=a, to_status=b)
            for pk in ids
            for a, b in (("", S.RECEIVED), (S.RECEIVED, S.BUILDING), (S.BUILDING, S.QUEUED),
                         (S.QUEUED, S.RUNNING), (S.RUNNING, S.SUCCEEDED))
        ]  # fmt: skip
        SubmissionEvent.objects.bulk_create(events)
        owners.append((user, ids))
    return owners


KINDS = ("list", "detail", "api-list", "api-detail")
LOAD_LINE = re.compile(r"^LOAD (.*)$", re.M)


def wrk(portal: str, clients_file: Path, kinds: tuple[str, ...], seconds: int, connections: int) -> dict[str, float]:
    """wrk with bench/load.lua: `connections` connections, each request the next researcher and
    the next of `kinds`; wrk is C and event-driven, so the load costs the server next to no CPU."""
    out = subprocess.run(
        ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
         "-s", str(REPO / "bench/load.lua"), portal, "--", str(clients_file), ",".join(kinds)],
        capture_output=True, text=True, timeout=seconds + 60,
    )  # fmt: skip
    line = LOAD_LINE.search(out.stdout)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed: {(out.stdout + out.stderr)[-500:]}")
    return {key: float(value) for key, value in (pair.split("=") for pair in line[1].split())}


def p4(figures: dict[str, Figure]) -> None:
    owners = seed_rows(50, 20)
    from accounts.services import api_token_create

    clients_file = WORK / "p4-clients.txt"
    clients_file.write_text(
        "".join(
            f"{session_cookie(user)} {api_token_create(by=user).key} {','.join(map(str, ids))}\n"
            for user, ids in owners
        )
    )
    fig = figures["P4"]
    say(f"P4: one connection alone, {P4_ALONE_SECONDS} s per kind")
    alone = {kind: wrk(PORTAL, clients_file, (kind,), P4_ALONE_SECONDS, 1)["p50_ms"] for kind in KINDS}
    say(f"P4: {P4_ROUNDS} rounds of {P4_SECONDS} s, 20 connections, the four kinds in turn")
    rounds = [wrk(PORTAL, clients_file, KINDS, P4_SECONDS, 20) for _ in range(P4_ROUNDS)]
    say(f"P4: each kind alone, {P4_KIND_SECONDS} s, 20 connections")
    kinds = {kind: wrk(PORTAL, clients_file, (kind,), P4_KIND_SECONDS, 20) for kind in KINDS}
    errors = sum(r["errors"] for r in rounds + list(kinds.values()))
    fig.values, fig.unit = [r["p95_ms"] for r in rounds], "ms"
    fig.met = median(fig.values) <= 100 and not errors
    fig.note = (
        "the stack's web process (gunicorn, platform/app/gunicorn.conf.py), load from wrk (bench/load.lua). "
        f"Rounds of {P4_SECONDS} s: {spread([r['rps'] for r in rounds], '/s')}, "
        f"p50 {spread([r['p50_ms'] for r in rounds], 'ms')}, p99 {spread([r['p99_ms'] for r in rounds], 'ms')}; "
        "each kind alone, 20 connections, p95: "
        + ", ".join(f"{kind} {r['p95_ms']:.0f} ms ({r['rps']:.0f}/s)" for kind, r in kinds.items())
        + "; one connection alone, median: "
        + ", ".join(f"{kind} {value:.0f} ms" for kind, value in alone.items())
        + "."
        + (f" {errors:.0f} answers were errors or not 200." if errors else "")
    )


# --- P5: a big upload ----------------------------------------------------------------------------


def web_pid() -> int:
    for line in Path(os.environ["M2D_STACK_PIDS"]).read_text().splitlines():
        pid, name = line.split()
        if name == "web":
            return int(pid)
    raise RuntimeError("the web process is not in the stack's pid file")


def rss_mb(group: int) -> float:
    """The resident memory of the web server's process group: gunicorn's master and its workers."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rpartition(")")[2].split()[2]) != group:
                continue
            status = (stat.parent / "status").read_text()
        except (OSError, ValueError):  # gone in between
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total / 1024


def warm_web_workers(cookie: str, group: int) -> None:
    """Each gunicorn worker loads most of the portal's code on its first request (some 40 MB):
    serve every worker the upload page first, so that the figure counts the upload alone. Bursts
    of parallel requests reach all the workers; done when a burst adds no memory."""
    from concurrent.futures import ThreadPoolExecutor

    def get(_: int) -> None:
        requests.get(PORTAL + "/submissions/new/", cookies={"sessionid": cookie}, timeout=30)

    with ThreadPoolExecutor(16) as pool:
        for _ in range(10):
            before = rss_mb(group)
            list(pool.map(get, range(32)))
            if rss_mb(group) - before < 5:
                return


def upload_streamed(cookie: str, zip_path: Path) -> tuple[int, str]:
    """POST the zip to the upload page as multipart, read from disk in 1 MB pieces."""
    url = urllib.parse.urlsplit(PORTAL)
    session = requests.Session()
    session.cookies.set("sessionid", cookie, domain=url.hostname)
    page = session.get(PORTAL + "/submissions/new/", timeout=30)
    csrf = session.cookies.get("csrftoken") or re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\n{csrf}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="archive"; filename="submission.zip"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = len(head) + zip_path.stat().st_size + len(tail)

    def body():
        yield head
        with open(zip_path, "rb") as f:
            while chunk := f.read(1024 * 1024):
                yield chunk
        yield tail

    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
    conn.putrequest("POST", "/submissions/new/")
    for name, value in {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(size),
        "Cookie": f"sessionid={cookie}; csrftoken={csrf}",
        "X-CSRFToken": csrf,
        "Referer": PORTAL + "/submissions/new/",
    }.items():
        conn.putheader(name, value)
    conn.endheaders()
    for chunk in body():
        conn.send(chunk)
    response = conn.getresponse()
    return response.status, response.getheader("Location") or response.read()[-400:].decode(errors="replace")


def p5(user, figures: dict[str, Figure]) -> None:
    fig = figures["P5"]
    fig.unit = "MB"
    zip_path = WORK / f"upload-{P5_MB}mb.zip"
    if not zip_path.exists():
        say(f"P5: writing a {P5_MB} MB zip")
        make_zip(zip_path, TRIVIAL_MAIN.format(nonce="big"), REQUIREMENTS, payload_mb=P5_MB)
    cookie = session_cookie(user)
    pid = web_pid()
    warm_web_workers(cookie, pid)
    say(f"P5: uploading {zip_path.stat().st_size / 1024**2:.0f} MB through the portal, {max(1, REPEATS // 2)}x")
    notes = []
    for _ in range(max(1, REPEATS // 2)):
        before = rss_mb(pid)
        peak = [before]
        done = threading.Event()

        def sample(done=done, peak=peak):
            while not done.wait(0.05):
                peak[0] = max(peak[0], rss_mb(pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        status, where = upload_streamed(cookie, zip_path)
        seconds = time.monotonic() - started
        done.set()
        sampler.join()
        fig.values.append(peak[0] - before)
        notes.append(f"HTTP {status} in {seconds:.1f} s, RSS {before:.0f} -> peak {peak[0]:.0f} MB")
        if m := re.search(r"/submissions/(\d+)/", str(where)):
            sub = Submission.objects.get(pk=int(m[1]))
            try:
                submission_cancel(by=None, submission=sub, reason="benchmark upload only")
            except Exception:  # it may already have failed its build: nothing to cancel
                pass
        elif status != 302:
            notes.append(f"not accepted: {str(where)[-200:]}")
    fig.what = f"a {P5_MB} MB upload streamed to storage: web process RSS growth"
    fig.met = max(fig.values) <= 50 and all("HTTP 302" in n for n in notes if n.startswith("HTTP"))
    fig.note = "; ".join(notes) + "."


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
    from runner import docker_api

    archive = trivial_zip("ctx")
    for i in range(3):
        spec = docker_api.BuildSpec(
            submission_id=0,
            archive=archive,
            dockerfile=settings.M2D_DOCKER_SCRIPTS_DIR / "execute_code-without-gpu",
            unpack_script=settings.M2D_DOCKER_SCRIPTS_DIR / "unpack_submission.py",
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


# --- main ----------------------------------------------------------------------------------------


def print_table(figures: dict[str, Figure], costs: dict[str, list[float]], container_start: list[float]) -> None:
    rows = [("figure", "target", "measured: min / median / max", "seed recipe", "met")]
    for key, fig in figures.items():
        met = {True: "yes", False: "NO", None: "-"}[fig.met]
        rows.append((f"{key} {fig.what}", fig.target, fig.measured(), fig.seed_text(), met))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    line = "+".join("-" * (w + 2) for w in widths)
    print()
    print(f"M2D benchmarks ({'quick' if QUICK else 'full'} run, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")  # fmt: skip
    for i, row in enumerate(rows):
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if i == 0:
            print(line)
    print()
    for key, fig in figures.items():
        if fig.note:
            print(f"{key}: {fig.note.strip()}")
    print()
    print("Where the time goes (min / median / max):")
    print(f"  {'container start (create + start + exit + remove of `true`)':<78} {spread(container_start, 's')}")
    for name, values in costs.items():
        if values:
            print(f"  {name:<78} {spread(values, 's')}")


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    client = docker.from_env(timeout=120)
    figures = {
        "P1": Figure("P1", "resubmission, same requirements: accepted -> image ready", "<= 2 s and >= 20x seed"),
        "P2": Figure("P2", "accepted -> first line of main.py, idle slot", "<= 3 s"),
        "P3": Figure("P3", "busy slot: end of one run -> start of the next", "<= 1 s"),
        "P4": Figure("P4", "portal + API p95, 1,000 submissions of 50 researchers, 20 clients", "<= 100 ms"),
        "P5": Figure("P5", "a 500 MB upload: web process RSS growth", "<= 50 MB"),
        "P6": Figure("P6", "100 trivial submissions through one slot", ""),
        "P7": Figure("P7", "first submission with mlflow, numpy, pandas, scikit-learn, torch", "nothing downloaded"),
    }
    costs: dict[str, list[float]] = {
        k: []
        for k in (
            "accepted -> build starts (task dispatch)",
            "build (context upload, cache lookups, code layer)",
            "build with every layer cached (context upload + cache lookups)",
            "image ready -> slot claims it",
            "claimed -> first line (export volume, gateway, forwarder, container, python)",
            "forwarder create + start -> ready",
            "first import of mlflow (in a run container)",
            "last line -> run recorded finished (clean-up, provenance, metrics)",
            "busy slot: last line -> next first line (the real idle gap)",
        )
    }
    out = subprocess.run(
        [sys.executable, "manage.py", "create_researcher", "bench", "--email", "bench@example.org", "--approve"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"could not create the bench researcher: {out.stderr[-500:]}")
    user = get_user_model().objects.get(username="bench")
    say("measuring container start")
    container_start = container_start_seconds(client)
    steps = [
        ("P1/P2", lambda: p1_p2(user, figures, costs)),
        ("P3/P6", lambda: p3_p6(user, figures, costs, median(container_start))),
        ("P7", lambda: p7(user, figures)),
        ("P5", lambda: p5(user, figures)),
        ("P4", lambda: p4(figures)),
        ("costs", lambda: (engine_costs(client, costs), cached_build_costs(costs))),
    ]
    only = os.environ.get("BENCH_ONLY", "")
    for name, step in steps:
        if only and not any(part in name.split("/") for part in only.split(",")):
            continue
        try:
            step()
        except Exception as exc:  # one broken figure must not hide the others
            say(f"{name} failed: {exc!r}")
            for key in name.split("/"):
                if key in figures:
                    figures[key].note += f" Failed: {exc!r}"[:600]
    print_table(figures, costs, container_start)


if __name__ == "__main__":
    main()
