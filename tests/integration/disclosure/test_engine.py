"""The disclosure-risk engine on the real Docker engine: models answer in their own sealed image,
SACRO-ML's worst-case membership attack and ACRO's table checks run in the platform's disclosure
image. Each figure here comes from real containers on a generated CLaM-shaped data set."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from PIL import Image

from disclosure.services import acro_folders, candidates
from runner.disclosure import DisclosureJob, SplitSpec, assess_model, is_predict_contract
from runner.disclosure_tables import check_acro_results, check_tables
from runner.docker_api.disclosure import Mount, SealedJobSpec, run_sealed_job

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[3]
RUNTIME_IMAGE = os.environ.get("M2D_RUNTIME_IMAGE", "m2d-runtime:latest")
DISCLOSURE_IMAGE = os.environ.get("M2D_DISCLOSURE_IMAGE", "m2d-disclosure:latest")
VIEWS = ("LCC", "LMLO", "RCC", "RMLO")
CASES = 240  # about 190 train and 50 test, as the generator splits them


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clam")
    generate = REPO / "dataset" / "generate.py"
    subprocess.run(
        [sys.executable, str(generate), "--cases", str(CASES), "--size", "64x52", "--out", str(folder)],
        check=True,
        capture_output=True,
    )
    readable(folder)
    return folder


def readable(folder: Path) -> None:
    """The job's containers run as the run user: what they read must be readable to others."""
    for root, _dirs, files in os.walk(folder):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)


def card(outputs=None, inputs=VIEWS) -> dict:
    view = {"formats": ["image/png", "application/x-npy"], "datatype": "UINT16", "shape": [-1, -1]}
    return {
        "x-name": "test-model",
        "entrypoint": "predict.py:Model",
        "inputs": [{"name": name, **view} for name in inputs],
        "outputs": outputs
        or [
            {"name": "malignancy_probability", "datatype": "FP32", "shape": [1]},
            {"name": "label", "datatype": "BYTES", "shape": [1]},
        ],
    }


def model_folder(tmp_path: Path, predict: str, files: dict[str, str] | None = None, model_card=None) -> Path:
    folder = tmp_path / "export" / "model"
    folder.mkdir(parents=True)
    (folder / "m2d-model.json").write_text(json.dumps(model_card or card()))
    (folder / "predict.py").write_text(predict)
    for name, text in (files or {}).items():
        (folder / name).write_text(text)
    readable(tmp_path / "export")
    return folder


def job(tmp_path: Path, model_dir: Path, dataset: Path, *, image=RUNTIME_IMAGE, timeout=300, **extra) -> DisclosureJob:
    return DisclosureJob(
        submission_id=4242,  # the cases' order, and so the figures, are the same on every run
        image=image,
        model_dir=model_dir,
        dataset_dir=dataset,
        split=SplitSpec(),
        work_dir=tmp_path / "work",
        disclosure_image=DISCLOSURE_IMAGE,
        run_uid=settings.M2D_RUN_UID,
        timeout=timeout,
        memory="2g",
        cpus=1.0,
        max_cases=200,
        labels={"org.m2d.instance": settings.M2D_INSTANCE},
        **extra,
    )


def training_lookup(dataset: Path) -> dict[str, float]:
    """What a model that memorised its training cases knows: each training case's LCC view (as
    the platform decodes it) and its label."""
    lookup = {}
    rows = (dataset / "clam-details-case-extrainfo.csv").read_text().splitlines()
    header = rows[0].split(";")
    for line in rows[1:]:
        row = dict(zip(header, line.split(";"), strict=True))
        if row["Split"] == "train":
            pixels = np.asarray(Image.open(dataset / row["CasePath"] / "LCC" / "1.png"))
            lookup[hashlib.sha256(pixels.tobytes()).hexdigest()] = 1.0 if row["Groundtruth"] == "malignant" else 0.0
    return lookup


LOOKUP_MODEL = """
import hashlib, json, os
import numpy as np

class Model:
    def load(self, model_dir, device):
        with open(os.path.join(model_dir, "lookup.json")) as f:
            self.seen = json.load(f)

    def predict(self, inputs, parameters):
        key = hashlib.sha256(np.asarray(inputs["LCC"]).tobytes()).hexdigest()
        p = self.seen.get(key, 0.5)
        return {"malignancy_probability": p, "label": "malignant" if p >= 0.5 else "benign"}
"""

