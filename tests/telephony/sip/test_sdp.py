"""The SDP we read from the trunk (``sip/sdp.py``): numbers in it are ASCII digits only."""

from __future__ import annotations

import pytest

from maskline.telephony.media.g711 import G711
from maskline.telephony.media.relay import Endpoint
from maskline.telephony.sip import sdp


def answer(m_line: str) -> str:
    return f"v=0\r\no=b 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{m_line}\r\n"


@pytest.mark.parametrize("odd", ["²", "٣", "𝟠"])
def test_a_format_that_is_not_ascii_digits_is_ignored_and_the_rest_is_read(odd: str) -> None:
    media = sdp.parse(answer(f"m=audio 4000 RTP/AVP {odd} 8 0"))
    assert media == sdp.RemoteMedia(Endpoint("127.0.0.1", 4000), G711.PCMA, on_hold=False)


@pytest.mark.parametrize("port", ["²", "٤٠٠٠", "4٠٠٠"])
def test_a_port_that_is_not_ascii_digits_is_a_bad_m_line(port: str) -> None:
    with pytest.raises(ValueError, match="bad m= line"):
        sdp.parse(answer(f"m=audio {port} RTP/AVP 0"))
