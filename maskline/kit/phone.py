"""Indian mobile numbers (SPEC §2): what a party may be, and its 10-digit form."""

from __future__ import annotations

import re

_IGNORED = re.compile(r"[ \-()]")
# Matched with fullmatch: "$" would also match before a final newline.
_MOBILE = re.compile(r"[6-9][0-9]{9}")


def normalise_mobile(raw: str) -> str | None:
    """The 10-digit form of an Indian mobile number, or None if ``raw`` is not one.

    Spaces, hyphens and parentheses are ignored; then a leading ``+91``, ``91``
    (12 digits in all) or ``0`` (11 digits in all) is stripped. Only ASCII
    digits count: ``0091…``, letters and other scripts' digits are refused.
    """
    if not raw.isascii():
        return None
    text = _IGNORED.sub("", raw)
    if text.startswith("+91"):
        text = text[3:]
    elif len(text) == 12 and text.startswith("91"):
        text = text[2:]
    elif len(text) == 11 and text.startswith("0"):
        text = text[1:]
    return text if _MOBILE.fullmatch(text) else None
