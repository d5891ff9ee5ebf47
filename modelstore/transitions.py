"""The one place a model version's state changes. A conditional UPDATE (`... WHERE state =
<expected>`): two retirements of the same version race, and exactly one of them wins."""

from __future__ import annotations

from .models import ModelVersion

V = ModelVersion.State

ALLOWED: dict[str, frozenset[str]] = {
    V.REGISTERED: frozenset({V.RETIRED}),
    V.RETIRED: frozenset(),  # kept for audit, files included; a new version replaces it
}


class IllegalMove(ValueError):
    pass


def move(version: ModelVersion, to: str, *, expected: str) -> bool:
    """Move `version` from `expected` to `to`; False when it was no longer `expected`."""
    if to not in ALLOWED[expected]:
        raise IllegalMove(f"a model version cannot go from {expected} to {to}")
    moved = ModelVersion.objects.filter(pk=version.pk, state=expected).update(state=to)
    if moved:
        version.state = to
    return bool(moved)
