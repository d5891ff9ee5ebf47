from django.urls import reverse

from . import second_factor


class StaffSecondFactorMiddleware:
    """Staff approve researchers and release data, so a stolen password alone must not open the
    admin site: the same rule as the portal's own staff pages (accounts.second_factor)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith(reverse("admin:index")):
            refusal = second_factor.page_refusal(request)
            if refusal is not None:
                return refusal
        return self.get_response(request)
