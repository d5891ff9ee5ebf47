"""Toy submission: train a classifier on iris and log to MLflow.

Checks the upload pipeline end to end. On success MLflow shows accuracy = 1 and
dataset-exists = 1, and /mnt/export holds results.csv.
"""

import csv
import os
from pathlib import Path

import mlflow
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

DATASET = Path("/mnt/dataset")
EXPORT = Path("/mnt/export")

# The platform sets these four for you. Researchers used to pasting their credentials here can
# still do so: replace the defaults with the values from your account page.
TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI", "http://mlflow-server:3001")
USERNAME = os.environ.get("MLFLOW_TRACKING_USERNAME", "your-mlflow-username")
PASSWORD = os.environ.get("MLFLOW_TRACKING_PASSWORD", "your-mlflow-password")
EXPERIMENT = os.environ.get("MLFLOW_EXPERIMENT_NAME", USERNAME)


def main() -> None:
    os.environ["MLFLOW_TRACKING_USERNAME"] = USERNAME
    os.environ["MLFLOW_TRACKING_PASSWORD"] = PASSWORD
    mlflow.set_tracking_uri(TRACKING_URI)
    mlflow.set_experiment(EXPERIMENT)

    dataset_csv = DATASET / "clam-details-case-extrainfo.csv"
    dataset_exists = dataset_csv.is_file()
    cases = len(dataset_csv.read_text().splitlines()) - 1 if dataset_exists else 0
    print(f"data set present: {dataset_exists} ({cases} cases)")

    x, y = load_iris(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    params = {"C": 10.0, "max_iter": 500}

    with mlflow.start_run(run_name="iris-logistic-regression"):
        model = LogisticRegression(**params).fit(x_train, y_train)
        accuracy = accuracy_score(y_test, model.predict(x_test))
        mlflow.log_params(params)
        mlflow.log_metric("accuracy", accuracy)
        mlflow.log_metric("dataset-exists", int(dataset_exists))
        print(f"accuracy: {accuracy:.3f}")

    EXPORT.mkdir(parents=True, exist_ok=True)
    with open(EXPORT / "results.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["metric", "value"])
        writer.writerow(["accuracy", accuracy])
        writer.writerow(["dataset_cases", cases])
    print(f"wrote {EXPORT / 'results.csv'}")


if __name__ == "__main__":
    main()
