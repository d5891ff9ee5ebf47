"""Disclosure risk of what a run exports, measured next to the data before anyone releases it.

A model: its own code answers for cases it trained on and cases it did not, in the submission's
image, sealed like a run; then SACRO-ML's worst-case membership attack tries to tell the two apart
from the answers alone, in the platform's disclosure image, which sees nothing but the scores.
Tables are checked in the same image (runner.disclosure_tables), through run_platform_check.

The job is frozen in, facts come out (disclosure.facts). The model's failures (a crash, a hang,
garbage, the wrong shape) are its `model_problem`; the platform's own are `fault`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from disclosure.facts import AttackFigures, ModelAssessment

from .docker_api.disclosure import Mount, SealedJobSpec, run_sealed_job
from .docker_api.engine import LABEL_SUBMISSION, PlatformFault

SCRIPTS = Path(__file__).resolve().parent.parent / "docker_scripts"
# Cases needed in each split for the attack to mean anything: it trains on 80 % of the answers
# and scores the rest, ten times over.
MIN_CASES = 10
OUT_FS = "size=16m,nr_inodes=64,nosuid,nodev,noexec"
WORST_CASE = "worst-case membership"


@dataclass(frozen=True)
class SplitSpec:
    csv: str = "clam-details-case-extrainfo.csv"  # inside the data set folder
    case_column: str = "CasePath"  # folder of the case's images, relative to the data set
    label_column: str = "Groundtruth"  # e.g. benign / malignant
    positive_label: str = "malignant"
    split_column: str = "Split"
    train_values: tuple[str, ...] = ("train",)
    held_out_values: tuple[str, ...] = ("test", "validation", "val")


@dataclass(frozen=True)
class DisclosureJob:
    submission_id: int
    image: str  # the submission's image: the model's predict.py runs in it, sealed
    model_dir: Path  # the exported model (card m2d-model.json + predict.py + weights), read-only
    dataset_dir: Path  # the data set, read-only
    split: SplitSpec
    work_dir: Path  # platform-owned scratch folder for this job (scores, report); removed after
    disclosure_image: str  # the platform's SACRO-ML/ACRO image
    run_uid: int
    timeout: int  # seconds for the whole scoring step (a hanging model → model_problem)
    memory: str
    cpus: float
    max_cases: int  # cap on cases scored per split
    model_path: str = "model/"  # the model's folder inside the export, as the report names it
    labels: dict[str, str] = field(default_factory=dict)  # put on its containers (instance, ...)
    attack_timeout: int = 600
    pids: int = 256
    tmp_size: str = "256m"
    shm_size: str = "256m"
    seed: int = 0  # which cases are drawn when a split has more than max_cases
    min_cases: int = MIN_CASES  # of each split, answered, for the attack to say anything


def is_predict_contract(model_dir: Path) -> bool:
    """The folder holds a model the platform can ask for answers: a card (m2d-model.json) naming
    an entrypoint file that exists inside the folder, or an MLflow model (MLmodel)."""
    model_dir = Path(model_dir)
    if (model_dir / "MLmodel").is_file():
        return True
    card = _read_card(model_dir)
    if card is None:
        return False
    module_file = str(card.get("entrypoint", "predict.py:Model")).partition(":")[0]
    path = (model_dir / module_file).resolve()
    return path.is_file() and path.is_relative_to(model_dir.resolve())


def _read_card(model_dir: Path) -> dict | None:
    try:
        card = json.loads((model_dir / "m2d-model.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) else None


class _Unassessable(Exception):
    """The model could not be assessed because of the model (its message says why)."""


class CheckFault(Exception):
    """The platform could not assess the model or check a table (not the model's or the run's doing)."""


def assess_model(job: DisclosureJob) -> ModelAssessment:
    started = time.monotonic()

    def ended(**facts) -> ModelAssessment:
        return ModelAssessment(model_path=job.model_path, seconds=round(time.monotonic() - started, 2), **facts)

    work = Path(job.work_dir)
    try:
        work.mkdir(parents=True, exist_ok=True)
        card = _read_card(job.model_dir)
        if card is None:
            if (Path(job.model_dir) / "MLmodel").is_file():
                raise _Unassessable(
                    "it is an MLflow model without an m2d-model.json card: nothing says which of a case's "
                    "files are its inputs"
                )
            raise _Unassessable("its folder has no readable m2d-model.json card")
        if not is_predict_contract(job.model_dir):
            raise _Unassessable("its card names an entrypoint that is not a file in the model's folder")
        cases = _draw_cases(job)
        answers = _score(job, card, cases)
        train = [answers[c.id] for c in cases if c.trained and c.id in answers]
        test = [answers[c.id] for c in cases if not c.trained and c.id in answers]
        if min(len(train), len(test)) < job.min_cases:
            raise CheckFault(
                f"only {len(train)} training and {len(test)} held-out cases had every input the card "
                f"declares; the attack needs at least {job.min_cases} of each"
            )
        figures = _attack(job, train, test)
        return ended(attacks=(figures,), n_train=len(train), n_test=len(test))
    except _Unassessable as exc:
        return ended(model_problem=f"could not be assessed: {exc}")
    except (CheckFault, PlatformFault) as exc:
        return ended(fault=str(exc))
    except OSError as exc:  # the host's scratch folder: full disk, permissions
        return ended(fault=f"the job's scratch folder failed: {exc}")
    finally:
        _unmount(work / "out")
        shutil.rmtree(work, ignore_errors=True)


@dataclass(frozen=True)
class _Case:
    id: int
    path: str  # relative to the data set
    trained: bool
    positive: bool


def _draw_cases(job: DisclosureJob) -> list[_Case]:
    """The cases of each side of the split (at most max_cases each), in one mixed order: the
    model's side of the job learns neither the split nor the labels."""
    spec = job.split
    table = Path(job.dataset_dir) / spec.csv
    try:
        text = table.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CheckFault(f"the data set has no readable {spec.csv} ({exc.strerror})") from None
    dialect = ";" if text.partition("\n")[0].count(";") > text.partition("\n")[0].count(",") else ","
    rows = list(csv.DictReader(text.splitlines(), delimiter=dialect))
    missing = [c for c in (spec.case_column, spec.label_column, spec.split_column) if rows and c not in rows[0]]
    if not rows or missing:
        raise CheckFault(f"{spec.csv} has no column {', '.join(missing) or 'rows'}: the split cannot be read")
    root = Path(job.dataset_dir).resolve()
    sides: dict[bool, list[tuple[str, bool]]] = {True: [], False: []}
    seen = set()
    for row in rows:
        where = (row.get(spec.split_column) or "").strip()
        trained = where in spec.train_values
        if not trained and where not in spec.held_out_values:
            continue
        path = (row.get(spec.case_column) or "").strip()
        if not path or path in seen or not _inside(root, path):
            continue
        seen.add(path)
        sides[trained].append((path, (row.get(spec.label_column) or "").strip() == spec.positive_label))
    draw = random.Random(f"{job.seed}:{job.submission_id}")
    for trained in (True, False):
        if len(sides[trained]) < job.min_cases:
            side = "training" if trained else "held-out"
            raise CheckFault(
                f"the data set's split has {len(sides[trained])} {side} cases with a folder; "
                f"the attack needs at least {job.min_cases} of each"
            )
        draw.shuffle(sides[trained])
        del sides[trained][job.max_cases :]
    chosen = [(p, t, pos) for t in (True, False) for p, pos in sides[t]]
    draw.shuffle(chosen)
    return [_Case(i, p, t, pos) for i, (p, t, pos) in enumerate(chosen)]


