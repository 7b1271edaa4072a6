"""Signed recording URLs: an HMAC over the path and the expiry (SPEC §5).

The key is derived from ``MASKLINE_SECRET_KEY`` for this purpose only, so every
API process accepts every other's URLs and no other use shares key material.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime, timedelta

from maskline.kit.crypto import derive_key

VALID_FOR = timedelta(hours=1)
# ASCII digits only (str.isdigit() also takes "²", which int() refuses).
_EXPIRES = re.compile(r"[0-9]{1,12}")


class UrlSigner:
    def __init__(self, secret_key: str) -> None:
        self._key = derive_key(secret_key, "maskline/recording-urls/v1")

    def _signature(self, path: str, expires: int) -> str:
        message = f"GET\n{path}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign(self, path: str, *, now: datetime) -> tuple[str, datetime]:
        """``path?expires=…&signature=…`` and the moment it stops working."""
        expires_at = (now + VALID_FOR).replace(microsecond=0)
        expires = int(expires_at.timestamp())
        return f"{path}?expires={expires}&signature={self._signature(path, expires)}", expires_at

    def verify(
        self, path: str, expires: str | None, signature: str | None, *, now: datetime
    ) -> bool:
        """True only for an untampered URL that has not expired yet."""
        if expires is None or not _EXPIRES.fullmatch(expires):
            return False
        if not signature or not signature.isascii():
            return False
        expected = self._signature(path, int(expires))
        if not hmac.compare_digest(expected, signature.lower()):
            return False
        return now.timestamp() < int(expires)
