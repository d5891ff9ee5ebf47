"""Serving workers follow the hosts: a draining host starts no new worker, another healthy host
starts the replacement, and the drained host's worker stops only once the replacement is ready, so
the model is never left unanswered. The second host here is a second reconciler on the same engine
under another M2D_HOST_NAME, as a serving host beside the first would run."""

from __future__ import annotations

import pytest

from hosts.models import Host
from hosts.services import host_drain, host_undrain
from runner import serving as agent
from serving.models import ServeWorker
from serving.services import deployment_scale
from submissions.queue import host_name

pytestmark = [pytest.mark.docker, pytest.mark.services]
pytest_plugins = ["tests.serving_fixtures"]  # a released toy model with one ready worker on this engine


def live(deployment) -> list[ServeWorker]:
    return list(deployment.workers.filter(state__in=["starting", "ready"]).order_by("pk"))


def test_a_draining_host_hands_its_serving_workers_to_another(deployed, settings):
    version, deployment, owner = deployed
    first_name, other = settings.M2D_HOST_NAME, "serving-host-2"
    here = host_name()
    [first] = live(deployment)
    assert (first.host, first.state) == (here, "ready")

    host_drain(by=owner, host=Host.objects.get(name=here))
    agent.reconcile()  # no other host has a worker ready: this one goes on answering
    assert [(w.pk, w.state) for w in live(deployment)] == [(first.pk, "ready")]
    try:
        settings.M2D_HOST_NAME = other
        agent.reconcile()  # the other host starts the replacement
        [second] = [w for w in live(deployment) if w.pk != first.pk]
        assert (second.host, second.state) == (other, "ready")
        agent.reconcile()  # and no more than that
        assert len(live(deployment)) == 2

        settings.M2D_HOST_NAME = first_name
        agent.reconcile()  # the drained host gives its worker up
        assert [w.pk for w in live(deployment)] == [second.pk]
        first.refresh_from_db()
        assert first.state == "stopped" and f"its host {here} takes no new work" in first.reason
        agent.reconcile()  # and starts none while it drains
        assert [w.pk for w in live(deployment)] == [second.pk]
    finally:
        settings.M2D_HOST_NAME = other
        deployment_scale(by=owner, version=version, min_workers=0, max_workers=0)
        agent.reconcile()
        settings.M2D_HOST_NAME = first_name
        host_undrain(by=owner, host=Host.objects.get(name=here))
    assert live(deployment) == []
