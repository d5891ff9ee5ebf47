"""Secrets at rest (MLflow passwords), encrypted with a key from settings."""

import base64
import hashlib
import hmac
import secrets
import string

from cryptography.fernet import Fernet
from django.conf import settings


def _fernet() -> Fernet:
    key = settings.M2D_ENCRYPTION_KEY
    if not key:
        digest = hashlib.sha256(("m2d-secrets:" + settings.SECRET_KEY).encode()).digest()
        key = base64.urlsafe_b64encode(digest).decode()
    return Fernet(key)


def experiment_claim(name: str) -> str:
    """A tag value only the platform can compute, marking the MLflow experiment it made for `name`."""
    key = ("m2d-experiment-claim:" + (settings.M2D_ENCRYPTION_KEY or settings.SECRET_KEY)).encode()
    return hmac.new(key, name.encode(), hashlib.sha256).hexdigest()


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()


def generate_password(length: int = 32) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))
