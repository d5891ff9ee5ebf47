"""HTTP basic with the API token as the password (the seed's `curl --user NAME:TOKEN`), beside
`Authorization: Token …`; NAME is the account's e-mail address (or its user name). The portal password
is never accepted here. Both read the token with its user, the user's researcher row and the
token's scopes in one query: every prediction needs all four. Nothing is cached, so a revoked token
or a deactivated account is refused from the next request on."""

from __future__ import annotations

import base64
import binascii

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, TokenAuthentication, get_authorization_header


class OneQueryTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        model = self.get_model()
        try:
            token = model.objects.select_related("user__researcher", "scopes").get(key=key)
        except model.DoesNotExist:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return token.user, token


class BasicTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"basic":
            return None
        try:
            name, _, key = base64.b64decode(parts[1], validate=True).decode().partition(":")
        except (IndexError, binascii.Error, UnicodeDecodeError):
            raise exceptions.AuthenticationFailed("Give your e-mail address and API token as EMAIL:TOKEN.") from None
        user, token = OneQueryTokenAuthentication().authenticate_credentials(key)
        if name != user.get_username() and not (user.email and name.lower() == user.email.lower()):
            raise exceptions.AuthenticationFailed("That API token belongs to another account.")
        return user, token

    def authenticate_header(self, request) -> str:
        return 'Basic realm="m2d"'
