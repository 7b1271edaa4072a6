"""GSTINs and GST state codes (SPEC §4): India's formats, checked where they are entered."""

from __future__ import annotations

import re

_CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Characters 3–12 are a PAN; 13 the entity number; 14 is 'Z' by default but any
# alphanumeric is accepted; 15 the mod-36 check character.
_SHAPE = re.compile(r"[0-9]{2}[A-Z]{5}[0-9]{4}[A-Z][1-9A-Z][0-9A-Z][0-9A-Z]")
# GST state codes: 01–38 (states and union territories) and 97 (other territory).
VALID_STATE_CODES = frozenset({f"{n:02d}" for n in range(1, 39)} | {"97"})


class InvalidGstin(ValueError):
    pass


def gstin_check_character(first14: str) -> str:
    """The mod-36 check character over the first 14 characters of a GSTIN."""
    total = 0
    for index, char in enumerate(first14):
        product = _CHARSET.index(char) * (2 if index % 2 else 1)
        total += product // 36 + product % 36
    return _CHARSET[(36 - total % 36) % 36]


def validate_gstin(raw: str) -> str:
    """The normalised (upper-case) GSTIN, or InvalidGstin with the reason."""
    gstin = raw.strip().upper()
    if len(gstin) != 15:
        raise InvalidGstin("GSTIN must be 15 characters.")
    if not _SHAPE.fullmatch(gstin):
        raise InvalidGstin("GSTIN is not shaped like a GSTIN (state code, PAN, entity, check).")
    if gstin[:2] not in VALID_STATE_CODES:
        raise InvalidGstin(f"GSTIN state code {gstin[:2]} is not a valid GST state code.")
    if gstin_check_character(gstin[:14]) != gstin[14]:
        raise InvalidGstin("GSTIN check character does not verify.")
    return gstin


def validate_state_code(raw: str) -> str:
    code = raw.strip()
    if len(code) == 1 and code in "123456789":
        code = f"0{code}"
    if code not in VALID_STATE_CODES:
        raise InvalidGstin(f"{raw!r} is not a valid GST state code (01–38 or 97).")
    return code
