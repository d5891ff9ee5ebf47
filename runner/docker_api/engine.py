"""The engine itself: the client, how its trouble is told apart from the researcher's, and the
labels that let a restarted worker find what it left behind."""

from __future__ import annotations

import functools
import os
import time

import docker
import requests
from docker.errors import APIError, DockerException, NotFound

LABEL_ROLE = "org.m2d.role"
LABEL_SUBMISSION = "org.m2d.submission"
LABEL_INSTANCE = "org.m2d.instance"
LABEL_SLOT = "org.m2d.slot"
API_TIMEOUT = 60


def engine_url() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


class PlatformFault(RuntimeError):
    """The engine is down or misbehaved: not the researcher's fault."""


@functools.cache
def client() -> docker.DockerClient:
    try:
        return docker.DockerClient(base_url=engine_url(), version="auto", timeout=API_TIMEOUT)
    except DockerException as exc:
        raise PlatformFault(f"the Docker engine is not reachable: {exc}") from exc


def streaming_client(timeout: float) -> docker.APIClient:
    """A client for long streams (build output, run logs) that stay silent for long stretches."""
    try:
        return docker.APIClient(base_url=engine_url(), version="auto", timeout=timeout)
    except DockerException as exc:
        raise PlatformFault(f"the Docker engine is not reachable: {exc}") from exc


def engine_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise PlatformFault(f"the Docker engine stopped answering: {exc}") from exc
        except APIError as exc:
            if exc.status_code and exc.status_code >= 500:
                raise PlatformFault(f"the Docker engine failed: {exc.explanation or exc}") from exc
            raise
        except DockerException as exc:
            raise PlatformFault(f"the Docker engine is not reachable: {exc}") from exc

    return wrapper


def wait_for_engine(timeout: float) -> bool:
    """Wait for the engine to answer again (after a restart); True once it does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            api = docker.APIClient(base_url=engine_url(), version="auto", timeout=5)
            try:
                if api.ping():
                    return True
            finally:
                api.close()
        except (DockerException, requests.RequestException):
            pass
        time.sleep(1)
    return False


def engine_root(timeout: float = 5) -> str:
    """Where the engine keeps its images and containers (its data root); PlatformFault when it
    does not answer within `timeout` seconds."""
    try:
        api = docker.APIClient(base_url=engine_url(), version="auto", timeout=timeout)
        try:
            return api.info().get("DockerRootDir", "")
        finally:
            api.close()
    except (DockerException, requests.RequestException) as exc:
        raise PlatformFault(f"the Docker engine at {engine_url()} is not reachable: {exc}") from exc


def find_container(name: str):
    """The container of that name, or None."""
    try:
        return client().containers.get(name)
    except NotFound:
        return None


@engine_errors
def remove_named(name: str) -> None:
    """Removes the container of that name, running or not; nothing when there is none."""
    container = find_container(name)
    if container is None:
        return
    try:
        container.remove(force=True)
    except NotFound:
        pass
    except APIError as exc:
        if exc.status_code != 409:  # its removal is already in progress
            raise


@engine_errors
def list_labelled(instance: str, submission_id: int | None = None) -> list:
    labels = [f"{LABEL_INSTANCE}={instance}"]
    if submission_id is not None:
        labels.append(f"{LABEL_SUBMISSION}={submission_id}")
    # A container removed between the listing and its inspection (a run ending, a build's
    # intermediate container) is left out, not an error.
    return client().containers.list(all=True, filters={"label": labels}, ignore_removed=True)
