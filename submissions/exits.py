"""The exit budget: what one researcher may get out of their runs unreviewed, across submissions.

Each metered channel (tracking bytes sent through the gateway, run log tails shown) charges the
submission's owner. A per-run cap times unlimited runs is no cap, so every charge of the last 24
hours counts against M2D_EXIT_BYTES_PER_RESEARCHER_PER_DAY. A run reserves its tracking allowance
when it starts, so two runs of one researcher cannot both spend the same remainder, and settles
to what it used when it ends. When the budget is spent only the channel closes: the run goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import models, transaction
from django.db.models import Q, Subquery, Sum
from django.utils import timezone

from .models import ExitCharge, Submission

WINDOW = timedelta(hours=24)
Channel = ExitCharge.Channel


@dataclass(frozen=True)
class Budget:
    limit: int
    used: int  # charged over the last 24 hours, reservations of running submissions included

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


@dataclass(frozen=True)
class TrackingAllowance:
    """What the gateway may let a run send: `total` over all its attempts, `used` so far."""

    total: int
    used: int
    limited_by_budget: bool  # the researcher's budget, not the per-run cap, sets `total`


def _counted() -> Q:
    """Charges of the last 24 hours, and the allowances that running submissions hold whenever
    they began (one whose run the platform settled elsewhere, e.g. the reconciler, holds nothing)."""
    live = (Submission.Status.RUNNING, Submission.Status.QUEUED)
    return Q(at__gte=timezone.now() - WINDOW) | Q(reserved=True, submission__status__in=live)


def _charged(owner_id: int) -> int:
    charges = ExitCharge.objects.filter(owner_id=owner_id).filter(_counted())
    return charges.aggregate(total=Sum("bytes"))["total"] or 0


def _left(submission: Submission, channel: str) -> int:
    """What the owner's budget has left for this submission's channel: its own charge so far
    does not count, it is what the new charge replaces."""
    others = ExitCharge.objects.filter(owner_id=submission.owner_id).filter(_counted())
    others = others.exclude(submission_id=submission.pk, channel=channel)
    used = others.aggregate(total=Sum("bytes"))["total"] or 0
    return max(0, settings.M2D_EXIT_BYTES_PER_RESEARCHER_PER_DAY - used)


def _charge(submission_id: int, owner_id: int, channel: str, size: int, reserved: bool = False) -> None:
    ExitCharge.objects.update_or_create(
        submission_id=submission_id,
        channel=channel,
        defaults={"owner_id": owner_id, "bytes": size, "reserved": reserved, "at": timezone.now()},
    )


def budget_of(user) -> Budget:
    return Budget(limit=settings.M2D_EXIT_BYTES_PER_RESEARCHER_PER_DAY, used=_charged(user.pk))


def charged_subquery(owner_ref):
    """Each researcher's charges of the last 24 hours as a subquery, to annotate a list of them."""
    charges = (
        ExitCharge.objects.filter(owner=owner_ref)
        .filter(_counted())
        .values("owner")
        .annotate(total=Sum("bytes"))
        .values("total")
    )
    return Subquery(charges[:1], output_field=models.BigIntegerField())


def _lock_owner(owner_id: int) -> None:
    # Charges of one researcher are decided one at a time (SQLite serialises writers anyway).
    get_user_model().objects.select_for_update().filter(pk=owner_id).exists()


def reserve_tracking(submission: Submission) -> TrackingAllowance:
    """At the start of a run (or of its retry or adoption): what it may send from now on."""
    with transaction.atomic():
        _lock_owner(submission.owner_id)
        used = Submission.objects.values_list("tracking_bytes", flat=True).get(pk=submission.pk)
        per_run_left = max(0, settings.M2D_TRACKING_MAX_BYTES - used)
        budget_left = _left(submission, Channel.TRACKING)
        allowed = min(per_run_left, budget_left)
        _charge(submission.pk, submission.owner_id, Channel.TRACKING, used + allowed, reserved=True)
    return TrackingAllowance(total=used + allowed, used=used, limited_by_budget=budget_left < per_run_left)


def settle_tracking(submission_id: int, owner_id: int, used: int) -> None:
    """At the end of a run's attempt: the charge is what it sent, no longer what it reserved."""
    _charge(submission_id, owner_id, Channel.TRACKING, used)


def charge_log_tail(submission: Submission, tail: str) -> str:
    """The part of `tail` (already within the log policy's caps) the researcher's budget lets
    them see, charged; its end is kept, where the error is. Charged once per submission: a
    requeued run's final tail replaces the earlier one, which was never shown."""
    with transaction.atomic():
        _lock_owner(submission.owner_id)
        left = _left(submission, Channel.LOG)
        raw = tail.encode("utf-8")
        shown = raw[len(raw) - left :] if len(raw) > left else raw
        text = shown.decode("utf-8", "ignore") if left else ""
        _charge(submission.pk, submission.owner_id, Channel.LOG, len(text.encode("utf-8")))
    return text
