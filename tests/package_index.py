"""Packages of the tests' own on the stack's package index (the builds' only way out).

A package on the index is how a hostile setup.py reaches a build on a real platform: someone put it
on the public index. The tests put theirs on an index of the platform's package server that
inherits everything else from its mirror, and point a pool of build workers at it.
"""

from __future__ import annotations

import base64
import io
import os
import socket
import tarfile
import textwrap
import threading
import uuid
from urllib.parse import urlsplit

import requests

SETUP = "from setuptools import setup\nsetup(name={name!r}, version={version!r})\n"


class TestIndex:
    __test__ = False  # not a test class

    def __init__(self, mirror_url: str):
        parts = urlsplit(mirror_url)
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.name = f"root/t{uuid.uuid4().hex[:10]}"
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        login = self.session.post(
            f"{self.base}/+login",
            json={"user": "root", "password": os.environ.get("M2D_INDEX_ROOT_PASSWORD", "")},
            timeout=30,
        )
        login.raise_for_status()
        token = login.json()["result"]["password"]
        self.session.headers["X-Devpi-Auth"] = base64.b64encode(f"root:{token}".encode()).decode()
        created = self.session.put(
            f"{self.base}/{self.name}", json={"bases": ["root/pypi"], "volatile": True}, timeout=30
        )
        created.raise_for_status()

    @property
    def simple_url(self) -> str:
        return f"{self.base}/{self.name}/+simple/"

    def upload(self, filename: str, data: bytes, name: str, version: str) -> None:
        response = self.session.post(
            f"{self.base}/{self.name}/",
            data={":action": "file_upload", "name": name, "version": version},
            files={"content": (filename, data)},
            timeout=60,
        )
        assert response.status_code in (200, 201), response.text[:500]

    def upload_sdist(self, name: str, version: str, setup_py: str) -> None:
        """A source package whose setup.py runs `setup_py` when it is built (as pip and uv do)."""
        root = f"{name}-{version}"
        backend = '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        files = {
            "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
            "pyproject.toml": backend,
            "setup.py": f"{textwrap.dedent(setup_py)}\n{SETUP.format(name=name, version=version)}",
        }
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for path, text in files.items():
                data = text.encode()
                info = tarfile.TarInfo(f"{root}/{path}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        self.upload(f"{root}.tar.gz", buffer.getvalue(), name, version)

    def delete(self) -> None:
        self.session.delete(f"{self.base}/{self.name}", timeout=30)


class HeldIndex:
    """A relay in front of the package index that the test holds shut: while held, a build that
    asks the index for anything waits there, mid-build, for as long as the test wants."""

    def __init__(self, index_url: str):
        parts = urlsplit(index_url)
        self.upstream = (parts.hostname, parts.port)
        self.path = parts.path
        self.open = threading.Event()
        self.open.set()
        self.waiting = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}{self.path}"
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        self.open.clear()

    def release(self) -> None:
        self.open.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self.waiting += 1
        self.open.wait()
        self.waiting -= 1
        try:
            upstream = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        for source, target in ((client, upstream), (upstream, client)):
            threading.Thread(target=_copy, args=(source, target), daemon=True).start()

    def close(self) -> None:
        self.release()
        self.server.close()


def _copy(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, target):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def unheld_requirement() -> str:
    """A requirement no earlier build installed (its build asks the index), met by sympy 1.13.3."""
    return f"sympy==1.13.3,!=0.0.{uuid.uuid4().int % 10**9}\n"
