"""Token scopes, checked by the API's views (`required_scopes` on the view)."""

from __future__ import annotations

from rest_framework.authtoken.models import Token
from rest_framework.permissions import BasePermission

from .models import TokenScopes

ALL_SCOPES = TokenScopes.ALL


def scopes_of(token) -> frozenset[str]:
    """The scopes of a DRF token. A token without a scopes row predates scopes (the migration gave
    every existing token a row) and keeps all of them, so nothing that worked stops working."""
    try:
        return frozenset(token.scopes.scopes)
    except TokenScopes.DoesNotExist:
        return frozenset(ALL_SCOPES)


class HasTokenScope(BasePermission):
    """A request signed with a token needs every scope in the view's `required_scopes` (or the
    mapping's entry for its HTTP method); a signed-in browser session is not limited by scopes."""

    message = "Your API token lacks the scope this call needs."

    def has_permission(self, request, view) -> bool:
        required = getattr(view, "required_scopes", ())
        if isinstance(required, dict):
            required = required.get(request.method, ())
        if not isinstance(request.auth, Token):
            return True
        missing = set(required) - scopes_of(request.auth)
        if missing:
            self.message = f"Your API token lacks the scope {', '.join(sorted(missing))}; make a token that has it."
            return False
        return True
