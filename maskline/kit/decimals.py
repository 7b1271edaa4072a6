"""Fixed-decimal figures for the API (rates, minutes), rounded half-up without float maths."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal


def ratio(numerator: int, denominator: int, places: int) -> float:
    """``numerator / denominator`` to ``places`` decimals (0 when the denominator is 0)."""
    if denominator == 0:
        return 0.0
    quantum = Decimal(1).scaleb(-places)
    value = (Decimal(numerator) / Decimal(denominator)).quantize(quantum, rounding=ROUND_HALF_UP)
    return float(value)
