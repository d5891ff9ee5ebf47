"""The shared cache (Redis, CACHE_URL=rediscache://…), and what it does while Redis is away.

Its users are allauth's rate limits (sign-in, sign-up, e-mail confirmation, MFA). Without Redis,
Django's own Redis cache raises on every call and every sign-in fails. This one stands in for
Redis with the process's own memory until Redis answers again: the limits then count per web
process for a while, and people sign in.
"""

from __future__ import annotations

import logging
import time

import redis
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

log = logging.getLogger(__name__)

OUTAGE = (redis.ConnectionError, redis.TimeoutError)


class FallbackRedisCache(RedisCache):
    # After a failed call, Redis is asked again only this much later: a host that does not
    # answer at all costs one connect timeout per interval, not one per call.
    retry_seconds = 5.0

    def __init__(self, server, params):
        super().__init__(server, params)
        self._memory = LocMemCache(f"m2d-fallback-{id(self)}", {"TIMEOUT": params.get("TIMEOUT", 300)})
        self._away_until = 0.0
        self._away = False

    def _call(self, name: str, *args, **kwargs):
        if time.monotonic() >= self._away_until:
            try:
                result = getattr(super(), name)(*args, **kwargs)
            except OUTAGE as exc:
                self._away_until = time.monotonic() + self.retry_seconds
                if not self._away:
                    self._away = True
                    log.warning("Redis, the shared cache, does not answer (%s): using this process's memory", exc)
            else:
                if self._away:
                    self._away = False
                    log.warning("Redis, the shared cache, answers again")
                return result
        return getattr(self._memory, name)(*args, **kwargs)

    def add(self, *args, **kwargs):
        return self._call("add", *args, **kwargs)

    def get(self, *args, **kwargs):
        return self._call("get", *args, **kwargs)

    def set(self, *args, **kwargs):
        return self._call("set", *args, **kwargs)

    def touch(self, *args, **kwargs):
        return self._call("touch", *args, **kwargs)

    def delete(self, *args, **kwargs):
        return self._call("delete", *args, **kwargs)

    def get_many(self, *args, **kwargs):
        return self._call("get_many", *args, **kwargs)

    def has_key(self, *args, **kwargs):
        return self._call("has_key", *args, **kwargs)

    def incr(self, *args, **kwargs):
        return self._call("incr", *args, **kwargs)

    def set_many(self, *args, **kwargs):
        return self._call("set_many", *args, **kwargs)

    def delete_many(self, *args, **kwargs):
        return self._call("delete_many", *args, **kwargs)

    def clear(self):
        return self._call("clear")
