"""The server secret: where it comes from, and what it encrypts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from maskline.errors import ConfigurationError
from maskline.settings import Settings

SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name, not a secret


def resolve_secret_key(settings: Settings) -> str:
    """MASKLINE_SECRET_KEY, or in the embedded (SQLite) mode one generated into the data dir."""
    if settings.secret_key:
        return settings.secret_key
    if not settings.is_sqlite:
        raise ConfigurationError(
            "MASKLINE_SECRET_KEY is required with PostgreSQL (the same value in every process)"
        )
    path = Path(settings.data_dir) / SECRET_KEY_FILE
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # O_EXCL: two processes starting at once agree on the first one's key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key)
    return key


def derive_key(secret_key: str, purpose: str, length: int = 32) -> bytes:
    """A key for one purpose, so no two uses of the server secret share key material."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose.encode())
    return hkdf.derive(secret_key.encode("utf-8"))


class SecretBox:
    """Authenticated encryption of small secrets (webhook signing secrets) at rest."""

    def __init__(self, secret_key: str) -> None:
        key = derive_key(secret_key, "maskline/webhook-secrets/v1")
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise ConfigurationError(
                "a stored secret cannot be decrypted: MASKLINE_SECRET_KEY has changed"
            ) from None


class KeyedDigest:
    """A one-way keyed digest (HMAC-SHA256, 128 bits in hex) for one purpose: equal
    values can be matched later without the values being stored."""

    def __init__(self, secret_key: str, purpose: str) -> None:
        self._key = derive_key(secret_key, purpose)

    def __call__(self, text: str) -> str:
        return hmac.new(self._key, text.encode("utf-8"), hashlib.sha256).hexdigest()[:32]
