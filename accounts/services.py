"""Every change to a researcher's account. Keyword-only, atomic, audited; MLflow calls and e-mails
only after the change has committed, so a failure there never leaves a half-made decision."""

from __future__ import annotations

import re
import secrets

from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from submissions.models import Submission
from submissions.services import SubmissionRefused, submission_cancel

from . import crypto, mlflow_access, notifications
from .mlflow_access import provision_pending, sync_quietly  # noqa: F401  (the periodic retry calls it here)
from .models import AccountEvent, MailStep, Researcher, TokenScopes

User = get_user_model()
S = Researcher.Status


class AccountError(ValueError):
    """A request about an account that cannot be done; the message says why and what to do."""


def _ensure_staff(by) -> None:
    # `by=None` is the platform itself: a management command run by whoever operates the host.
    if by is not None and not by.is_staff:
        raise AccountError("Only staff can decide on researcher accounts.")


def _locked(researcher: Researcher) -> Researcher:
    return Researcher.objects.select_for_update().select_related("user").get(pk=researcher.pk)


def _audit(researcher: Researcher, action: str, by=None, reason: str = "") -> None:
    AccountEvent.objects.create(researcher=researcher, action=action, by=by, reason=reason)


@transaction.atomic
def researcher_create(
    *,
    username: str,
    email: str,
    password: str | None = None,
    full_name: str = "",
    institution: str = "",
    intended_use: str = "",
) -> Researcher:
    """A researcher made by an operator (command line): the e-mail address is taken as verified."""

    email = email.strip().lower()  # allauth looks addresses up in lower case
    if User.objects.filter(username=username).exists():
        raise AccountError(f"The username {username!r} is taken.")
    if email and User.objects.filter(email__iexact=email).exists():
        raise AccountError(f"An account with the e-mail address {email} exists already.")
    user = User.objects.create_user(username=username, email=email, password=password)
    if password is None:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    if email:
        EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    researcher = Researcher.objects.create(
        user=user, full_name=full_name, institution=institution, intended_use=intended_use
    )
    _audit(researcher, AccountEvent.Action.SIGNED_UP, reason="created on the command line")
    return researcher


@transaction.atomic
def researcher_signup(*, user, full_name: str, institution: str, intended_use: str) -> Researcher:
    """The profile of someone who just signed up: waiting, and unable to submit, until approved."""
    researcher = Researcher.objects.create(
        user=user, full_name=full_name.strip(), institution=institution.strip(), intended_use=intended_use.strip()
    )
    _audit(researcher, AccountEvent.Action.SIGNED_UP)
    return researcher


@transaction.atomic
def researcher_email_verified(*, researcher: Researcher) -> None:
    """Their address is real: from now on they are waiting for an admin, so tell the admins (once)."""
    researcher = _locked(researcher)
    if researcher.events.filter(action=AccountEvent.Action.EMAIL_VERIFIED).exists():
        return
    _audit(researcher, AccountEvent.Action.EMAIL_VERIFIED, by=researcher.user)
    if researcher.status == S.PENDING:
        transaction.on_commit(lambda: notifications.approvers_someone_waiting(researcher.pk))


def researcher_approve(*, by, researcher: Researcher, provision_now: bool = False) -> Researcher:
    """Approve and give MLflow access. Repeating it changes nothing. MLflow is set up after the
    commit; when it is down the account stays approved with MLflow pending, retried periodically.
    With `provision_now` the set-up runs before returning and MLflowUnavailable is raised (for
    the command line, which prints the credentials)."""
    _ensure_staff(by)
    with transaction.atomic():
        researcher = _locked(researcher)
        if not researcher.is_approved:
            _decide(researcher, S.APPROVED, by=by, reason="")
            researcher.mlflow_username = researcher.mlflow_username or mlflow_access.mlflow_username_for(
                researcher.user.get_username()
            )
            researcher.mlflow_password_encrypted = crypto.encrypt(crypto.generate_password())
            researcher.mlflow_generation += 1
            researcher.save()
            if not researcher.user.is_active:
                researcher.user.is_active = True
                researcher.user.save(update_fields=["is_active"])
            _audit(researcher, AccountEvent.Action.APPROVED, by=by)
            transaction.on_commit(lambda: notifications.researcher_decided(researcher.pk))
        if not provision_now:
            transaction.on_commit(lambda: sync_quietly(researcher.pk))
    if provision_now:
        mlflow_access.sync(researcher.pk)
    researcher.refresh_from_db()
    return researcher


def researcher_reject(*, by, researcher: Researcher, reason: str) -> Researcher:
    """Refuse an application, or withdraw an approval. The researcher can still sign in and read why."""
    return _close(by=by, researcher=researcher, status=S.REJECTED, reason=reason)


def researcher_disable(*, by, researcher: Researcher, reason: str) -> Researcher:
    """Switch an account off: no sign-in, no MLflow, no API token, nothing left queued or running."""
    return _close(by=by, researcher=researcher, status=S.DISABLED, reason=reason)


def _decide(researcher: Researcher, status: str, *, by, reason: str) -> None:
    """The one place a researcher's status changes (on a row locked by the caller): who decided,
    when, and why; saved by the caller with the rest of the decision."""
    if status == researcher.status or status not in S.values or status == S.PENDING:
        raise AccountError(f"A researcher cannot go from {researcher.status} to {status}.")
    researcher.status = status
    researcher.decided_by, researcher.decided_at, researcher.decision_reason = by, timezone.now(), reason


