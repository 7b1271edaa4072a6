"""RFC 3261 §19.1.4: ``;transport=UDP`` is ``;transport=udp``. A trunk that writes it in
capitals in its Contact and Record-Route (SIPp does, so do some trunks) still gets our
in-dialog BYE, sent on the route it gave, with its URIs as it wrote them."""

from __future__ import annotations

from pathlib import Path

from maskline.kit.clock import ScaledClock
from maskline.telephony.events import Leg
from tests.support.rtp import Phone
from tests.support.sipp import Sipp
from tests.telephony.sip.test_sip_calls import one_call, outcome


async def test_a_trunk_writing_its_transport_in_capitals_gets_our_bye_on_its_route(
    database_url: str, tmp_path: Path, phones: dict[Leg, Phone]
) -> None:
    sipp = Sipp(
        "transport_upper.xml",
        tmp_path / "sipp",
        calls=2,
        variables={"aport": str(phones[Leg.A].port), "bport": str(phones[Leg.B].port)},
    )
    # The engine's clock runs ten times faster: the 10 s maximum is one real second.
    call = await one_call(database_url, tmp_path, sipp, clock=ScaledClock(10), max_duration_sec=10)
    assert outcome(call) == ("completed", "ALLOTTED_TIMEOUT", "system", None, None, 60, 1.5)
    byes = {
        (m.first_line, m.header("Route"))
        for m in sipp.messages()
        if m.received and m.first_line.startswith("BYE ")
    }
    trunk, route = f"127.0.0.1:{sipp.port}", f"<sip:127.0.0.1:{sipp.port};transport=UDP;lr>"
    assert sorted(byes) == [
        (f"BYE sip:a@{trunk};transport=UDP SIP/2.0", route),
        (f"BYE sip:b@{trunk};transport=UDP SIP/2.0", route),
    ]
