"""M2D's model server: runs inside a sealed serving container, beside the model's own code.

It loads the class the model card names (`"entrypoint": "predict.py:Model"`) from the model's
folder, or, when the card names `"entrypoint": "MLmodel"`, the MLflow pyfunc folder with
mlflow.pyfunc.load_model (mlflow from the submission's own image), then answers on a unix socket,
M2D_SERVE_IN_FLIGHT predictions at a time:
  GET  /ready    200 once the model is loaded: {"ready": true, "in_flight": n, "oldest_seconds": s}, the
                 age of the oldest prediction still running (the platform recycles a worker whose
                 prediction outlives the response timeout with nobody left waiting for it)
  POST /predict  {"inputs": {name: {"content_type": ..., "data": <base64>}}, "parameters": {...}}
                 -> 200 {"outputs": {name: value}} or 4xx/5xx {"error": "..."}; 503 {"busy": true}
                 when the predictions in flight did not end within M2D_SERVE_QUEUE_SECONDS
PNG inputs become arrays (Pillow, whose decompression-bomb limit stays on) and `.npy` inputs are
read without pickle; outputs must be the names the card declares, finite numbers or lists of them.
The platform's gateway checked the inputs already; this checks them again, since only this side
decodes them. The same file serves a researcher's local dry run (`--socket` and `--model-dir`).

Standard library, numpy and Pillow only (mlflow for an MLmodel): the runtime image holds them,
nothing is installed here.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import importlib.util
import io
import json
import math
import os
import socketserver
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler

MAX_BODY = int(os.environ.get("M2D_SERVE_MAX_BODY", str(64 * 1024**2)))
IN_FLIGHT = max(1, int(os.environ.get("M2D_SERVE_IN_FLIGHT", "1")))
QUEUE_SECONDS = float(os.environ.get("M2D_SERVE_QUEUE_SECONDS", "2"))


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


MLMODEL = "MLmodel"


class PyfuncModel:
    """An MLflow pyfunc folder behind the predict contract: one input is given to the pyfunc as
    it is (an array), several as a dict of arrays; what it returns becomes the card's outputs (a
    DataFrame's columns, a dict's keys, else the one declared output)."""

    def __init__(self, card: dict):
        self.outputs = [spec["name"] for spec in card.get("outputs", [])]

    def load(self, model_dir: str, device: str) -> None:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        os.environ.setdefault("DO_NOT_TRACK", "true")
        try:
            import mlflow.pyfunc
        except ImportError:
            raise SystemExit(
                "the model card names the entrypoint MLmodel, but this submission's image has no mlflow: "
                "add mlflow to requirements.txt"
            ) from None
        self.model = mlflow.pyfunc.load_model(model_dir)

    def predict(self, inputs: dict, parameters: dict) -> dict:
        given = next(iter(inputs.values())) if len(inputs) == 1 else inputs
        result = self.model.predict(given, params=parameters) if parameters else self.model.predict(given)
        if hasattr(result, "columns") and hasattr(result, "to_dict"):  # a DataFrame
            return {str(column): result[column].to_numpy() for column in result.columns}
        if isinstance(result, dict):
            return result
        if len(self.outputs) > 1:
            raise Refused(502, f"the pyfunc returned one value; the card declares {', '.join(self.outputs)}")
        return {self.outputs[0] if self.outputs else "predictions": result}


def load_model(model_dir: str, device: str):
    """The card (the platform's registered one, else the folder's m2d-model.json) and the model."""
    if os.environ.get("M2D_SERVE_CARD"):
        card = json.loads(os.environ["M2D_SERVE_CARD"])
    else:
        with open(os.path.join(model_dir, "m2d-model.json"), encoding="utf-8") as f:
            card = json.load(f)
    if card.get("entrypoint") == MLMODEL:
        model = PyfuncModel(card)
        model.load(model_dir, device)
        return card, model
    module_file, _, class_name = str(card.get("entrypoint", "predict.py:Model")).partition(":")
    path = os.path.realpath(os.path.join(model_dir, module_file))
    if not path.startswith(os.path.realpath(model_dir) + os.sep):
        raise SystemExit(f"the entrypoint {module_file} is outside the model's folder")
    spec = importlib.util.spec_from_file_location("m2d_model_predict", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, model_dir)
    spec.loader.exec_module(module)
    model = getattr(module, class_name or "Model")()
    model.load(model_dir, device)
    return card, model


def decode(name: str, value: dict):
    import numpy as np

    if not isinstance(value, dict) or not isinstance(value.get("data"), str):
        raise Refused(400, f"input {name}: give it as {{'content_type': ..., 'data': <base64>}}")
    try:
        raw = base64.b64decode(value["data"], validate=True)
    except (binascii.Error, ValueError):
        raise Refused(400, f"input {name}: the data is not base64") from None
    kind = value.get("content_type", "")
    if kind == "image/png":
        from PIL import Image

        try:
            with Image.open(io.BytesIO(raw)) as image:
                return np.asarray(image)
        except (OSError, Image.DecompressionBombError, ValueError) as exc:
            raise Refused(400, f"input {name}: not a PNG this server can read ({exc})") from None
    if kind == "application/x-npy":
        try:
            return np.load(io.BytesIO(raw), allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise Refused(400, f"input {name}: not an .npy array without objects ({exc})") from None
    if kind in ("application/octet-stream", ""):
        return raw
    raise Refused(400, f"input {name}: content type {kind!r} is not one this server reads")


def plain(name: str, value):
    """An output as JSON: numbers, lists of numbers, strings; finite only."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise Refused(502, f"output {name} is not a finite number ({value})")
        return value
    if isinstance(value, list | tuple):
        return [plain(name, item) for item in value]
    raise Refused(502, f"output {name} is a {type(value).__name__}, not numbers or text")