def _inside(root: Path, relative: str) -> bool:
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts:
        return False
    return (root / relative).resolve().is_relative_to(root) and (root / relative).is_dir()


def _dataset_mounts(job: DisclosureJob, cases: list[_Case]) -> tuple[Mount, ...]:
    """The folders the cases lie in, not the data set's tables: its split and labels stay out."""
    tops = {PurePosixPath(c.path).parts[0] for c in cases}
    if any(len(PurePosixPath(c.path).parts) < 2 for c in cases) or len(tops) > 8:
        return (Mount(Path(job.dataset_dir), "/mnt/dataset"),)
    return tuple(Mount(Path(job.dataset_dir) / top, f"/mnt/dataset/{top}") for top in sorted(tops))


def _name(job: DisclosureJob, step: str) -> str:
    digest = hashlib.sha256(f"{job.work_dir}:{job.model_path}".encode()).hexdigest()[:10]
    return f"m2d-disclosure-{job.submission_id}-{step}-{digest}"


def _score(job: DisclosureJob, card: dict, cases: list[_Case]) -> dict[int, float]:
    """Each case's probability of the positive class, as the model answers it."""
    work = Path(job.work_dir)
    given = work / "cases"
    given.mkdir(parents=True, exist_ok=True)
    (given / "cases.json").write_text(json.dumps([{"id": c.id, "path": c.path} for c in cases]))
    os.chmod(given, 0o755)
    os.chmod(given / "cases.json", 0o644)
    out = _writable_folder(work / "out", job.run_uid)
    scripts = _platform_scripts(work / "platform")
    outcome = run_sealed_job(
        SealedJobSpec(
            name=_name(job, "score"),
            image=job.image,
            command=("python3", "/opt/m2d/disclosure/score.py"),
            mounts=(
                Mount(Path(job.model_dir), "/opt/m2d/model"),
                Mount(scripts / "serve", "/opt/m2d/serve"),
                Mount(scripts / "disclosure", "/opt/m2d/disclosure"),
                Mount(given, "/opt/m2d/cases"),
                Mount(out, "/out", writable=True),
                *_dataset_mounts(job, cases),
            ),
            user=f"{job.run_uid}:{job.run_uid}",
            memory=job.memory,
            cpus=job.cpus,
            timeout=job.timeout,
            pids=job.pids,
            shm_size=job.shm_size,
            tmp_size=job.tmp_size,
            labels=_labels(job),
            file_size_cap=16 * 1024**2,
        )
    )
    answers, left_out, problem = _read_answers(out / "scores.jsonl")
    if problem:
        raise _Unassessable(problem)
    if outcome.timed_out:
        raise _Unassessable(
            f"it did not answer the {len(cases)} cases within {job.timeout} s "
            f"(it had answered {len(answers)}): it hangs or is far too slow"
        )
    if outcome.oom_killed:
        raise _Unassessable(f"it ran out of its {job.memory} of memory after {len(answers)} cases")
    if outcome.exit_code != 0:
        last = outcome.log_tail.strip().splitlines()[-1:] or [""]
        raise _Unassessable(f"its process ended with exit code {outcome.exit_code} ({last[0][:200]})")
    unanswered = [c.id for c in cases if c.id not in answers and c.id not in left_out]
    if unanswered:
        raise _Unassessable(f"it left {len(unanswered)} of {len(cases)} cases unanswered")
    return answers


