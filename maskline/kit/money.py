"""Money is integer paise inside; rupees exist only at the edges (SPEC §4)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

PAISE_PER_RUPEE = 100
# The largest amount one command may credit (Rs 100 crore): far above any real top-up,
# far below what the 64-bit ledger columns hold after any number of them.
MAX_RUPEES = 1_000_000_000


def paise_to_rupees(paise: int) -> int | float:
    """Rupees as a JSON number with at most 2 decimals, an integer when whole.

    The value is formed exactly with Decimal; the final float only carries it
    to the JSON encoder, whose shortest repr of a 2-decimal number is exact.
    """
    if paise % PAISE_PER_RUPEE == 0:
        return paise // PAISE_PER_RUPEE
    return float(Decimal(paise).scaleb(-2))


def parse_rupees(text: str) -> int:
    """Parse a rupee amount such as ``"10"`` or ``"10.01"`` into paise.

    Raises ValueError for anything that is not a non-negative amount with at
    most two decimals, or that is above ``MAX_RUPEES``.
    """
    raw = text.strip()
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount in rupees") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"{text!r} is not a non-negative amount in rupees")
    paise = value * PAISE_PER_RUPEE
    if paise != paise.to_integral_value():
        raise ValueError(f"{text!r} has more than two decimals (whole paise only)")
    if value > MAX_RUPEES:
        raise ValueError(f"{text!r} is more than the largest amount, Rs {MAX_RUPEES}")
    return int(paise)


def pulse_price_paise(rate_paise_per_minute: int, pulse_sec: int) -> int:
    """The price of one pulse: ceil(rate × pulse / 60) paise."""
    return -(-rate_paise_per_minute * pulse_sec // 60)


def percent_half_up(amount_paise: int, percent: int) -> int:
    """``amount × percent / 100`` rounded half-up to the paisa (amount ≥ 0)."""
    return (amount_paise * percent + 50) // 100
