from allauth.mfa.models import Authenticator
from allauth.mfa.utils import is_mfa_enabled
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from rest_framework.authtoken.models import Token

from submissions import exits

from .models import MailStep
from .selectors import admins_to_tell
from .services import (
    AccountError,
    api_token_create,
    api_token_revoke,
    email_preferences_set,
    mlflow_password_rotate,
)

NEW_TOKEN_SESSION_KEY = "accounts.new_api_token"


def _profile(request, *, error: str = "", status: int = 200):
    researcher = getattr(request.user, "researcher", None)
    context = {
        "researcher": researcher,
        "error": error,
        "has_token": Token.objects.filter(user=request.user).exists(),
        # The token is shown once, right after it was made: a page reload must not reveal it.
        "new_token": request.session.pop(NEW_TOKEN_SESSION_KEY, None),
        "has_totp": is_mfa_enabled(request.user, [Authenticator.Type.TOTP]),
        "exit_budget": exits.budget_of(request.user) if researcher is not None else None,
        "mail_steps": MailStep.choices,
        "admins_told": admins_to_tell(),
    }
    return render(request, "accounts/profile.html", context, status=status)


@login_required
def profile(request):
    return _profile(request)


@login_required
@require_POST
def rotate_mlflow_password(request):
    researcher = getattr(request.user, "researcher", None)
    if researcher is None:
        return _profile(request, error="This account has no MLflow credentials.", status=403)
    try:
        researcher = mlflow_password_rotate(by=request.user, researcher=researcher)
    except AccountError as exc:
        return _profile(request, error=str(exc), status=403)
    researcher.refresh_from_db()
    if researcher.mlflow_in_sync:
        messages.success(request, "Your MLflow password was changed. The old one no longer works.")
    else:
        messages.warning(
            request,
            "Your new MLflow password is stored, but MLflow could not be reached to take it. "
            "It will be updated automatically; until then the old password keeps working.",
        )
    return redirect("accounts:profile")


@login_required
@require_POST
def api_token(request):
    try:
        if request.POST.get("action") == "revoke":
            if api_token_revoke(by=request.user):
                messages.success(request, "Your API token was revoked. Programs using it can no longer sign in.")
        else:
            token = api_token_create(by=request.user)
            request.session[NEW_TOKEN_SESSION_KEY] = token.key
    except AccountError as exc:
        return _profile(request, error=str(exc), status=403)
    return redirect("accounts:profile")


@login_required
@require_POST
def email_preferences(request):
    researcher = getattr(request.user, "researcher", None)
    if researcher is None:
        return _profile(request, error="This account gets no submission e-mails.", status=403)
    try:
        researcher = email_preferences_set(by=request.user, researcher=researcher, steps=request.POST.getlist("steps"))
    except AccountError as exc:
        return _profile(request, error=str(exc), status=400)
    if researcher.email_steps:
        messages.success(request, "Saved: you get the e-mails ticked below.")
    else:
        messages.success(request, "Saved: no e-mails about your submissions; their pages show everything.")
    return redirect("accounts:profile")
