"""A build worker keeps one door to the package index between its builds, on the real engine: the
next build goes through the same door, a build that fails takes it away, two builds of one process
at the same time never share one, and a door whose worker was killed does not outlive it."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest
from django.conf import settings

from runner import docker_api, index_door

pytestmark = [pytest.mark.docker, pytest.mark.services]


def container_of(network: str) -> str:
    assert network.startswith("container:"), network
    return network.removeprefix("container:")


@pytest.fixture
def no_kept_door():
    index_door.close_kept_door()
    yield
    index_door.close_kept_door()


def test_the_next_build_goes_through_the_same_door(no_kept_door):
    with index_door.opened(101) as first:
        pass
    assert docker_api.door_running(container_of(first))  # kept for the next build
    with index_door.opened(102) as second:
        pass
    assert second == first

    index_door.close_kept_door()
    assert not docker_api.door_running(container_of(first))


def test_a_build_that_fails_takes_its_door_away(no_kept_door):
    with pytest.raises(docker_api.BuildFailed), index_door.opened(103) as network:
        raise docker_api.BuildFailed("a step failed", "")
    assert not docker_api.door_running(container_of(network))
    with index_door.opened(104) as following:
        pass
    assert following != network and docker_api.door_running(container_of(following))


def test_two_builds_of_one_process_at_once_have_doors_of_their_own(no_kept_door):
    inside, release, seen = threading.Event(), threading.Event(), {}

    def first_build():
        with index_door.opened(105) as network:
            seen["first"] = network
            inside.set()
            release.wait(30)

    holder = threading.Thread(target=first_build)
    holder.start()
    assert inside.wait(60)
    with index_door.opened(106) as network:
        seen["second"] = network
        assert docker_api.door_running(container_of(network))
    release.set()
    holder.join(30)

    assert seen["first"] != seen["second"]
    assert not docker_api.door_running(container_of(seen["second"]))  # the extra door ends with its build
    assert docker_api.door_running(container_of(seen["first"]))  # the kept one stays


def test_a_door_whose_worker_was_killed_is_removed_by_the_next_one(no_kept_door, tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    keeper = f"{socket.gethostname()}:{gone.pid}"
    left = index_door.Door(
        f"m2d-{settings.M2D_INSTANCE}-door-killed-{gone.pid}",
        tmp_path / "door",
        {docker_api.LABEL_INSTANCE: settings.M2D_INSTANCE, index_door.LABEL_KEEPER: keeper},
    ).open()
    left.relay.stop()  # what a killed process leaves: the container, without its relay
    assert docker_api.door_running(left.container_id)

    with index_door.opened(107):
        pass
    assert not docker_api.door_running(left.container_id)
    assert [name for name, _ in docker_api.doors_labelled({index_door.LABEL_KEEPER: keeper})] == []
