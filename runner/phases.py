"""Where a run's time goes: each step of the hot path timed, and logged in one line at its end."""

from __future__ import annotations

import time


class Phases:
    def __init__(self) -> None:
        self._mark = time.monotonic()
        self.spent: dict[str, float] = {}

    def done(self, name: str) -> None:
        """The step called `name` ends now (it began where the previous one ended)."""
        now = time.monotonic()
        self.spent[name] = self.spent.get(name, 0.0) + now - self._mark
        self._mark = now

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds:.3f} s" for name, seconds in self.spent.items())
