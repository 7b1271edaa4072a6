"""The SDP we offer each leg, and what we read from the answers."""

from __future__ import annotations

from dataclasses import dataclass

from maskline.telephony.media.g711 import G711
from maskline.telephony.media.relay import Endpoint

TELEPHONE_EVENT_PT = 101
_HOLD_DIRECTIONS = frozenset({"sendonly", "inactive"})
_DIRECTIONS = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})


@dataclass(frozen=True, slots=True)
class RemoteMedia:
    endpoint: Endpoint
    codec: G711 | None
    on_hold: bool


def _is_number(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also takes ``²`` (which ``int`` refuses) and
    ``int`` also reads other scripts' digits, neither of which SDP allows (RFC 8866)."""
    return text.isascii() and text.isdigit()


def offer(local: Endpoint, codecs: tuple[G711, ...], *, version: int = 1) -> str:
    """An audio offer of ``codecs`` (in order of preference) and telephone-events."""
    formats = " ".join(str(int(c)) for c in (*codecs, TELEPHONE_EVENT_PT))
    lines = [
        "v=0",
        f"o=maskline {version} {version} IN IP4 {local.host}",
        "s=maskline",
        f"c=IN IP4 {local.host}",
        "t=0 0",
        f"m=audio {local.port} RTP/AVP {formats}",
        *(f"a=rtpmap:{c.value} {c.name}/8000" for c in codecs),
        f"a=rtpmap:{TELEPHONE_EVENT_PT} telephone-event/8000",
        f"a=fmtp:{TELEPHONE_EVENT_PT} 0-15",
        "a=ptime:20",
        "a=sendrecv",
    ]
    return "\r\n".join(lines) + "\r\n"


def parse(text: str) -> RemoteMedia | None:
    """The first audio stream of an SDP answer: where to send, which G.711, held or not."""
    session_host: str | None = None
    session_attributes: set[str] = set()
    media: list[tuple[int, list[int], str | None, set[str]]] = []
    for raw in text.splitlines():
        kind, sep, value = raw.strip().partition("=")
        if not sep:
            continue
        if kind == "c":
            parts = value.split()
            if len(parts) < 3:
                raise ValueError(f"bad c= line: {raw!r}")
            if media:
                port, formats, _, attributes = media[-1]
                media[-1] = (port, formats, parts[2], attributes)
            else:
                session_host = parts[2]
        elif kind == "m":
            parts = value.split()
            if len(parts) < 4 or not _is_number(parts[1]):
                raise ValueError(f"bad m= line: {raw!r}")
            formats = [int(f) for f in parts[3:] if _is_number(f)]
            port = int(parts[1]) if parts[0].lower() == "audio" else -1
            media.append((port, formats, None, set()))
        elif kind == "a":
            attribute = value.split(":", 1)[0].strip().lower()
            (media[-1][3] if media else session_attributes).add(attribute)
    for port, formats, host, attributes in media:
        address = host or session_host
        if port <= 0 or address is None:
            continue
        codec = next((G711(f) for f in formats if f in (0, 8)), None)
        # A direction on the stream overrides one for the whole session.
        directions = (attributes & _DIRECTIONS) or (session_attributes & _DIRECTIONS)
        on_hold = address == "0.0.0.0" or bool(directions & _HOLD_DIRECTIONS)  # noqa: S104
        return RemoteMedia(Endpoint(address, port), codec, on_hold)
    return None
