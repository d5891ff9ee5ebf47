"""CLaM sample: a breast cancer classifier in PyTorch, exported ready for the model store.

Trains a small convolutional network from scratch on every image of CLaM's train split, labelled
with its case's diagnosis (CaseLabel), and evaluates it on the test split after each epoch. Loss,
accuracy and AUC go to MLflow once per epoch. What goes to /mnt/export, which the platform hands
you after review:

    results.csv              the per-epoch table
    model/model.pt           the trained weights (a state_dict)
    model/predict.py         the network and the predict contract (a copy of predict.py)
    model/m2d-model.json     the model card: what the model is for, its inputs and outputs

Once released, `model/` registers as a model version in the portal's model store as it is. To use
the weights yourself:

    from predict import Model
    model = Model(); model.load("model", "cpu")
    model.predict({"LCC": lcc, "LMLO": lmlo, "RCC": rcc, "RMLO": rmlo}, {})  # 2-D arrays

Nothing is downloaded at run time (no pretrained weights, no data). Uses the GPU when there is one;
on the 10-case sample a CPU finishes in well under a minute.
"""

import csv
import json
import os
import shutil
import time
from pathlib import Path

import mlflow
import numpy as np
import torch
from PIL import Image
from predict import HEIGHT, VIEWS, WEIGHTS, WIDTH, small_cnn, to_tensor
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, Dataset

DATASET = Path("/mnt/dataset")
EXPORT = Path("/mnt/export")
HERE = Path(__file__).resolve().parent

# The platform sets these four for you. Researchers used to pasting their credentials here can
# still do so: replace the defaults with the values from your account page.
TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI", "http://mlflow-server:3001")
USERNAME = os.environ.get("MLFLOW_TRACKING_USERNAME", "your-mlflow-username")
PASSWORD = os.environ.get("MLFLOW_TRACKING_PASSWORD", "your-mlflow-password")
EXPERIMENT = os.environ.get("MLFLOW_EXPERIMENT_NAME", USERNAME)

HPARAMS = {
    "epochs": 6,
    "batch_size": 8,
    "learning_rate": 1e-3,
    "weight_decay": 1e-4,
    # Every image is resized to this (predict.py); real CLaM images are far larger and vary in size.
    "input_height": HEIGHT,
    "input_width": WIDTH,
    "seed": 0,
}


def read_images(split: str) -> list[dict[str, str]]:
    """The rows of clam-details-image.csv in one split ("train" or "test")."""
    with open(DATASET / "clam-details-image.csv", newline="") as handle:
        return [row for row in csv.DictReader(handle, delimiter=";") if row["Split"] == split]


class ClamImages(Dataset):
    """One item per image row: (1×H×W tensor in [0, 1], label 1.0 for malignant)."""

    def __init__(self, rows: list[dict[str, str]]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int):
        row = self.rows[index]
        pixels = np.asarray(Image.open(DATASET / row["ImagePath"]).convert("L"))
        label = torch.tensor(1.0 if row["CaseLabel"] == "malignant" else 0.0)
        return to_tensor(pixels, row["Views"]), label


def scores(labels: list[float], probabilities: list[float], loss_sum: float) -> dict[str, float | None]:
    labels_array, probabilities_array = np.array(labels), np.array(probabilities)
    both_classes = len(set(labels)) == 2  # AUC is undefined when a split holds one class only
    return {
        "loss": loss_sum / len(labels),
        "accuracy": float(np.mean((probabilities_array >= 0.5) == (labels_array == 1.0))),
        "auc": float(roc_auc_score(labels_array, probabilities_array)) if both_classes else None,
    }


def train_one_epoch(model, loader, loss_fn, optimizer, device) -> dict[str, float | None]:
    model.train()
    labels, probabilities, loss_sum = [], [], 0.0
    for pixels, label in loader:
        pixels, label = pixels.to(device), label.to(device)
        optimizer.zero_grad()
        logits = model(pixels).squeeze(1)
        loss = loss_fn(logits, label)
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(label)
        labels += label.tolist()
        probabilities += torch.sigmoid(logits).detach().tolist()
    return scores(labels, probabilities, loss_sum)


@torch.no_grad()
def evaluate(model, loader, loss_fn, device) -> dict[str, float | None]:
    model.eval()
    labels, probabilities, loss_sum = [], [], 0.0
    for pixels, label in loader:
        pixels, label = pixels.to(device), label.to(device)
        logits = model(pixels).squeeze(1)
        loss_sum += loss_fn(logits, label).item() * len(label)
        labels += label.tolist()
        probabilities += torch.sigmoid(logits).tolist()
    return scores(labels, probabilities, loss_sum)


