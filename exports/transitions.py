"""The one place an export's review status changes, as submissions.transitions does for submissions.

Every move is a conditional UPDATE (`... WHERE status = <expected>`): a request, a cancel, a
decision and the expiry sweep can race, and exactly one of them wins.
"""

from __future__ import annotations

from .models import Export

E = Export.Status

ALLOWED: dict[str, frozenset[str]] = {
    E.HELD: frozenset({E.REQUESTED, E.EXPIRED}),
    E.REQUESTED: frozenset({E.HELD, E.REVIEWED}),  # held again: the researcher cancelled the request
    # reviewed, then asked again: files decided on stay decided; attached logs wait for review
    E.REVIEWED: frozenset({E.REQUESTED}),
    E.EXPIRED: frozenset(),
}


class IllegalMove(ValueError):
    pass


def move(export: Export, to: str, *, expected: tuple[str, ...] | str, **fields) -> bool:
    """Move `export` from one of `expected` to `to`, with `fields`; False when it was no longer in
    one of them (someone moved it first). Updates the object in memory when it moved."""
    sources = (expected,) if isinstance(expected, str) else expected
    for source in sources:
        if to not in ALLOWED[source]:
            raise IllegalMove(f"an export cannot go from {source} to {to}")
    moved = Export.objects.filter(pk=export.pk, status__in=sources).update(status=to, **fields)
    if moved:
        export.status = to
        for name, value in fields.items():
            setattr(export, name, value)
    return bool(moved)
