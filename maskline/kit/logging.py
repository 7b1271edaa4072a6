"""JSON-lines logs carrying the request id and the call sid (SPEC §11).

Whatever logger writes a record (ours, the SIP wire log, uvicorn, a library),
the formatter masks it before it leaves the process: API keys and webhook
secrets keep only their public prefix, Authorization values and Bearer tokens
go, the operator's own secrets (passed to ``configure_logging``) go wherever
they appear, and a phone number keeps only its last 4 digits.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
call_sid_var: ContextVar[str | None] = ContextVar("call_sid", default=None)

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
# Our own identifiers: logged as they are, so lines can be joined on them.
_IDENTIFIERS = frozenset({"request_id", "call_sid"})
# A secret shorter than this is not searched for: masking every "abc" helps no one.
MIN_SECRET_LENGTH = 6
MASK = "***"

_SEPARATOR = r"(?:[ \-]|%20)"
_SENSITIVE = re.compile(
    # A UUID (a call sid) is left alone even where a run of its digits looks like a number.
    r"(?P<uuid>\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b)"
    r"|(?P<key>\bvp_(?:live|test)_)[A-Za-z0-9]+"
    r"|(?P<whsec>\bwhsec_)[A-Za-z0-9+/=]+"
    # An HTTP or SIP Authorization header (a digest response is derived from the password).
    r"|(?P<auth>(?i:\b(?:proxy-)?authorization)[\"']?\s*[:=]\s*)[^\r\n]+"
    r"|(?P<bearer>(?i:\bbearer)\s+)[^\s\"',;]+"
    # Phone numbers: any run of 10 or more digits (+91…, 91…, 0…, a 12-digit masked
    # number, a SIP URI's user part), or a mobile number written with spaces or hyphens.
    rf"|(?P<phone>(?:(?<!\d)|(?<=%20))(?:\d{{10,}}|[6-9](?:{_SEPARATOR}?\d){{9}})(?!\d))"
)


def _keep_last_four(number: str) -> str:
    # "%20" is a separator whose characters are not the number's digits.
    text = number.replace("%20", "\0")
    # isdecimal: exactly the characters the pattern's \d matched (isdigit also takes "²").
    total = sum(ch.isdecimal() for ch in text)
    seen = 0
    masked: list[str] = []
    for ch in text:
        if ch.isdecimal():
            seen += 1
            masked.append(ch if seen > total - 4 else "*")
        else:
            masked.append(ch)
    return "".join(masked).replace("\0", "%20")


def _mask(match: re.Match[str]) -> str:
    for prefix in ("key", "whsec", "auth", "bearer"):
        if match[prefix] is not None:
            return f"{match[prefix]}{MASK}"
    if match["phone"] is not None:
        return _keep_last_four(match["phone"])
    return match[0]


def redact(text: str, *, secrets: Iterable[str] = ()) -> str:
    """``text`` with the given secret values, keys, tokens and phone numbers masked."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return _SENSITIVE.sub(_mask, text)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, every value but our identifiers passed through ``redact``."""

    def __init__(self, *, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted(
            {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True
        )

    def _clean(self, value: object) -> object:
        if isinstance(value, str):
            return redact(value, secrets=self._secrets)
        if value is None or isinstance(value, bool | float):
            return value
        if isinstance(value, int):
            text = str(value)
            cleaned = redact(text, secrets=self._secrets)
            return value if cleaned == text else cleaned
        if isinstance(value, dict):
            return {str(k): self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._clean(v) for v in value]
        return redact(str(value), secrets=self._secrets)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": self._clean(record.getMessage()),
        }
        if (request_id := request_id_var.get()) is not None:
            entry["request_id"] = request_id
        if (call_sid := call_sid_var.get()) is not None:
            entry["call_sid"] = call_sid
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key != "color_message" and not key.startswith("_"):
                entry[key] = value if key in _IDENTIFIERS else self._clean(value)
        if record.exc_info:
            entry["exc"] = self._clean(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = self._clean(self.formatStack(record.stack_info))
        return json.dumps(entry, default=str)


def configure_logging(level: str, *, secrets: Iterable[str | None] = ()) -> None:
    """JSON lines on stderr for every logger; ``secrets`` are masked wherever they appear."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets=secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # httpx logs every request's full URL at INFO: a webhook URL may carry a token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
