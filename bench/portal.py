"""The figures of the portal: P4 (pages and API under load, with wrk) and P5 (a big upload)."""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import threading
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from importlib import import_module
from pathlib import Path

import requests
from common import (
    P4_ALONE_SECONDS,
    P4_KIND_SECONDS,
    P4_PAUSE_MS,
    P4_ROUNDS,
    P4_SECONDS,
    P5_MB,
    PORTAL,
    REPEATS,
    REPO,
    REQUIREMENTS,
    TRIVIAL_MAIN,
    WORK,
    Figure,
    Submission,
    make_zip,
    median,
    say,
    seed_finished,
    spread,
)
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model

from accounts.services import api_token_create, researcher_approve, researcher_create
from submissions.services import submission_cancel

# --- P4: pages under load ------------------------------------------------------------------------


def session_cookie(user) -> str:
    """A logged-in portal session for `user`, made the way django.contrib.auth.login makes one."""
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return store.session_key


def seed_rows(researchers: int, per_researcher: int) -> list[tuple[object, list[int]]]:
    say(f"P4: seeding {researchers * per_researcher} submissions of {researchers} researchers (rows only)")
    owners = []
    for i in range(researchers):
        name = f"bench-load-{i:02d}"
        user = get_user_model().objects.filter(username=name).first()
        if user is None:
            researcher = researcher_create(username=name, email=f"{name}@example.org")
            user = researcher_approve(by=None, researcher=researcher, provision_now=True).user
        ids = seed_finished(user, per_researcher)
        owners.append((user, ids))
    return owners


KINDS = ("list", "detail", "api-list", "api-detail")
LOAD_LINE = re.compile(r"^LOAD (.*)$", re.M)


def wrk(
    portal: str, clients_file: Path, kinds: tuple[str, ...], seconds: int, connections: int, pause_ms: int = 0
) -> dict[str, float]:
    """wrk with bench/load.lua: `connections` connections, each request the next researcher and
    the next of `kinds`, each connection pausing about `pause_ms` between its requests; wrk is C
    and event-driven, so the load costs the server next to no CPU."""
    out = subprocess.run(
        ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
         "-s", str(REPO / "bench/load.lua"), portal, "--", str(clients_file), ",".join(kinds), str(pause_ms)],
        capture_output=True, text=True, timeout=seconds + 60,
    )  # fmt: skip
    line = LOAD_LINE.search(out.stdout)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed: {(out.stdout + out.stderr)[-500:]}")
    return {key: float(value) for key, value in (pair.split("=") for pair in line[1].split())}


def p4(figures: dict[str, Figure]) -> None:
    owners = seed_rows(50, 20)
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
    say(f"P4: {P4_ROUNDS} rounds of {P4_SECONDS} s, 20 clients pausing about {P4_PAUSE_MS} ms between requests")
    paced = [wrk(PORTAL, clients_file, KINDS, P4_SECONDS, 20, P4_PAUSE_MS) for _ in range(P4_ROUNDS)]
    pace = figures["P4p"]
    pace.values, pace.unit = [r["p95_ms"] for r in paced], "ms"
    pace.met = median(pace.values) <= 100 and not sum(r["errors"] for r in paced)
    pace.note = (
        f"each client waits {P4_PAUSE_MS // 2}-{P4_PAUSE_MS * 3 // 2} ms between requests (the portal's pages and "
        f"`m2d --wait` poll every 2 s): {spread([r['rps'] for r in paced], '/s')}, "
        f"p50 {spread([r['p50_ms'] for r in paced], 'ms')}, p99 {spread([r['p99_ms'] for r in paced], 'ms')}."
    )
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
