"""SPEC §3 outcomes and §4 money, on the sim carrier (§8) under a scaled clock."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from maskline.billing import wallet
from maskline.calls.engine import HANGUP_POLL_SEC
from maskline.kit.clock import ScaledClock
from maskline.orgs.service import OrgTerms
from maskline.telephony.sim.carrier import SimCarrier, TraceEntry
from tests.calls.conftest import call_settings
from tests.support.api import Api, running_api
from tests.support.calls import billing, place, post_at_once, wait_for
from tests.support.statements import statement_times

CALLS = "/v1/masking/calls"


def outcome(call: dict[str, Any]) -> tuple[object, ...]:
    return (
        call["status"],
        call["hangup_cause"],
        call["hangup_by"],
        call["failed_leg"],
        call["sip_code"],
    )


def money(call: dict[str, Any]) -> tuple[object, ...]:
    return (call["talk_duration_sec"], call["bill_duration_sec"], call["price"])


def seconds(later: str, earlier: str) -> float:
    parse = datetime.fromisoformat
    return (parse(later) - parse(earlier)).total_seconds()


def trace(api: Api, call_sid: str) -> list[TraceEntry]:
    engine = api.runtime.engine
    assert engine is not None
    sim = engine.carriers["sim"]
    assert isinstance(sim, SimCarrier)
    return [entry for entry in sim.trace if entry.call_sid == call_sid]


class TestMagicNumbers:
    @pytest.mark.parametrize(
        ("party_a", "party_b", "expected"),
        [
            ("9876540000", "9123456789", ("no-answer", "NO_ANSWER", "system", "party_a", 487)),
            ("9876540001", "9123456789", ("failed", "USER_BUSY", "party_a", "party_a", 486)),
            (
                "9876540002",
                "9123456789",
                ("failed", "UNALLOCATED_NUMBER", "system", "party_a", 404),
            ),
            ("9876540003", "9123456789", ("failed", "CALL_REJECTED", "party_a", "party_a", 603)),
            ("9876543210", "9123450000", ("failed", "NO_ANSWER", "system", "party_b", 487)),
            ("9876543210", "9123450001", ("failed", "USER_BUSY", "party_b", "party_b", 486)),
            (
                "9876543210",
                "9123450002",
                ("failed", "UNALLOCATED_NUMBER", "system", "party_b", 404),
            ),
            ("9876543210", "9123450003", ("failed", "CALL_REJECTED", "party_b", "party_b", 603)),
        ],
    )
    async def test_each_magic_number_ends_unbilled(
        self, api: Api, party_a: str, party_b: str, expected: tuple[object, ...]
    ) -> None:
        org = await api.make_org(f"magic-{party_a}-{party_b}", balance="10", numbers=1)
        placed = await place(api, org, party_a=party_a, party_b=party_b, ring_timeout_sec=10)
        call = await wait_for(api, org, placed["call_sid"])
        assert outcome(call) == expected
        assert money(call) == (0, 0, 0)
        assert call["bridged_at"] is None
        assert call["recording_status"] == "none"
        assert await billing(api, org) == {
            "balance": 10,
            "currency": "INR",
            "rate_per_minute": 1.5,
            "reserved": 0,
            "available": 10,
            "minimum_balance": 1.5,
            "low_balance": True,
        }

    async def test_a_hears_a_tone_when_b_fails(self, api: Api) -> None:
        org = await api.make_org("magic-tone", balance="10", numbers=1)
        placed = await place(api, org, party_b="9123450001")
        call = await wait_for(api, org, placed["call_sid"])
        assert call["answered_at"] is not None
        hangups = [(e.leg, e.detail) for e in trace(api, call["call_sid"]) if e.action == "hangup"]
        assert [(leg.value if leg else None, detail) for leg, detail in hangups] == [
            ("party_a", "USER_BUSY +tone")
        ]

    async def test_ring_timeout_is_per_leg(self, api: Api) -> None:
        org = await api.make_org("magic-ring", balance="10", numbers=1)
        placed = await place(api, org, party_b="9123450000", ring_timeout_sec=25)
        call = await wait_for(api, org, placed["call_sid"])
        # A rings 2 s and answers; B rings for its own 25 s before the system gives up.
        assert seconds(call["answered_at"], call["started_at"]) == 2
        assert seconds(call["ended_at"], call["answered_at"]) == 25


class TestCompletedCalls:
    async def test_a_sandbox_call_completes_by_itself_and_is_billed(self, api: Api) -> None:
        org = await api.make_org("done-normal", balance="10", numbers=1)
        placed = await place(api, org)
        call = await wait_for(api, org, placed["call_sid"])
        assert outcome(call) == ("completed", "NORMAL_CLEARING", "party_a", None, None)
        assert money(call) == (20, 60, 1.5)
        assert call["duration_sec"] == 22  # from A's answer: B rang 2 s, then 20 s of talk
        assert seconds(call["answered_at"], call["started_at"]) == 2
        assert seconds(call["bridged_at"], call["answered_at"]) == 2
        assert await billing(api, org) == {
            "balance": 8.5,
            "currency": "INR",
            "rate_per_minute": 1.5,
            "reserved": 0,
            "available": 8.5,
            "minimum_balance": 1.5,
            "low_balance": True,
        }

    @pytest.mark.slow
    async def test_max_duration_ends_the_call_and_94_s_bills_120_s(self, long_api: Api) -> None:
        org = await long_api.make_org("done-max", balance="10", numbers=1)
        placed = await place(long_api, org, max_duration_sec=94)
        call = await wait_for(long_api, org, placed["call_sid"])
        assert outcome(call) == ("completed", "ALLOTTED_TIMEOUT", "system", None, None)
        assert money(call) == (94, 120, 3)
        assert seconds(call["ended_at"], call["bridged_at"]) == 94
        assert (await billing(long_api, org))["balance"] == 7

    async def test_the_price_follows_the_organisations_rate_and_pulse(
        self, database_url: str, tmp_path: Path
    ) -> None:
        # 20 s of talk is 10 s short of a second pulse: at SPEED that is 0.1 real second,
        # which a busy machine can lose between the sim's hang-up and its record; ten
        # times faster leaves a whole second.
        settings = call_settings(database_url, tmp_path / "data")
        async with running_api(settings, clock=ScaledClock(10)) as api:
            org = await api.make_org(
                "done-rate", balance="10", numbers=1, terms=OrgTerms(rate_paise=200, pulse_sec=30)
            )
            placed = await place(api, org)
            call = await wait_for(api, org, placed["call_sid"])
            balance = (await billing(api, org))["balance"]
        assert money(call) == (20, 30, 1)
        assert balance == 9

    async def test_hangup_api_ends_a_bridged_call_and_bills_it(
        self, database_url: str, tmp_path: Path
    ) -> None:
        # A clock ten times faster, not SPEED: the hang-up must land within the first
        # minute of talk (6 real seconds) however busy the machine.
        settings = call_settings(database_url, tmp_path / "data", sim_talk_sec=3600)
        async with running_api(settings, clock=ScaledClock(10)) as api:
            org = await api.make_org("done-hangup", balance="10", numbers=1)
            # Unrecorded: the second answer must be the first, not a recording made since.
            placed = await place(api, org, record=False)
            await wait_for(api, org, placed["call_sid"], ("in-progress",))
            path = f"{CALLS}/{placed['call_sid']}/hangup"
            response = await api.client.post(path, headers=org.auth)
            assert response.status_code == 200
            call = response.json()["data"]
            assert outcome(call) == ("completed", "NORMAL_CLEARING", "system", None, None)
            assert call["bill_duration_sec"] == 60
            again = await api.client.post(path, headers=org.auth)
            assert again.json()["data"] == call

    async def test_hangup_api_on_a_ringing_call_fails_it_unbilled(self, steady_api: Api) -> None:
        org = await steady_api.make_org("done-hangup-ring", balance="10", numbers=1)
        placed = await place(steady_api, org, party_a="9876540000", ring_timeout_sec=120)
        await wait_for(steady_api, org, placed["call_sid"], ("ringing",))
        path = f"{CALLS}/{placed['call_sid']}/hangup"
        call = (await steady_api.client.post(path, headers=org.auth)).json()["data"]
        assert outcome(call) == ("failed", "NORMAL_CLEARING", "system", None, None)
        assert money(call) == (0, 0, 0)
        assert (await billing(steady_api, org))["reserved"] == 0

    async def test_hang_up_requests_are_read_when_one_is_asked_for_not_on_every_claim(
        self, steady_api: Api
    ) -> None:
        """Every accepted call wakes the engine's claim; the requests are read when a
        hang-up is announced and every HANGUP_POLL_SEC (the net for a lost one)."""
        org = await steady_api.make_org("hangup-reads", balance="100", numbers=2)
        # Every A ends 0000: it rings until the 120 s timeout (SPEC §8).
        first = await place(steady_api, org, party_a="9876990000", ring_timeout_sec=120)
        await wait_for(steady_api, org, first["call_sid"], ("ringing",))
        loop = asyncio.get_running_loop()

        def hangup_read(statement: str) -> bool:
            return "hangup_requested_at IS NOT NULL" in statement

        with statement_times(steady_api, hangup_read) as reads:
            started = loop.time()
            for n in range(10):
                # Each accepted call wakes a claim round, and each is claimed.
                placed = await place(
                    steady_api,
                    org,
                    party_a=f"9876{n:02d}0000",
                    party_b=f"9123{n:02d}4567",
                    ring_timeout_sec=120,
                )
                await wait_for(steady_api, org, placed["call_sid"], ("ringing",))
            elapsed = loop.time() - started
            unasked = len(reads)
            path = f"{CALLS}/{first['call_sid']}/hangup"
            call = (await steady_api.client.post(path, headers=org.auth)).json()["data"]
        assert unasked <= elapsed // HANGUP_POLL_SEC + 1
        assert outcome(call) == ("failed", "NORMAL_CLEARING", "system", None, None)
        assert len(reads) > unasked


class TestPrepaidCutOff:
    async def test_five_long_calls_on_rs_3_never_overdraw(self, long_api: Api) -> None:
        org = await long_api.make_org("cutoff", balance="3", numbers=5)
        # Unrecorded: the test is about money, and an 8-minute recording costs a busy
        # machine seconds of encoding before the call settles.
        bodies = [
            {"party_a": f"98765432{n}0", "party_b": f"91234567{n}9", "record": False}
            for n in range(5)
        ]
        responses = await asyncio.gather(
            *[long_api.client.post(CALLS, headers=org.auth, json=b) for b in bodies]
        )
        accepted = [r.json()["data"] for r in responses if r.status_code == 201]
        # Two minutes of money: one or two calls get in (a bridged call may take the second
        # minute as talk time before the others are accepted); the rest are refused.
        assert 1 <= len(accepted) <= 2
        assert [r.status_code for r in responses].count(402) == 5 - len(accepted)
        ended = [await wait_for(long_api, org, c["call_sid"]) for c in accepted]
        for call in ended:
            assert outcome(call) == ("completed", "BALANCE_EXHAUSTED", "system", None, None)
            assert call["talk_duration_sec"] == call["bill_duration_sec"]
        assert sum(c["price"] for c in ended) == 3
        assert sum(c["bill_duration_sec"] for c in ended) == 120
        assert await billing(long_api, org) == {
            "balance": 0,
            "currency": "INR",
            "rate_per_minute": 1.5,
            "reserved": 0,
            "available": 0,
            "minimum_balance": 1.5,
            "low_balance": True,
        }
        async with long_api.runtime.db.read() as session:
            assert await wallet.ledger_sum(session, org.id) == 0

    async def test_credit_is_granted_in_chunks_while_the_wallet_lasts(self, long_api: Api) -> None:
        # Rs 12 is 8 pulses: the first chunk is 5, the next request gets the other 3.
        org = await long_api.make_org("cutoff-chunks", balance="12", numbers=1)
        placed = await place(long_api, org, record=False)  # about money, as above
        call = await wait_for(long_api, org, placed["call_sid"], within=30)
        assert outcome(call) == ("completed", "BALANCE_EXHAUSTED", "system", None, None)
        assert money(call) == (480, 480, 12)
        assert (await billing(long_api, org))["balance"] == 0


class TestNumberPool:
    async def test_no_party_sees_one_masked_number_in_two_live_calls(
        self, own_database: str, tmp_path: Path
    ) -> None:
        # Every A here never answers, so all three calls stay live (ringing) on the wall
        # clock. A database of its own: the pool offers numbers never used first, and
        # other tests leave shared numbers (of no organisation) in the session's.
        settings = call_settings(own_database, tmp_path / "data")
        async with running_api(settings) as api:
            org = await api.make_org("pool", balance="100", numbers=2)
            first = await place(
                api, org, party_a="9811110000", party_b="9822222222", ring_timeout_sec=120
            )
            second = await place(
                api, org, party_a="9811110000", party_b="9833333333", ring_timeout_sec=120
            )
            assert first["masked_number"] != second["masked_number"]
            third = await api.client.post(
                CALLS,
                headers=org.auth,
                json={"party_a": "9844440000", "party_b": "9822222222", "ring_timeout_sec": 120},
            )
            assert third.status_code == 201
            assert third.json()["data"]["masked_number"] == second["masked_number"]
            full = await api.client.post(
                CALLS, headers=org.auth, json={"party_a": "9811110000", "party_b": "9855555555"}
            )
            assert full.status_code == 503
            assert full.json() == {
                "error": {
                    "code": "no_masked_number",
                    "message": "No masked number is free for these parties. Please retry shortly.",
                }
            }
            assert (await billing(api, org))["reserved"] == 4.5

    async def test_calls_sharing_a_party_placed_at_once_get_distinct_numbers_then_503(
        self, own_database: str, tmp_path: Path
    ) -> None:
        # A batch leases its new calls' numbers in one statement, which reads the leases
        # as they were before it: calls of one batch sharing a party pick the same number,
        # and all but one of them are placed again alone, on the next free number or 503.
        settings = call_settings(own_database, tmp_path / "data")
        async with running_api(settings) as api:
            org = await api.make_org("pool-burst", balance="100", numbers=3)
            writer = api.runtime.db.writer
            batches, units = writer.batches, writer.units
            bodies = [
                {"party_a": "9811110000", "party_b": f"98222{n:05d}", "ring_timeout_sec": 120}
                for n in range(5)
            ]
            responses = await post_at_once(api, org, bodies)
            assert sorted(r.status_code for r in responses) == [201] * 3 + [503] * 2
            numbers = {r.json()["data"]["masked_number"] for r in responses if r.is_success}
            assert len(numbers) == 3
            # Some of them were in one batch (else this tests nothing of the batch's lease).
            assert writer.units - units > writer.batches - batches
            assert (await billing(api, org))["reserved"] == 4.5

    async def test_calls_refused_a_number_in_a_batch_take_no_hold_from_the_others(
        self, own_database: str, tmp_path: Path
    ) -> None:
        # Rs 4.50 is three holds of Rs 1.50; a live call takes the first. Three calls of
        # its party A find no number (one in the pool) and a fourth call of two free
        # parties takes the last one: it must be held, not refused for the holds the
        # batch would have given the three.
        settings = call_settings(own_database, tmp_path / "data")
        async with running_api(settings) as api:
            org = await api.make_org("pool-no-hold", balance="4.5", numbers=1)
            await place(api, org, party_a="9811110000", party_b="9822220000", ring_timeout_sec=120)
            bodies = [
                {"party_a": "9811110000", "party_b": f"98333{n:05d}", "ring_timeout_sec": 120}
                for n in range(3)
            ] + [{"party_a": "9844440000", "party_b": "9855550000", "ring_timeout_sec": 120}]
            responses = await post_at_once(api, org, bodies)
            assert [r.status_code for r in responses] == [503, 503, 503, 201]
            assert (await billing(api, org))["reserved"] == 3

    async def test_a_pair_gets_its_previous_number_back(self, api: Api) -> None:
        org = await api.make_org("pool-again", balance="100", numbers=3)
        first = await place(api, org, party_a="9811111112", party_b="9811111113")
        await wait_for(api, org, first["call_sid"])
        other = await place(api, org, party_a="9811111114", party_b="9811111115")
        await wait_for(api, org, other["call_sid"])
        again = await place(api, org, party_a="9811111113", party_b="9811111112")
        assert again["masked_number"] == first["masked_number"]

    async def test_a_pair_gets_its_previous_number_back_from_a_pool_of_100(self, api: Api) -> None:
        # Once used, the pair's number is the most recently used of the 100: it must be
        # found as the pair's, not among the least recently used ones.
        org = await api.make_org("pool-hundred", balance="100", numbers=100)
        first = await place(api, org, party_a="9811111122", party_b="9811111123")
        await wait_for(api, org, first["call_sid"])
        other = await place(api, org, party_a="9811111124", party_b="9811111125")
        await wait_for(api, org, other["call_sid"])
        assert other["masked_number"] != first["masked_number"]
        again = await place(api, org, party_a="9811111123", party_b="9811111122")
        assert again["masked_number"] == first["masked_number"]
        await wait_for(api, org, again["call_sid"])
        # And the same way round as the first call.
        forward = await place(api, org, party_a="9811111122", party_b="9811111123")
        assert forward["masked_number"] == first["masked_number"]

    @pytest.mark.slow
    async def test_numbers_are_used_least_recently_first(self, api: Api) -> None:
        org = await api.make_org("pool-lru", balance="100", numbers=3)
        used = []
        for n in range(3):
            placed = await place(api, org, party_a=f"98222222{n}5", party_b=f"98333333{n}5")
            await wait_for(api, org, placed["call_sid"])
            used.append(placed["masked_number"])
        assert len(set(used)) == 3
