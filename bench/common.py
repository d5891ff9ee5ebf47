"""What the benchmarks share: the Django set-up against the stack's database, sizes from the
environment, figures and how they print, and submitting and timing submissions."""

from __future__ import annotations

import os
import re
import socket
import statistics
import sys
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "m2d.settings")

import django  # noqa: E402

django.setup()

from datetime import timedelta  # noqa: E402

from django.conf import settings  # noqa: E402
from django.utils import timezone  # noqa: E402

from submissions.models import MetricHistory, Submission, SubmissionEvent  # noqa: E402
from submissions.services import submission_create  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
REPEATS = int(os.environ.get("BENCH_REPEATS", "3" if QUICK else "5"))
SEED_REPEATS = int(os.environ.get("BENCH_SEED_REPEATS", "1" if QUICK else "2"))
P6_N = int(os.environ.get("BENCH_P6_N", "10" if QUICK else "100"))
P4_SECONDS = int(os.environ.get("BENCH_P4_SECONDS", "8" if QUICK else "15"))
P4_ROUNDS = int(os.environ.get("BENCH_P4_ROUNDS", "2" if QUICK else "3"))
P4_KIND_SECONDS = max(2, P4_SECONDS // 3)
P4_ALONE_SECONDS = 2
P4_PAUSE_MS = int(os.environ.get("BENCH_P4_PAUSE_MS", "1000"))
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
    text: str = ""  # a figure that is not min / median / max (percentiles, rates side by side)

    def measured(self) -> str:
        if self.text:
            return self.text
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


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def new_to_the_layer_cache(requirements: list[str]) -> str:
    """These requirements as a requirements.txt no build has had: its first line also excludes a
    version that does not exist. A unique comment is not enough: the platform normalises
    requirements (comments dropped, lines sorted, duplicates removed) before they reach the build."""
    first, *rest = requirements
    joiner = "," if re.search(r"[<>=!~]", first) else ""
    return "\n".join([f"{first}{joiner}!=0.0.{uuid.uuid4().int % 10**9}", *rest]) + "\n"


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


def seed_finished(user, count: int) -> list[int]:
    """`count` finished submissions of `user`, as rows only, shaped like real ones: a whole
    timeline, a run of a minute, final metrics and a kept history of 20 epochs, a log tail."""
    now = timezone.now()
    epochs = range(20)
    history = {
        "loss": [{"step": e, "value": 1 / (e + 1), "timestamp": 1_700_000_000_000 + e} for e in epochs],
        "accuracy": [{"step": e, "value": 0.5 + e / 50, "timestamp": 1_700_000_000_000 + e} for e in epochs],
    }
    created = Submission.objects.bulk_create(
        Submission(
            owner=user,
            status=S.SUCCEEDED,
            archive="submissions/bench-seeded.zip",
            archive_sha256="0" * 64,
            original_name="submission.zip",
            requirements=REQUIREMENTS,
            exit_code=0,
            run_log_tail="".join(f"epoch {e} loss {1 / (e + 1):.4f}\n" for e in epochs),
            metrics={"accuracy": 0.88, "loss": 0.05},
            started_at=now + timedelta(seconds=4),
            finished_at=now + timedelta(seconds=64),
            tracking_calls=44,
        )
        for _ in range(count)
    )
    ids = [s.pk for s in created] or list(
        Submission.objects.filter(owner=user).order_by("-id").values_list("pk", flat=True)[:count]
    )  # a database that does not return ids from bulk inserts
    SubmissionEvent.objects.bulk_create(
        SubmissionEvent(submission_id=pk, from_status=a, to_status=b)
        for pk in ids
        for a, b in (("", S.RECEIVED), (S.RECEIVED, S.BUILDING), (S.BUILDING, S.QUEUED),
                     (S.QUEUED, S.RUNNING), (S.RUNNING, S.SUCCEEDED))
    )  # fmt: skip
    MetricHistory.objects.bulk_create(MetricHistory(submission_id=pk, history=history) for pk in ids)
    return ids
