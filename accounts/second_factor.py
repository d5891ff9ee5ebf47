"""The one rule for staff pages: a staff member reviews, releases or reads whole logs only in a
session that passed a second factor (a code from their authenticator app).

allauth records each step of a sign-in in the session; a code entered at sign-in, when asked
again, or when the app was set up in this session counts. A password alone never does, even for
an account that has an app: a session can be opened without allauth's code stage (an old session,
a sign-in path that skips it), and what matters is what this session proved.
"""

from __future__ import annotations

from functools import wraps
from urllib.parse import urlencode

from allauth.account.authentication import get_authentication_records
from allauth.account.internal.flows.login import record_authentication
from allauth.mfa.models import Authenticator
from allauth.mfa.signals import authenticator_added
from allauth.mfa.utils import is_mfa_enabled
from django.conf import settings
from django.contrib import messages
from django.dispatch import receiver
from django.shortcuts import redirect
from django.urls import reverse

SET_UP = (
    "Staff accounts need a second factor before the admin site opens. Set up an authenticator app "
    "(you may be asked for your password first)."
)
ENTER_CODE = "Enter a code from your authenticator app: staff pages open only after a second factor in this session."


def missing(request) -> str | None:
    """What this request's staff user still has to do ("set_up" or "enter_code"), or None."""
    user = getattr(request, "user", None)
    if not (settings.M2D_STAFF_MFA_REQUIRED and user is not None and user.is_authenticated and user.is_staff):
        return None
    if not is_mfa_enabled(user, [Authenticator.Type.TOTP]):
        return "set_up"
    if not any(record.get("method") == "mfa" for record in get_authentication_records(request, user)):
        return "enter_code"
    return None


def page_refusal(request):
    """The redirect a staff page answers with when the second factor is missing, or None."""
    step = missing(request)
    if step == "set_up":
        messages.warning(request, SET_UP)
        return redirect("mfa_activate_totp")
    if step == "enter_code":
        messages.warning(request, ENTER_CODE)
        return redirect(reverse("mfa_reauthenticate") + "?" + urlencode({"next": request.get_full_path()}))
    return None


def staff_second_factor(view):
    """For pages that review, release or show what a researcher may not see yet."""

    @wraps(view)
    def guarded(request, *args, **kwargs):
        return page_refusal(request) or view(request, *args, **kwargs)

    return guarded


@receiver(authenticator_added)
def _setting_up_counts(sender, request, user, authenticator, **kwargs):
    """Setting up the app takes a valid code from it, so it proves the second factor for this session."""
    if authenticator.type == Authenticator.Type.TOTP:
        record_authentication(request, user, "mfa", id=authenticator.pk, type=authenticator.type, activated=True)
