"""The server secret: where it comes from, and what it encrypts."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from maskline.errors import ConfigurationError
from maskline.settings import Settings

SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name, not a secret


MIN_SECRET_KEY_BYTES = 32


def resolve_secret_key(settings: Settings) -> str:
    """MASKLINE_SECRET_KEY, or in the embedded (SQLite) mode one generated into the data dir.

    A key under 32 bytes is refused (SPEC §10): an empty one would let anyone sign
    recording URLs.
    """
    if settings.secret_key:
        size = len(settings.secret_key.encode("utf-8"))
        if size < MIN_SECRET_KEY_BYTES:
            raise ConfigurationError(
                f"MASKLINE_SECRET_KEY must be at least {MIN_SECRET_KEY_BYTES} bytes; it is {size}."
            )
        return settings.secret_key
    if not settings.is_sqlite:
        raise ConfigurationError(
            "MASKLINE_SECRET_KEY is required with PostgreSQL (the same value in every process)"
        )
    path = Path(settings.data_dir) / SECRET_KEY_FILE
    if not path.exists():
        _create_key_file(path)
    return _read_key_file(path)


def _create_key_file(path: Path) -> None:
    """Write a new key to ``path`` whole or not at all: a temporary file, written and
    flushed to disk, is linked to its name, which fails if another process got there
    first (both then use the first one's key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{SECRET_KEY_FILE}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(secrets.token_urlsafe(48))
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)


def _read_key_file(path: Path) -> str:
    key = path.read_text(encoding="utf-8").strip()
    if len(key.encode("utf-8")) < MIN_SECRET_KEY_BYTES:
        raise ConfigurationError(
            f"{path} holds a secret key of {len(key.encode('utf-8'))} bytes, fewer than "
            f"{MIN_SECRET_KEY_BYTES} (a write cut short?). Delete it to generate a new one."
        )
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
