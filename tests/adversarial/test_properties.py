"""SPEC §2 and §4 as properties, each checked against an oracle written from the
SPEC's words (not from the implementation), over inputs hypothesis generates."""

from __future__ import annotations

import json
import math
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from maskline.billing.gst import split_gst
from maskline.billing.talktime import Pricing
from maskline.calls.intake import parse_new_call
from maskline.errors import InvalidNumbers
from maskline.kit.money import MAX_RUPEES, paise_to_rupees, parse_rupees, pulse_price_paise
from maskline.kit.phone import normalise_mobile

# Deterministic and bounded: the same examples on every run, no example database.
BOUNDED = settings(
    derandomize=True,
    database=None,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# --- SPEC §2: phone numbers -------------------------------------------------------

IGNORED = " -()"
ASCII_DIGITS = "0123456789"


def spec_mobile(raw: str) -> str | None:
    """SPEC §2 read literally: drop spaces, hyphens and parentheses; then the rest is
    a mobile (``[6-9]`` and nine ASCII digits), optionally after exactly one of the
    prefixes ``+91``, ``91`` (12 digits in all) or ``0`` (11 digits in all)."""
    if any(ord(c) > 127 for c in raw):
        return None
    rest = "".join(c for c in raw if c not in IGNORED)
    for prefix in ("", "+91", "91", "0"):
        if not rest.startswith(prefix):
            continue
        number = rest[len(prefix) :]
        if len(number) == 10 and number[0] in "6789" and all(c in ASCII_DIGITS for c in number):
            return number
    return None


mobiles = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("6789"),
    st.text(alphabet=ASCII_DIGITS, min_size=9, max_size=9),
)


@st.composite
def written_mobiles(draw: st.DrawFn) -> tuple[str, str]:
    """A mobile as people write it: a prefix, and separators anywhere."""
    number = draw(mobiles)
    text = draw(st.sampled_from(["", "+91", "91", "0"])) + number
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(IGNORED)) + text[at:]
    return number, text


# Text near the valid forms: digits, separators, a plus, and look-alikes that must
# be refused (letters, tabs, non-ASCII digits and spaces, a full-width plus).
near_numbers = st.text(
    alphabet=st.sampled_from(list(ASCII_DIGITS * 3 + IGNORED + "+x\t\r\n.٩९０\u00a0＋")),
    max_size=18,
)


class TestPhoneNormalisation:
    @BOUNDED
    @given(written_mobiles())
    def test_every_written_form_of_a_mobile_gives_its_10_digits(
        self, written: tuple[str, str]
    ) -> None:
        number, text = written
        assert normalise_mobile(text) == number

    @BOUNDED
    @given(st.one_of(near_numbers, written_mobiles().map(lambda w: w[1]), st.text(max_size=16)))
    @example("0091 98765 43210")
    @example("+91 0 98765 43210")
    @example("919876543210")
    @example("9198765432")
    @example("09876543210")
    @example("+9198765432")
    @example("９８７６５４３２１０")
    @example("98765\t43210")
    @example("9876543210\n")
    @example("9876543210\r\n")
    @example("\n9876543210")
    @example("+91 98765 43210\n")
    def test_any_text_is_accepted_exactly_when_the_spec_says(self, text: str) -> None:
        assert normalise_mobile(text) == spec_mobile(text)

    @BOUNDED
    @given(st.one_of(near_numbers, written_mobiles().map(lambda w: w[1])))
    @example("9876543210\n")
    @example("9876543210\r\n")
    @example("\n9876543210")
    def test_a_party_on_the_wire_is_the_10_digit_form_or_invalid_numbers(self, text: str) -> None:
        other = "6000000000" if spec_mobile(text) != "6000000000" else "6000000001"
        body = json.dumps({"party_a": text, "party_b": other}).encode()
        expected = spec_mobile(text)
        if expected is None:
            with pytest.raises(InvalidNumbers) as refused:
                parse_new_call(body, default_ring_timeout=30, allow_private_webhooks=False)
            assert refused.value.message == "party_a must be a 10-digit Indian mobile number."
        else:
            parsed = parse_new_call(body, default_ring_timeout=30, allow_private_webhooks=False)
            assert (parsed.party_a, parsed.party_b) == (expected, other)


# --- SPEC §4: pulses and prices ----------------------------------------------------

pulse_seconds = st.integers(1, 3600)


