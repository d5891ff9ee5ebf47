"""The cases cross the hospital's network between the gateway and a serving host over TLS: the
relay (a real gunicorn) serves a certificate of the hospital's own CA, and the gateway checks it
against M2D_SERVE_RELAY_CA; a relay whose certificate another CA signed is not asked."""

from __future__ import annotations

import subprocess

import pytest
import requests

from serving.models import Prediction
from tests.integration.serving import test_relay
from tests.integration.serving.conftest import png
from tests.integration.serving.test_relay import OTHER

pytestmark = [pytest.mark.docker, pytest.mark.services]

# Host B and the worker moved there, as in the plain relay's tests (relay_tls below gives it TLS).
host_b, on_b = test_relay.host_b, test_relay.on_b


def make_ca(folder, name: str) -> tuple[str, str]:
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


@pytest.fixture
def cas(tmp_path):
    """The hospital's CA, a relay certificate it signed for 127.0.0.1, and a stranger CA."""
    ca_cert, ca_key = make_ca(tmp_path, "hospital-ca")
    stranger, _ = make_ca(tmp_path, "stranger-ca")
    key, request, cert = tmp_path / "relay.key", tmp_path / "relay.csr", tmp_path / "relay.pem"
    subprocess.run(
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=serving-host-b", "-keyout", key,
         "-out", request],
        check=True, capture_output=True,
    )  # fmt: skip
    (tmp_path / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    subprocess.run(
        ["openssl", "x509", "-req", "-in", request, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
         "-extfile", tmp_path / "san.cnf", "-out", cert],
        check=True, capture_output=True,
    )  # fmt: skip
    return {"ca": ca_cert, "stranger": stranger, "cert": str(cert), "key": str(key)}


@pytest.fixture
def relay_tls(cas, settings):
    settings.M2D_SERVE_RELAY_CA = cas["ca"]
    return {"M2D_WEB_CERTFILE": cas["cert"], "M2D_WEB_KEYFILE": cas["key"]}


def test_cases_reach_a_serving_host_over_tls_checked_against_the_hospitals_ca(
    deployed,
    api,
    host_b,
    on_b,
    cas,
    settings,
):
    version, deployment, owner = deployed
    caller = api(owner, scopes=["predict"])
    assert on_b.relay.startswith("https://127.0.0.1:")
    answer = caller.post("/predictions/toy-scoring", data=png([[10, 20], [30, 40]]), content_type="image/png")
    assert answer.status_code == 200, answer.content
    assert answer.json()["score"] == pytest.approx(50.0)
    assert Prediction.objects.get(status=200).worker_id == on_b.pk
    # the relay speaks nothing but TLS
    with pytest.raises(requests.ConnectionError):
        requests.get(on_b.relay.replace("https://", "http://") + "/health", timeout=5)

    # A gateway that trusts another CA does not send the case.
    settings.M2D_SERVE_RELAY_CA = cas["stranger"]
    refused = caller.post("/predictions/toy-scoring", data=png([[5]]), content_type="image/png")
    assert refused.status_code == 503, refused.content
    assert f"{OTHER}, which cannot be reached" in refused.json()["message"]
    on_b.refresh_from_db()
    assert on_b.state == "ready"  # the host's certificate is not the model's fault