# Answers from the images' brightness alone, through a smooth curve: nothing of any one case is
# kept. It also checks its own sandbox: no network, and none of the data set's tables (the split
# and the labels) within its reach.
SMOOTH_MODEL = """
import math, os
import numpy as np

class Model:
    def load(self, model_dir, device):
        assert os.listdir("/sys/class/net") == ["lo"], os.listdir("/sys/class/net")
        tables = [f for f in os.listdir("/mnt/dataset") if f.endswith(".csv")]
        assert not tables, tables
        assert not os.access("/opt/m2d/model", os.W_OK)

    def predict(self, inputs, parameters):
        brightness = float(np.mean([np.asarray(v, dtype=float).mean() for v in inputs.values()])) / 255.0
        p = 1.0 / (1.0 + math.exp(-4.0 * (brightness - 0.3)))
        return {"malignancy_probability": p, "label": "malignant" if p >= 0.5 else "benign"}
"""


def the_attack(assessment):
    assert not assessment.model_problem and not assessment.fault, assessment
    (attack,) = assessment.attacks
    assert attack.attack == "worst-case membership"
    assert attack.auc_low <= attack.auc <= attack.auc_high
    return attack


def report(name: str, assessment, attack) -> None:
    print(
        f"\n{name}: attack AUC {attack.auc:.3f} [{attack.auc_low:.3f}, {attack.auc_high:.3f}], "
        f"advantage {attack.advantage:.3f}, p {attack.p_value:.2g}, "
        f"{assessment.n_train} train + {assessment.n_test} held-out cases, job {assessment.seconds:.1f} s"
    )


def test_a_model_that_memorised_its_training_cases_is_over_the_threshold(tmp_path, dataset):
    model = model_folder(tmp_path, LOOKUP_MODEL, {"lookup.json": json.dumps(training_lookup(dataset))})
    assert is_predict_contract(model)
    assessment = assess_model(job(tmp_path, model, dataset))
    attack = the_attack(assessment)
    report("lookup table of training cases", assessment, attack)
    assert assessment.n_train > 150 and assessment.n_test > 30
    assert attack.auc >= 0.9 > settings.M2D_DISCLOSURE_MAX_AUC
    assert attack.p_value < settings.M2D_DISCLOSURE_MAX_P_VALUE
    assert attack.advantage > 0.8
    assert not (tmp_path / "work").exists()  # the scratch folder goes with the job


def test_a_model_that_keeps_nothing_of_any_case_is_not(tmp_path, dataset):
    model = model_folder(tmp_path, SMOOTH_MODEL)
    assessment = assess_model(job(tmp_path, model, dataset))
    attack = the_attack(assessment)
    report("smooth function of brightness", assessment, attack)
    # Over the threshold takes both: an AUC that high, and one that chance explains poorly.
    assert attack.auc < settings.M2D_DISCLOSURE_MAX_AUC or attack.p_value > settings.M2D_DISCLOSURE_MAX_P_VALUE
    assert attack.auc_low < 0.5 < attack.auc_high


CLAM_TRAINING = """
import json, sys
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, "/opt/sample")
import main

main.DATASET, main.EXPORT = Path("/mnt/dataset"), Path("/out")
torch.manual_seed(0)
rows = main.read_images("train")
loader = torch.utils.data.DataLoader(main.ClamImages(rows), batch_size=8, shuffle=True)
model = main.small_cnn()
loss_fn = torch.nn.BCEWithLogitsLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(EPOCHS):
    last = main.train_one_epoch(model, loader, loss_fn, optimizer, "cpu")
row = {"test_auc": None, "test_accuracy": last["accuracy"]}
main.export_model(model, row, len(rows), 0)
"""


