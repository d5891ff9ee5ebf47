"""The portal's REST API (/api/v1/) as plain function calls."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import requests

from .config import Config

TIMEOUT = 30


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"the portal answered {response.status_code}"
    if isinstance(body, dict):
        if "message" in body:  # the model store's errors: {"code", "type", "message"}
            return str(body["message"])
        if "detail" in body:
            return str(body["detail"])
        return "\n".join(
            f"{key}: {' '.join(map(str, value if isinstance(value, list) else [value]))}" for key, value in body.items()
        )
    return str(body)


class UploadBody:
    """A multipart/form-data body read from disk as it is sent, reporting each chunk."""

    def __init__(self, path: Path, progress: Callable[[int, int], None]):
        self.boundary = uuid.uuid4().hex
        head = (
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="archive"; filename="{path.name}"\r\n'
            "Content-Type: application/zip\r\n\r\n"
        ).encode()
        self._parts = [head, path, f"\r\n--{self.boundary}--\r\n".encode()]
        self._size = len(head) + path.stat().st_size + len(self._parts[2])
        self._file = None
        self._index = 0
        self._sent = 0
        self._progress = progress

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return self._size

    def read(self, size: int = -1) -> bytes:
        size = 64 * 1024 if size is None or size < 0 else size
        while self._index < len(self._parts):
            part = self._parts[self._index]
            if isinstance(part, bytes):
                self._index += 1
                chunk = part
            else:
                if self._file is None:
                    self._file = open(part, "rb")  # noqa: SIM115 - closed once read to its end
                chunk = self._file.read(size)
                if not chunk:
                    self._file.close()
                    self._index += 1
                    continue
            self._sent += len(chunk)
            self._progress(self._sent, self._size)
            return chunk
        return b""


class Portal:
    def __init__(self, config: Config):
        self.base = config.url
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Token {config.token}"
        self.http.headers["Accept"] = "application/json"
        self.http.headers["User-Agent"] = f"m2d-cli ({os.name})"

    def _call(self, method: str, path: str, **kwargs) -> requests.Response:
        url = path if path.startswith("http") else f"{self.base}/api/v1/{path.lstrip('/')}"
        try:
            response = self.http.request(method, url, timeout=kwargs.pop("timeout", TIMEOUT), **kwargs)
        except requests.RequestException as exc:
            raise ApiError(0, f"cannot reach the portal at {self.base}: {exc}") from exc
        if response.status_code == 401:
            raise ApiError(401, "The portal did not accept your token. Create a new one on your account page.")
        if response.status_code >= 400:
            raise ApiError(response.status_code, _message(response))
        return response

    def submit(self, path: Path, progress: Callable[[int, int], None]) -> dict:
        body = UploadBody(path, progress)
        return self._call(
            "POST", "submissions/", data=body, headers={"Content-Type": body.content_type}, timeout=600
        ).json()

    def submissions(self, page_size: int = 20) -> list[dict]:
        return self._call("GET", "submissions/", params={"page_size": page_size}).json()["results"]

    def submission(self, submission_id: int) -> dict:
        return self._call("GET", f"submissions/{submission_id}/").json()

    def logs(self, submission_id: int) -> dict:
        return self._call("GET", f"submissions/{submission_id}/logs/").json()

    def exports(self, submission_id: int) -> dict:
        return self._call("GET", f"submissions/{submission_id}/exports/").json()

    def cancel(self, submission_id: int) -> dict:
        return self._call("POST", f"submissions/{submission_id}/cancel/").json()

    def download(self, url: str, target: Path) -> int:
        response = self._call("GET", url, stream=True)
        written = 0
        with open(target, "wb") as out:
            for chunk in response.iter_content(64 * 1024):
                out.write(chunk)
                written += len(chunk)
        return written

    # --- the model store ----------------------------------------------------------------------

    def models(self, next_page_token: str | None = None, limit: int = 100) -> tuple[list[dict], str | None]:
        params: dict = {"limit": limit}
        if next_page_token:
            params["next_page_token"] = next_page_token
        body = self._call("GET", "models", params=params).json()
        return body["models"], body.get("next_page_token") or None

    def model(self, name: str) -> dict:
        return self._call("GET", f"models/{quote(name)}").json()

    def model_versions(self, name: str) -> list[dict]:
        return self._call("GET", f"models/{quote(name)}/all").json()

    def model_version(self, name: str, version: str) -> dict:
        return self._call("GET", f"models/{quote(name)}/{quote(str(version))}").json()

    def model_register(self, body: dict) -> dict:
        return self._call("POST", "models", json=body, timeout=600).json()

    def model_set_default(self, name: str, version: int) -> dict:
        return self._call("PUT", f"models/{quote(name)}/{version}/set-default").json()

    def model_alias_set(self, name: str, alias: str, version: int) -> dict:
        return self._call("PUT", f"models/{quote(name)}/aliases/{quote(alias)}", json={"version": version}).json()

    def model_alias_delete(self, name: str, alias: str) -> None:
        self._call("DELETE", f"models/{quote(name)}/aliases/{quote(alias)}")

    def model_retire(self, name: str, version: int) -> None:
        self._call("DELETE", f"models/{quote(name)}/{version}")