def _platform_scripts(target: Path) -> Path:
    """The platform's scripts the scoring container runs, copied into the job's own folder: the
    engine mounts paths of its host, where a worker in a container has no copy of this package."""
    shutil.rmtree(target, ignore_errors=True)
    for folder in ("serve", "disclosure"):
        leave = shutil.ignore_patterns("__pycache__", "*.pyc", "wheelhouse")  # an image build's wheels
        shutil.copytree(SCRIPTS / folder, target / folder, ignore=leave)
    for root, _dirs, names in os.walk(target):
        os.chmod(root, 0o755)
        for name in names:
            os.chmod(os.path.join(root, name), 0o644)
    return target


def _read_answers(path: Path) -> tuple[dict[int, float], set[int], str]:
    """The probabilities per case id, the cases left out (an input missing from the data set),
    and the model's problem, if any."""
    answers: dict[int, float] = {}
    left_out: set[int] = set()
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return answers, left_out, ""
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            return answers, left_out, "its answers could not be read (the scoring output was cut or garbled)"
        if not isinstance(record, dict):
            continue
        if record.get("problem"):
            return answers, left_out, str(record["problem"])[:500]
        case, p = record.get("id"), record.get("p")
        if isinstance(case, int) and record.get("left_out"):
            left_out.add(case)
        elif isinstance(case, int) and isinstance(p, int | float) and 0.0 <= p <= 1.0:
            answers[case] = float(p)
    return answers, left_out, ""