class TestPulseBilling:
    @BOUNDED
    @given(rate=st.integers(0, 100_000), pulse=pulse_seconds)
    def test_a_pulse_costs_the_rate_for_its_seconds_rounded_up_to_the_paisa(
        self, rate: int, pulse: int
    ) -> None:
        # ceil(rate × pulse / 60): the least whole paise that pay for pulse seconds.
        price = pulse_price_paise(rate, pulse)
        assert price == math.ceil(Fraction(rate * pulse, 60))
        assert 60 * price >= rate * pulse > 60 * (price - 1)

    @BOUNDED
    @given(talk=st.integers(0, 20_000), pulse=pulse_seconds, granted=st.integers(1, 400))
    @example(talk=94, pulse=60, granted=2)
    @example(talk=120, pulse=60, granted=5)
    @example(talk=0, pulse=60, granted=1)
    def test_billed_pulses_cover_the_talk_at_least_one_never_past_the_grant(
        self, talk: int, pulse: int, granted: int
    ) -> None:
        billed = Pricing(pulse, 0, None).billed_pulses(talk_sec=talk, granted=granted)
        # The fewest pulses whose seconds reach the talk time, counting from one.
        covering = 1
        while covering * pulse < talk:
            covering += 1
        assert billed == min(covering, granted)
        assert 1 <= billed <= granted

    @BOUNDED
    @given(max_duration=st.integers(10, 7200), pulse=pulse_seconds)
    @example(max_duration=94, pulse=60)
    def test_a_call_ended_by_its_own_timer_bills_exactly_that_timer(
        self, max_duration: int, pulse: int
    ) -> None:
        pricing = Pricing(pulse, 150, max_duration)
        assert pricing.max_pulses is not None
        # The grant stops at the pulse that contains the timer: 94 s at 60 s → 2 pulses.
        assert (pricing.max_pulses - 1) * pulse < max_duration <= pricing.max_pulses * pulse
        billed = pricing.billed_pulses(talk_sec=max_duration, granted=pricing.max_pulses)
        assert billed * pulse == pricing.max_pulses * pulse
        if (max_duration, pulse) == (94, 60):
            assert billed * pulse == 120


# --- SPEC §4: GST and rupees -------------------------------------------------------

amounts = st.integers(0, 10**11)
states = st.sampled_from(["24", "27", "07", "97"])


def half_up(amount_paise: int, percent: str) -> int:
    exact = Decimal(amount_paise) * Decimal(percent) / Decimal(100)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


class TestGst:
    @BOUNDED
    @given(amount=amounts, recipient=states, provider=states)
    @example(amount=1050, recipient="24", provider="24")  # 94.5 paise → 95
    @example(amount=1050, recipient="27", provider="24")  # 189 paise
    @example(amount=2775, recipient="27", provider="24")  # 499.5 paise → 500
    def test_18_percent_split_by_state_each_component_half_up_to_the_paisa(
        self, amount: int, recipient: str, provider: str
    ) -> None:
        tax = split_gst(amount, recipient_state=recipient, provider_state=provider)
        if recipient == provider:
            assert (tax.cgst, tax.sgst, tax.igst) == (
                half_up(amount, "9"),
                half_up(amount, "9"),
                0,
            )
        else:
            assert (tax.cgst, tax.sgst, tax.igst) == (0, 0, half_up(amount, "18"))
        assert tax.total_tax == tax.cgst + tax.sgst + tax.igst


class TestRupees:
    @BOUNDED
    @given(st.integers(0, 10**13))
    @example(300)
    @example(150)
    @example(9850)
    @example(1)
    def test_rupees_on_the_wire_are_the_exact_paise_with_at_most_2_decimals(
        self, paise: int
    ) -> None:
        wire = json.dumps(paise_to_rupees(paise))
        exact = Decimal(paise) / 100
        assert Decimal(wire) == exact
        if paise % 100 == 0:
            assert wire == str(paise // 100)  # an integer when whole: 3, not 3.0
        else:
            assert len(wire.partition(".")[2]) <= 2

    @BOUNDED
    @given(st.integers(0, MAX_RUPEES * 100))
    @example(MAX_RUPEES * 100)
    def test_an_amount_written_in_rupees_parses_back_to_its_paise(self, paise: int) -> None:
        assert parse_rupees(str(Decimal(paise) / 100)) == paise
        assert parse_rupees(json.dumps(paise_to_rupees(paise))) == paise

    @BOUNDED
    @given(st.integers(MAX_RUPEES * 100 + 1, 10**30))
    def test_an_amount_above_the_largest_is_refused(self, paise: int) -> None:
        with pytest.raises(ValueError, match="is more than the largest amount"):
            parse_rupees(str(Decimal(paise) / 100))