def train_clam_sample(tmp_path: Path, dataset: Path, epochs: int) -> Path:
    """The CLaM sample's own network and training step (sample_code/clam-dataset), in the runtime
    image without MLflow: the model folder main.py exports."""
    out = tmp_path / "export"
    out.mkdir()
    os.chmod(out, 0o777)
    script = tmp_path / "train.py"
    script.write_text(CLAM_TRAINING.replace("EPOCHS", str(epochs)))
    script.chmod(0o644)
    os.chmod(tmp_path, 0o755)
    done = subprocess.run(
        [
            "docker", "run", "--rm", "--network", "none", "--user", f"{settings.M2D_RUN_UID}",
            "-e", "HOME=/tmp", "--label", f"org.m2d.instance={settings.M2D_INSTANCE}",
            "-v", f"{REPO / 'sample_code' / 'clam-dataset'}:/opt/sample:ro",
            "-v", f"{dataset}:/mnt/dataset:ro", "-v", f"{script}:/opt/train.py:ro", "-v", f"{out}:/out",
            RUNTIME_IMAGE, "python3", "/opt/train.py",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    readable(out)
    return out / "model"


@pytest.mark.slow
def test_the_clam_sample_model_gets_a_report(tmp_path, dataset):
    model = train_clam_sample(tmp_path, dataset, epochs=1)
    assert is_predict_contract(model)
    assessment = assess_model(job(tmp_path, model, dataset, timeout=600))
    attack = the_attack(assessment)
    report("CLaM sample, 1 epoch", assessment, attack)
    assert 0.0 <= attack.auc <= 1.0 and 0.0 <= attack.advantage <= 1.0
    assert assessment.n_train > 150 and assessment.n_test > 30


CRASHES = """
class Model:
    def load(self, model_dir, device):
        pass

    def predict(self, inputs, parameters):
        raise RuntimeError("out of ideas")
"""
HANGS = """
import time

class Model:
    def load(self, model_dir, device):
        pass

    def predict(self, inputs, parameters):
        time.sleep(3600)
"""
WRONG_SHAPE = """
class Model:
    def load(self, model_dir, device):
        pass

    def predict(self, inputs, parameters):
        return {"malignancy_probability": [0.1, 0.2, 0.7], "label": "benign"}
"""
NOT_A_NUMBER = """
class Model:
    def load(self, model_dir, device):
        pass

    def predict(self, inputs, parameters):
        return {"malignancy_probability": float("nan"), "label": "benign"}
"""
DOES_NOT_LOAD = """
class Model:
    def load(self, model_dir, device):
        raise SystemExit("no weights")
"""


@pytest.mark.parametrize(
    ("predict", "reason"),
    [
        (CRASHES, "case 1 of .*: its predict raised RuntimeError: out of ideas"),
        (HANGS, "did not answer the .* cases within 20 s \\(it had answered 0\\)"),
        (WRONG_SHAPE, "case 1 of .*: its output malignancy_probability is a list of 3, not one probability"),
        (NOT_A_NUMBER, "case 1 of .*: output malignancy_probability is not a finite number"),
        (DOES_NOT_LOAD, "the model did not load \\(SystemExit: no weights\\)"),
    ],
    ids=["crashes", "hangs", "wrong-shape", "nan", "does-not-load"],
)
def test_a_model_that_cannot_answer_is_reported_as_such_within_the_time_limit(tmp_path, dataset, predict, reason):
    model = model_folder(tmp_path, predict)
    started = time.monotonic()
    assessment = assess_model(job(tmp_path, model, dataset, timeout=20))
    took = time.monotonic() - started
    assert not assessment.attacks and not assessment.fault
    assert assessment.model_problem.startswith("could not be assessed: ")
    assert re.search(reason, assessment.model_problem), assessment.model_problem
    assert took < 20 + 30
    assert not (tmp_path / "work").exists()


def test_a_folder_without_the_predict_contract_is_not_assessed(tmp_path, dataset):
    folder = tmp_path / "weights-only"
    folder.mkdir()
    (folder / "model.pt").write_bytes(b"\x00" * 16)
    assert not is_predict_contract(folder)
    (folder / "m2d-model.json").write_text(json.dumps({"entrypoint": "../../etc/passwd:Model"}))
    assert not is_predict_contract(folder)
    assessment = assess_model(job(tmp_path, folder, dataset))
    assert "not a file in the model's folder" in assessment.model_problem


def test_acro_flags_a_table_with_a_count_under_the_minimum_and_passes_one_without(tmp_path):
    files = {
        "tables/by-density.csv": "diagnosis,density,n\nbenign,A,40\nbenign,B,3\nmalignant,A,12\nmalignant,B,25\n",
        "tables/by-site.csv": "site;benign;malignant\nA;30;14\nB;22;17\n",
        "results.csv": "epoch,train_loss,test_auc\n1,0.61,0.52\n2,0.48,0.66\n",
    }
    sources = []
    for name, text in files.items():
        path = tmp_path / "export" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        sources.append((name, path))
    checks = check_tables(
        sources, disclosure_image=DISCLOSURE_IMAGE, work_dir=tmp_path / "work", min_count=10, timeout=120
    )
    by_path = {c.path: c for c in checks}
    assert [c.path for c in checks] == list(files)
    small = by_path["tables/by-density.csv"]
    assert (small.is_table, small.cells, small.small_cells, small.min_count, small.fault) == (True, 4, 1, 10, "")
    assert "1 of 4 count cells are under 10" in small.detail
    fine = by_path["tables/by-site.csv"]
    assert (fine.is_table, fine.cells, fine.small_cells) == (True, 4, 0)
    assert "cross-tabulation" in fine.detail
    metrics = by_path["results.csv"]
    assert not metrics.is_table and "not an aggregate table" in metrics.detail
    assert not (tmp_path / "work").exists()


# A researcher's own code, as the researchers' guide shows it: ACRO builds the tables from the
# microdata and finalises them with its results. One cell's total comes almost all from one person.
ACRO_SESSION = """
import numpy as np
import pandas as pd
from acro import ACRO

draw = np.random.default_rng(7)
people = [
    {"site": site, "grade": grade, "cost": float(draw.uniform(90, 110))}
    for site in ("north", "south", "east")
    for grade in ("benign", "malignant")
    for _ in range(20)
]
df = pd.DataFrame(people)
north_malignant = df.index[(df.site == "north") & (df.grade == "malignant")]
df.loc[north_malignant, "cost"] = 5.0
df.loc[north_malignant[0], "cost"] = 2000.0  # about 95 % of the cell's sum
acro = ACRO(suppress=False)
acro.crosstab(df.site, df.grade)
acro.crosstab(df.site, df.grade, values=df.cost, aggfunc="mean")
acro.finalise("/out/acro", "json")
"""


def acro_outputs(folder: Path) -> Path:
    """ACRO's finalised outputs, made by ACRO itself in the disclosure image (which has it)."""
    code, out = folder / "code", folder / "out"
    code.mkdir(parents=True)
    out.mkdir()
    out.chmod(0o777)
    (code / "session.py").write_text(ACRO_SESSION)
    readable(code)
    outcome = run_sealed_job(
        SealedJobSpec(
            name=f"m2d-test-acro-session-{os.getpid()}",
            image=DISCLOSURE_IMAGE,
            command=("python3", "/code/session.py"),
            mounts=(Mount(code, "/code"), Mount(out, "/out", writable=True)),
            user="65534:65534",
            memory="1g",
            cpus=1.0,
            timeout=180,
        )
    )
    assert outcome.exit_code == 0, outcome.log_tail
    return out / "acro"


def test_acros_own_results_report_a_dominated_cell_that_a_finished_table_cannot_show(tmp_path):
    acro = acro_outputs(tmp_path / "session")
    in_export = sorted(str(p.relative_to(acro.parent)) for p in acro.rglob("*") if p.is_file())
    assert acro_folders(in_export) == ["acro/"]
    tables = candidates(in_export)[1]
    assert tables == [
        "acro/output_0_0.csv",
        "acro/output_1_0.csv",
        "acro/session_summary.csv",
        "acro/session_summary.json",
    ]
    names = [t.removeprefix("acro/") for t in tables]
    started = time.monotonic()
    checks = check_acro_results(
        "acro/",
        names,
        acro / "results.json",
        acro / "config.json",
        disclosure_image=DISCLOSURE_IMAGE,
        work_dir=tmp_path / "work",
        min_count=10,
        timeout=120,
    )
    print(f"\nACRO's results read in {time.monotonic() - started:.1f} s")
    for check in checks.values():
        print(f"{check.path}: {check.acro_status}: {check.detail}")
    assert sorted(checks) == names
    mean = checks["output_1_0.csv"]
    assert (mean.path, mean.acro_status, mean.is_table, mean.fault) == ("acro/output_1_0.csv", "fail", True, "")
    assert (mean.cells, mean.dominated_cells, mean.small_cells) == (6, 1, 0)
    assert "fail; dominance (p %, n-k): 1 of 6 cells may need suppression" in mean.detail
    assert "NKCheck: fail - 1 cells may need suppressing" in mean.detail
    counts = checks["output_0_0.csv"]
    assert (counts.acro_status, counts.cells, counts.dominated_cells, counts.small_cells) == ("pass", 6, 0, 0)
    assert checks["session_summary.json"].acro_status == "review"  # ACRO's notes for the output checker
    assert not (tmp_path / "work").exists()

    # The same mean table, finished and handed over without ACRO: nothing in it shows the dominance.
    finished = check_tables(
        [("means.csv", acro / "output_1_0.csv")],
        disclosure_image=DISCLOSURE_IMAGE,
        work_dir=tmp_path / "work",
        min_count=10,
        timeout=120,
    )
    assert finished[0].dominated_cells == 0 and not finished[0].is_table
    assert "builds it with ACRO" in finished[0].detail
