"""SPEC §8: the sim's synthetic audio, a distinct tone per party, 8 kHz frames."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from maskline.kit.clock import ScaledClock
from maskline.telephony.events import Cause, Leg, LegEvent, LegHungUp
from maskline.telephony.sim.audio import SAMPLE_RATE
from maskline.telephony.sim.carrier import SimCarrier
from tests.support.audio import dominant_hz
from tests.support.rtp import Capture


async def test_bridged_audio_is_a_tone_per_party_for_exactly_the_talk_time() -> None:
    clock = ScaledClock(50)
    sim = SimCarrier(clock, ring_sec=2, talk_sec=3)
    events: list[LegEvent] = []
    hung_up = asyncio.Event()

    def sink(event: LegEvent) -> None:
        events.append(event)
        if isinstance(event, LegHungUp):
            hung_up.set()

    await sim.start(sink)
    capture = Capture()
    start = clock.now()
    sim.bridge("c-1", at=start, media=capture)
    await asyncio.wait_for(hung_up.wait(), 5)
    (hangup,) = events
    assert (hangup.leg, hangup.at) == (Leg.A, start + timedelta(seconds=3))
    sim.hangup("c-1", Leg.B, cause=Cause.NORMAL_CLEARING, at=hangup.at)
    assert capture.closed
    # 3 s of 8 kHz 16-bit audio on each side.
    assert len(capture.audio[Leg.A]) == len(capture.audio[Leg.B]) == 3 * SAMPLE_RATE * 2
    assert dominant_hz(bytes(capture.audio[Leg.A])) == 440
    assert dominant_hz(bytes(capture.audio[Leg.B])) == 1000
    await sim.close()