def main() -> None:
    os.environ["MLFLOW_TRACKING_USERNAME"] = USERNAME
    os.environ["MLFLOW_TRACKING_PASSWORD"] = PASSWORD
    mlflow.set_tracking_uri(TRACKING_URI)
    mlflow.set_experiment(EXPERIMENT)

    torch.manual_seed(HPARAMS["seed"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train_rows, test_rows = read_images("train"), read_images("test")
    print(f"device: {device}; {len(train_rows)} train images, {len(test_rows)} test images")

    # Worker processes pay off when a GPU waits for images; on a CPU they compete with training.
    workers = 4 if device.type == "cuda" else 0
    train_loader = DataLoader(
        ClamImages(train_rows),
        batch_size=HPARAMS["batch_size"],
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(HPARAMS["seed"]),
    )
    test_loader = DataLoader(ClamImages(test_rows), batch_size=HPARAMS["batch_size"], num_workers=workers)

    model = small_cnn().to(device)
    malignant = sum(row["CaseLabel"] == "malignant" for row in train_rows)
    # Malignant images are the minority: weigh them up so that "always benign" is not a good answer.
    pos_weight = torch.tensor((len(train_rows) - malignant) / max(malignant, 1), device=device)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    optimizer = torch.optim.Adam(model.parameters(), lr=HPARAMS["learning_rate"], weight_decay=HPARAMS["weight_decay"])

    EXPORT.mkdir(parents=True, exist_ok=True)
    table = []
    with mlflow.start_run(run_name="clam-small-cnn"):
        mlflow.log_params({**HPARAMS, "device": device.type, "train_images": len(train_rows)})
        mlflow.log_param("test_images", len(test_rows))
        for epoch in range(1, HPARAMS["epochs"] + 1):
            started = time.monotonic()
            train = train_one_epoch(model, train_loader, loss_fn, optimizer, device)
            test = evaluate(model, test_loader, loss_fn, device)
            row = {"epoch": epoch}
            row.update({f"train_{name}": value for name, value in train.items()})
            row.update({f"test_{name}": value for name, value in test.items()})
            row["epoch_seconds"] = round(time.monotonic() - started, 2)
            table.append(row)
            # One call per epoch; an undefined AUC is left out rather than logged as a made-up number.
            mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch" and v is not None}, step=epoch)
            print(" ".join(f"{k}={'n/a' if v is None else round(v, 4)}" for k, v in row.items()), flush=True)
        if test["auc"] is None:
            print("test AUC is undefined: the test split holds images of one class only")

    with open(EXPORT / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in table)
    export_model(model, table[-1], len(train_rows), len(test_rows))
    print(f"wrote {EXPORT / 'results.csv'} and {EXPORT / 'model'}/")


def export_model(model: nn.Module, last: dict, train_images: int, test_images: int) -> None:
    """model/: the weights, predict.py and the model card, as the model store registers them."""
    folder = EXPORT / "model"
    folder.mkdir(exist_ok=True)
    torch.save({name: tensor.cpu() for name, tensor in model.state_dict().items()}, folder / WEIGHTS)
    shutil.copyfile(HERE / "predict.py", folder / "predict.py")
    card = model_card(last, train_images, test_images)
    (folder / "m2d-model.json").write_text(json.dumps(card, indent=2) + "\n")


def model_card(last: dict, train_images: int, test_images: int) -> dict:
    """What a user of the model needs to know: use, inputs, outputs, how well it did, whom to ask.
    Edit the wording for your own model; the portal checks it against its card schema and shows it
    on the model's page, with the metrics and training data it reads from the run itself."""
    measured = ", ".join(
        f"{name.removeprefix('test_')} {last[name]:.3f}"
        for name in ("test_auc", "test_accuracy")
        if last[name] is not None
    )
    view = {
        "formats": ["image/png", "application/x-npy"],
        "datatype": "UINT16",
        "shape": [-1, -1],
        "max_dims": [8192, 8192],
    }
    return {
        "x-name": "clam-malignancy",
        "entrypoint": "predict.py:Model",
        "summary": "Estimates how likely a screening mammography case (four views) is malignant.",
        "intended_use": "research use only",
        "not_for": "Diagnosis, triage or any decision about a patient.",
        "mechanism": (
            "A small CNN (4 convolution blocks, 16-32-64-64 channels) trained from scratch on single views, "
            f"each resized to {HEIGHT}×{WIDTH} with right views mirrored; the case scores as its most "
            "suspicious view."
        ),
        "training_data": {
            "dataset": "CLaM",
            "split": f"train split ({train_images} images, each labelled with its case's diagnosis); "
            f"checked on the test split ({test_images} images)",
        },
        "validation_and_performance": f"On the test split at the last epoch: {measured or 'no defined metric'}.",
        "inputs": [
            {
                "name": name,
                "description": f"the {name} view: an 8-bit PNG or CLaM's 12-bit NPY (uint16)",
                **view,
            }
            for name in VIEWS
        ],
        "outputs": [
            {
                "name": "malignancy_probability",
                "datatype": "FP32",
                "shape": [1],
                "description": "the highest of the four views' probabilities, in [0, 1]",
            },
            {
                "name": "view_probabilities",
                "datatype": "FP32",
                "shape": [len(VIEWS)],
                "description": "each view's probability, in the order " + ", ".join(VIEWS),
            },
            {
                "name": "label",
                "datatype": "BYTES",
                "shape": [1],
                "description": "malignant or benign, at parameters.threshold (0.5 unless sent)",
            },
        ],
        "licence": "CC-BY-4.0",
        "contact": "the researcher who registered the model (named on its page in the portal)",
        "warnings": [
            "Trained on a small sample; its scores say nothing about clinical performance.",
            f"Images are resized to {HEIGHT}×{WIDTH}, which discards most of a real mammogram's detail.",
            "Not validated on scanners, sites or populations other than CLaM's.",
        ],
        "x-hyperparameters": HPARAMS,
    }


if __name__ == "__main__":
    main()
