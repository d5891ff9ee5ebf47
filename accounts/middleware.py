from allauth.mfa.models import Authenticator
from allauth.mfa.utils import is_mfa_enabled
from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse


class StaffSecondFactorMiddleware:
    """Staff approve researchers and release data, so a stolen password alone must not open the
    admin site: a staff user without an authenticator app is sent to set one up first."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if (
            settings.M2D_STAFF_MFA_REQUIRED
            and user is not None
            and user.is_authenticated
            and user.is_staff
            and request.path.startswith(reverse("admin:index"))
            and not is_mfa_enabled(user, [Authenticator.Type.TOTP])
        ):
            messages.warning(
                request,
                "Staff accounts need a second factor before the admin site opens. Set up an "
                "authenticator app (you may be asked for your password first).",
            )
            return redirect("mfa_activate_totp")
        return self.get_response(request)