def checked(card: dict, outputs) -> dict:
    """The outputs as JSON, when they are exactly those the card declares."""
    if not isinstance(outputs, dict):
        raise Refused(502, f"predict returned a {type(outputs).__name__}, not a dict of outputs")
    expected = {o["name"] for o in card.get("outputs", [])}
    if expected:
        extra, missing = sorted(set(outputs) - expected), sorted(expected - set(outputs))
        if extra:
            raise Refused(502, f"predict returned {', '.join(map(str, extra))}, which the card does not declare")
        if missing:
            raise Refused(502, f"predict did not return {', '.join(missing)}, which the card declares")
    return {k: plain(k, v) for k, v in outputs.items()}


class Handler(BaseHTTPRequestHandler):
    server_version = "m2d-serve"
    protocol_version = "HTTP/1.1"

    def address_string(self) -> str:
        return "gateway"

    def log_message(self, format: str, *args) -> None:  # the model's own prints are its log
        pass

    def answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/ready":
            with self.server.running_lock:
                started = list(self.server.running.values())
            oldest = time.monotonic() - min(started) if started else 0.0
            self.answer(200, {"ready": True, "in_flight": len(started), "oldest_seconds": round(oldest, 3)})
        else:
            self.answer(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self.path != "/predict":
            self.answer(404, {"error": "not found"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise Refused(413, f"the request is over {MAX_BODY} bytes")
            request = json.loads(self.rfile.read(length) or b"{}")
            card = self.server.card
            declared = {i["name"] for i in card.get("inputs", [])}
            given = request.get("inputs") or {}
            if declared and set(given) != declared:
                raise Refused(400, f"the model takes the inputs {sorted(declared)}, not {sorted(given)}")
            inputs = {name: decode(name, value) for name, value in given.items()}
            if not self.server.slots.acquire(timeout=QUEUE_SECONDS):
                self.answer(503, {"error": "every prediction slot of this worker is busy", "busy": True})
                return
            key = object()
            try:
                started = time.monotonic()
                with self.server.running_lock:
                    self.server.running[key] = started
                outputs = self.server.model.predict(inputs, request.get("parameters") or {})
                took = time.monotonic() - started
            finally:
                with self.server.running_lock:
                    self.server.running.pop(key, None)
                self.server.slots.release()
            self.answer(200, {"outputs": checked(card, outputs), "model_seconds": took})
        except Refused as exc:
            self.answer(exc.status, {"error": str(exc)})
        except json.JSONDecodeError:
            self.answer(400, {"error": "the request is not JSON"})
        except Exception:  # the model's own failure: its traceback goes to its log, not to the caller
            traceback.print_exc()
            self.answer(500, {"error": "the model's predict raised an error"})


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    allow_reuse_address = False
    daemon_threads = True  # a prediction still running never holds the server's exit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", default="/opt/m2d/model")
    parser.add_argument("--socket", default="/run/m2d/worker.sock")
    parser.add_argument("--device", default=os.environ.get("M2D_SERVE_DEVICE", "cpu"))
    args = parser.parse_args()
    card, model = load_model(args.model_dir, args.device)
    if os.path.lexists(args.socket):
        os.unlink(args.socket)
    server = Server(args.socket, Handler)
    os.chmod(args.socket, 0o660)
    server.card, server.model = card, model
    server.slots = threading.BoundedSemaphore(IN_FLIGHT)
    server.running, server.running_lock = {}, threading.Lock()  # when each prediction in flight began
    print("m2d-serve: ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