def _close(*, by, researcher: Researcher, status: str, reason: str) -> Researcher:
    _ensure_staff(by)
    reason = (reason or "").strip()
    if not reason:
        raise AccountError("Give a reason: the researcher receives it by e-mail.")
    with transaction.atomic():
        researcher = _locked(researcher)
        if researcher.status == status:
            return researcher
        _decide(researcher, status, by=by, reason=reason)
        if researcher.mlflow_username:
            researcher.mlflow_generation += 1
            researcher.mlflow_provisioned_at = None
        researcher.save()
        user = researcher.user
        if status == S.DISABLED and user.is_active:
            user.is_active = False
            user.save(update_fields=["is_active"])
        Token.objects.filter(user=user).delete()
        _cancel_unfinished_submissions(by=by, user=user, status=status)
        _audit(researcher, status, by=by, reason=reason)
        transaction.on_commit(lambda: sync_quietly(researcher.pk))
        transaction.on_commit(lambda: notifications.researcher_decided(researcher.pk))
    return researcher


def _cancel_unfinished_submissions(*, by, user, status: str) -> None:
    for submission in Submission.objects.filter(owner=user).exclude(status__in=Submission.FINISHED):
        try:
            submission_cancel(by=by, submission=submission, reason=f"Cancelled because the account was {status}.")
        except SubmissionRefused:
            pass  # it finished meanwhile: nothing left to stop


def mlflow_password_rotate(*, by, researcher: Researcher) -> Researcher:
    """A new MLflow password for an approved researcher; the old one stops working once MLflow has it."""
    if by is not None and not by.is_staff and by.pk != researcher.user_id:
        raise AccountError("You can only rotate your own MLflow password.")
    with transaction.atomic():
        researcher = _locked(researcher)
        if not researcher.is_approved:
            raise AccountError("Only an approved account has MLflow credentials to rotate.")
        researcher.mlflow_password_encrypted = crypto.encrypt(crypto.generate_password())
        researcher.mlflow_generation += 1
        researcher.save(update_fields=["mlflow_password_encrypted", "mlflow_generation"])
        _audit(researcher, AccountEvent.Action.MLFLOW_PASSWORD_ROTATED, by=by)
        transaction.on_commit(lambda: sync_quietly(researcher.pk))
    return researcher


def mlflow_retry(*, researcher: Researcher) -> bool:
    """Bring MLflow up to date for one researcher now; raises MlflowUnavailable when it is down."""
    return mlflow_access.sync(researcher.pk)


def _approved_researcher_of(user) -> Researcher:
    researcher = getattr(user, "researcher", None)
    if researcher is None or not researcher.is_approved:
        state = researcher.get_status_display() if researcher else "not a researcher account"
        raise AccountError(f"API tokens are for approved researchers; this account is {state}.")
    return researcher


@transaction.atomic
def api_token_create(*, by, scopes: list[str] | tuple[str, ...] | None = None) -> Token:
    """A new API token for the researcher `by`, with `scopes` (default: all of them); any previous
    token stops working."""
    researcher = _approved_researcher_of(by)
    scopes = list(TokenScopes.ALL if scopes is None else dict.fromkeys(scopes))
    unknown = [scope for scope in scopes if scope not in TokenScopes.ALL]
    if unknown:
        raise AccountError(f"Unknown token scope {', '.join(unknown)}; choose from {', '.join(TokenScopes.ALL)}.")
    Token.objects.filter(user=by).delete()
    token = Token.objects.create(user=by)
    TokenScopes.objects.create(token=token, scopes=scopes)
    _audit(researcher, AccountEvent.Action.API_TOKEN_CREATED, by=by, reason=f"scopes: {', '.join(scopes)}")
    return token


@transaction.atomic
def api_token_revoke(*, by) -> bool:
    researcher = getattr(by, "researcher", None)
    deleted, _ = Token.objects.filter(user=by).delete()
    if deleted and researcher is not None:
        _audit(researcher, AccountEvent.Action.API_TOKEN_REVOKED, by=by)
    return bool(deleted)


@transaction.atomic
def email_preferences_set(*, by, researcher: Researcher, steps) -> Researcher:
    """Which steps of their submissions `researcher` is e-mailed about (MailStep values)."""
    if by.pk != researcher.user_id:
        raise AccountError("Only the researcher chooses which e-mails they get.")
    unknown = set(steps) - set(MailStep.values)
    if unknown:
        raise AccountError(f"No such e-mail: {', '.join(sorted(unknown))}.")
    chosen = [step for step in MailStep.values if step in set(steps)]
    Researcher.objects.filter(pk=researcher.pk).update(email_steps=chosen)
    researcher.email_steps = chosen
    return researcher


@transaction.atomic
def staff_create(*, email: str, full_name: str, username: str = "") -> tuple[User, str]:
    """A hospital's staff account, made by whoever operates the host, ready to sign in: full admin
    rights, the e-mail address taken as verified, and a generated password returned this once.
    The second factor is set up at the first sign-in (the admin site opens only after that)."""
    email = email.strip().lower()  # allauth looks addresses up in lower case
    if "@" not in email:
        raise AccountError(f"{email!r} is not an e-mail address.")
    if User.objects.filter(email__iexact=email).exists() or EmailAddress.objects.filter(email__iexact=email).exists():
        raise AccountError(f"An account with the e-mail address {email} exists already.")
    if username and User.objects.filter(username=username).exists():
        raise AccountError(f"The username {username!r} is taken.")
    if not username:
        base = re.sub(r"[^\w.@+-]", "", email.split("@")[0]) or "staff"
        username = base
        for n in range(2, 1000):
            if not User.objects.filter(username=username).exists():
                break
            username = f"{base}{n}"
    password = secrets.token_urlsafe(15)
    user = User.objects.create_superuser(username=username, email=email, password=password, first_name=full_name)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    return user, password
