"""The front of a researcher's local serving dry run (docker-compose*.yaml, service `serve-port`).

The model runs in the `serve` container exactly as a platform serving worker runs it: the same
m2d_serve.py beside predict.py, no network at all, a unix socket in a small folder of its own.
This front, in a container of its own, answers on a local port what the platform's gateway
answers, in the same shapes, and asks the model over that socket:
  POST/PUT /predictions/{model}[/{version}]   the raw file for a one-input model, or multipart
                                              with one part per input name
  GET  /v2, /v2/health/live, /v2/health/ready, /v2/models/{model}[/versions/{version}][/ready]
  POST /v2/models/{model}[/versions/{version}]/infer   V2 JSON, files as base64 BYTES
No sign-in (it listens on your machine only), no quotas and no audit: those are the platform's.
The platform also checks image sizes against the card's max_dims before the model sees them.

Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import email.parser
import email.policy
import http.client
import json
import os
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"
VERSION = 1  # a local model has one version


class Refused(Exception):
    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind = status, kind


def sniff(data: bytes) -> str:
    if data.startswith(PNG_MAGIC):
        return "image/png"
    if data.startswith(NPY_MAGIC):
        return "application/x-npy"
    return "application/octet-stream"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("worker", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Front:
    def __init__(self, name: str, card: dict, socket_path: str, timeout: float, max_body: int):
        self.name, self.card, self.socket_path = name, card, socket_path
        self.timeout, self.max_body = timeout, max_body
        self.inputs = [spec["name"] for spec in card.get("inputs", [])]

    def ask(self, method: str, path: str, body: dict | None = None, timeout: float | None = None) -> tuple[int, dict]:
        connection = _UnixConnection(self.socket_path, timeout or self.timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        except TimeoutError:
            raise Refused(504, "model_timed_out", f"The model did not answer within {self.timeout:g} s.") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise Refused(503, "no_ready_worker", f"The model's server is not answering yet ({exc}).") from None
        finally:
            connection.close()

    def ready(self) -> bool:
        try:
            return self.ask("GET", "/ready", timeout=5)[0] == 200
        except Refused:
            return False

    def predict(self, given: dict[str | None, tuple[str, bytes]]) -> dict:
        if None in given:  # a body sent without a name: the model's one input
            if len(self.inputs) != 1:
                raise Refused(
                    400,
                    "invalid_input",
                    f"This model takes {len(self.inputs)} inputs; send them as multipart parts named "
                    f"{', '.join(self.inputs)}.",
                )
            given = {self.inputs[0]: given[None]}
        if self.inputs and set(given) != set(self.inputs):
            missing, unknown = sorted(set(self.inputs) - set(given)), sorted(set(given) - set(self.inputs))
            parts = [f"missing {', '.join(missing)}" if missing else ""]
            parts.append(f"unknown {', '.join(unknown)}" if unknown else "")
            raise Refused(
                400,
                "invalid_input",
                f"This model takes the inputs {', '.join(self.inputs)}: {'; '.join(p for p in parts if p)}.",
            )
        body = {
            "inputs": {k: {"content_type": t, "data": base64.b64encode(d).decode()} for k, (t, d) in given.items()},
            "parameters": {},
        }
        status, answer = self.ask("POST", "/predict", body)
        if status == 200:
            return answer.get("outputs", {})
        error = str(answer.get("error", "the model failed"))
        if status in (400, 413):
            raise Refused(status, "invalid_input", error)
        if status == 503:
            raise Refused(503, "workers_busy", f"The model is busy: {error}")
        raise Refused(502, "model_failed", f"The model could not answer: {error}")


def _v2_output(name: str, value) -> dict:
    data = value if isinstance(value, list) else [value]
    datatype = "FP64" if all(isinstance(v, float | int) for v in data) else "BYTES"
    return {"name": name, "datatype": datatype, "shape": [len(data)], "data": data}


def _tensor(spec: dict) -> dict:
    return {"name": spec.get("name"), "datatype": spec.get("datatype", "BYTES"), "shape": spec.get("shape", [-1])}


class Handler(BaseHTTPRequestHandler):
    server_version = "m2d-local"
    protocol_version = "HTTP/1.1"

    @property
    def front(self) -> Front:
        return self.server.front

    def send(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if status == 503:
            self.send_header("Retry-After", "5")
        self.end_headers()
        self.wfile.write(data)

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.front.max_body:
            raise Refused(413, "body_too_large", f"The request is {length} bytes; the limit is {self.front.max_body}.")
        return self.rfile.read(length)

    def route(self) -> tuple[str, str | None, str]:
        """(endpoint, version, rest) of this request's path, or raises 404."""
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        if parts[:1] == ["predictions"] and len(parts) in (2, 3):
            return self._named("predictions", parts[1], parts[2] if len(parts) == 3 else None, "")
        if parts[:2] == ["v2", "models"] and len(parts) >= 3:
            rest = parts[3:]
            version = None
            if rest[:1] == ["versions"] and len(rest) >= 2:
                version, rest = rest[1], rest[2:]
            if rest in ([], ["ready"], ["infer"]):
                return self._named("v2", parts[2], version, rest[0] if rest else "")
        if parts[:1] == ["v2"] and len(parts) <= 3:
            return "v2-server", None, "/".join(parts[1:])
        raise Refused(404, "not_found", f"No such route: {self.path}")

    def _named(self, endpoint: str, name: str, version: str | None, rest: str):
        if name != self.front.name or version not in (None, "default", str(VERSION)):
            what = name if version is None else f"{name} version {version}"
            raise Refused(404, "model_not_found", f"Model not found: {what} (this dry run serves {self.front.name})")
        return endpoint, version, rest

    def refuse(self, endpoint: str, exc: Refused) -> None:
        if endpoint == "predictions":
            self.send(exc.status, {"code": exc.status, "type": exc.kind, "message": str(exc)})
        else:
            self.send(exc.status, {"error": str(exc)})

    def do_GET(self) -> None:
        endpoint = "predictions" if self.path.startswith("/predictions") else "v2"
        try:
            endpoint, _version, rest = self.route()
            if endpoint == "v2-server":
                answers = {"": {"name": "m2d", "version": "2", "extensions": []}, "health/live": {"live": True}}
                if rest == "health/ready":
                    self.send(200 if self.front.ready() else 503, {"ready": self.front.ready()})
                elif rest in answers:
                    self.send(200, answers[rest])
                else:
                    raise Refused(404, "not_found", f"No such route: {self.path}")
            elif endpoint == "v2" and rest == "":
                card = self.front.card
                self.send(
                    200,
                    {
                        "name": self.front.name,
                        "versions": [str(VERSION)],
                        "platform": "m2d",
                        "inputs": [_tensor(spec) for spec in card.get("inputs", [])],
                        "outputs": [_tensor(spec) for spec in card.get("outputs", [])],
                    },
                )
            elif endpoint == "v2" and rest == "ready":
                ready = self.front.ready()
                self.send(200 if ready else 503, {"name": self.front.name, "ready": ready})
            else:
                raise Refused(405, "method_not_allowed", f"{self.path} takes POST")
        except Refused as exc:
            self.refuse(endpoint, exc)

    def do_POST(self) -> None:
        endpoint = "predictions" if self.path.startswith("/predictions") else "v2"
        try:
            endpoint, _version, rest = self.route()
            if endpoint == "predictions":
                outputs = self.front.predict(self._given())
                headers = {"X-M2D-Model-Version": f"{self.front.name}/{VERSION}", "X-M2D-Prediction": str(uuid.uuid4())}
                self.send(200, outputs, headers)
            elif endpoint == "v2" and rest == "infer":
                outputs = self.front.predict(self._v2_given(self.body()))
                self.send(
                    200,
                    {
                        "model_name": self.front.name,
                        "model_version": str(VERSION),
                        "id": str(uuid.uuid4()),
                        "outputs": [_v2_output(k, v) for k, v in outputs.items()],
                    },
                )
            else:
                raise Refused(405, "method_not_allowed", f"{self.path} takes GET")
        except Refused as exc:
            self.refuse(endpoint, exc)

    do_PUT = do_POST

    def _given(self) -> dict:
        data = self.body()
        content_type = self.headers.get("Content-Type", "")
        if not content_type.startswith("multipart/form-data"):
            return {None: (sniff(data), data)}
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + data)
        given = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                raw = part.get_payload(decode=True) or b""
                given[name] = (sniff(raw), raw)
        return given

    def _v2_given(self, body: bytes) -> dict:
        try:
            request = json.loads(body)
            given = {}
            for tensor in request["inputs"]:
                data = tensor["data"]
                raw = base64.b64decode(data[0] if isinstance(data, list) else data, validate=True)
                kind = (tensor.get("parameters") or {}).get("content_type") or sniff(raw)
                given[tensor["name"]] = (kind, raw)
            return given
        except (ValueError, KeyError, TypeError, IndexError, binascii.Error):
            raise Refused(
                400,
                "invalid_input",
                'Send {"inputs": [{"name", "datatype": "BYTES", "shape": [1], "data": ["<base64>"], '
                '"parameters": {"content_type": "image/png"}}]}.',
            ) from None

    def log_message(self, format: str, *args) -> None:
        print(f"m2d-local: {self.command} {self.path} -> {args[1] if len(args) > 1 else ''}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default="/opt/m2d/model")
    parser.add_argument("--socket", default="/run/m2d/worker.sock")
    parser.add_argument("--name", default=os.environ.get("DRY_RUN_MODEL_NAME", "my-model"))
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="0.0.0.0", help="inside its container; 127.0.0.1 outside one")
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("M2D_SERVE_RESPONSE_TIMEOUT", "120")))
    parser.add_argument("--max-body", type=int, default=int(os.environ.get("M2D_SERVE_MAX_BODY", str(64 * 1024**2))))
    args = parser.parse_args()
    with open(os.path.join(args.model_dir, "m2d-model.json"), encoding="utf-8") as f:
        card = json.load(f)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.front = Front(args.name, card, args.socket, args.timeout, args.max_body)
    threading.Thread(target=_say_when_ready, args=(server.front, args.port), daemon=True).start()
    server.serve_forever()


def _say_when_ready(front: Front, port: int) -> None:
    started = time.monotonic()
    while not front.ready():
        time.sleep(0.2)
    took = time.monotonic() - started
    print(f"m2d-local: {front.name} is ready after {took:.1f} s; ask it on port {port}", flush=True)


if __name__ == "__main__":
    main()