def _labels(job: DisclosureJob) -> dict[str, str]:
    return {**job.labels, LABEL_SUBMISSION: str(job.submission_id)}


def _writable_folder(folder: Path, uid: int) -> Path:
    """A folder the job's container may write into: a small tmpfs of its own where the platform
    may mount one (it runs as root), so whatever the model writes fills that and not the host's
    disk; otherwise a plain folder (the container's per-file size cap still holds)."""
    _unmount(folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if os.geteuid() == 0:
        options = f"{OUT_FS},mode=0700,uid={uid},gid={uid}"
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "m2d-disclosure", str(folder)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode:
            raise CheckFault(f"mounting the job's output folder failed: {result.stderr.strip()}")
    else:
        folder.chmod(0o777)
    return folder


def _unmount(folder: Path) -> None:
    target = os.path.realpath(folder)
    try:
        with open("/proc/self/mounts") as mounts:
            mounted = any(line.split()[1] == target for line in mounts)
    except OSError:
        return
    if mounted:
        result = subprocess.run(["umount", target], capture_output=True, timeout=30)
        if result.returncode:
            subprocess.run(["umount", "-l", target], capture_output=True, timeout=30)


def _attack(job: DisclosureJob, train: list[float], test: list[float]) -> AttackFigures:
    work = Path(job.work_dir)
    given = work / "scores"
    given.mkdir(parents=True, exist_ok=True)
    (given / "scores.json").write_text(json.dumps({"train": train, "test": test}))
    os.chmod(given, 0o755)
    os.chmod(given / "scores.json", 0o644)
    report = run_platform_check(
        job.disclosure_image,
        name=_name(job, "attack"),
        command=("python3", "/opt/m2d/disclosure/attack.py", "/in/scores.json", "/out/report.json"),
        given=given,
        out=work / "report",
        uid=job.run_uid,
        timeout=job.attack_timeout,
        labels=_labels(job),
    )
    try:
        return AttackFigures(
            attack=WORST_CASE,
            auc=float(report["auc"]),
            auc_low=float(report["auc_low"]),
            auc_high=float(report["auc_high"]),
            advantage=float(report["advantage"]),
            p_value=None if report.get("p_value") is None else float(report["p_value"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckFault(f"the attack's report lacks its figures ({exc})") from None


def run_platform_check(
    image: str, *, name: str, command: tuple[str, ...], given: Path, out: Path, uid: int, timeout: int, labels: dict
) -> dict:
    """Run one of the disclosure image's own scripts on what the platform hands it; its report."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if os.geteuid() == 0:
        os.chown(out, uid, uid)
    else:
        out.chmod(0o777)
    outcome = run_sealed_job(
        SealedJobSpec(
            name=name,
            image=image,
            command=command,
            mounts=(Mount(given, "/in"), Mount(out, "/out", writable=True)),
            user=f"{uid}:{uid}",
            memory="2g",
            cpus=1.0,
            timeout=timeout,
            labels=labels,
        )
    )
    if outcome.timed_out:
        raise CheckFault(f"the disclosure check did not finish within {timeout} s")
    if outcome.exit_code != 0:
        last = outcome.log_tail.strip().splitlines()[-1:] or [""]
        raise CheckFault(f"the disclosure check failed (exit code {outcome.exit_code}: {last[0][:300]})")
    try:
        return json.loads((out / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckFault(f"the disclosure check wrote no readable report ({exc})") from None
