"""Redis as the shared cache (CACHE_URL=rediscache://…) holds allauth's rate limits. When it stops
answering, researchers still sign in (the limits count in the process's memory meanwhile); once it
is back, the limits count in Redis again."""

import logging
import subprocess
import time

import pytest
import redis
from django.test import Client

from m2d.settings import cache_config
from tests.conftest import free_port

PASSWORD = "Quinn-right-pass-7"


class RedisServer:
    def __init__(self):
        self.port = free_port()
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def redis_cache(settings, monkeypatch):
    from m2d.cache import FallbackRedisCache

    monkeypatch.setattr(FallbackRedisCache, "retry_seconds", 0.2)
    server = RedisServer()
    server.start()
    settings.CACHES = {"default": cache_config(f"rediscache://127.0.0.1:{server.port}/0")}
    yield server
    if server.process.poll() is None:
        server.stop()


def sign_in(client: Client, password: str) -> str:
    """The page a sign-in answers with; "" for a redirect (signed in)."""
    response = client.post("/accounts/login/", {"login": "quinn@example.org", "password": password})
    assert response.status_code in (200, 302), response.status_code
    return response.content.decode()


def test_sign_in_works_while_redis_is_down_and_limits_count_in_redis_again_after(db, redis_cache, caplog):
    from accounts.services import researcher_create

    researcher_create(username="quinn", email="quinn@example.org", password=PASSWORD)
    assert sign_in(Client(), PASSWORD) == ""  # signed in: a redirect
    assert redis.Redis(port=redis_cache.port).dbsize() > 0  # the attempt was counted in Redis

    redis_cache.stop()
    client = Client()
    with caplog.at_level(logging.WARNING, logger="m2d.cache"):
        assert sign_in(client, PASSWORD) == ""  # no error page
    assert client.session.get("_auth_user_id")
    assert "Redis, the shared cache, does not answer" in caplog.text
    # Meanwhile the limits still hold, counted in this process.
    guesser = Client()
    for _ in range(5):
        assert "are not correct" in sign_in(guesser, "guess")
    assert "Too many failed login attempts" in sign_in(guesser, PASSWORD)

    redis_cache.start()  # back, empty, on the same port
    time.sleep(0.3)  # past retry_seconds: Redis is asked again
    assert redis.Redis(port=redis_cache.port).dbsize() == 0
    with caplog.at_level(logging.WARNING, logger="m2d.cache"):
        assert sign_in(Client(), PASSWORD) == ""
    assert "answers again" in caplog.text
    assert redis.Redis(port=redis_cache.port).dbsize() > 0  # counted in Redis again
