"""The relay on uvloop, the loop the server runs: a session cancelled while its ports are
being bound leaves no socket open."""

from __future__ import annotations

import asyncio
import gc
import socket
import warnings

import uvloop

from maskline.telephony.media.relay import RelaySession, UdpRelay

PORTS = range(26700, 26740, 2)


def test_an_open_cancelled_while_its_ports_are_bound_leaves_no_socket_open() -> None:
    # On uvloop (the server's loop; the tests' own is asyncio's), whose datagram endpoint
    # takes its socket before its first await: a cancel there had left the socket open.
    # (A loop of its own, closed once the test has passed: uvloop's close waits for ever
    # on a transport left open, the failure this test is for.)
    loop = uvloop.new_event_loop()
    loop.run_until_complete(asyncio.wait_for(_open_and_cancel(), 30))
    loop.close()


async def _open_and_cancel() -> None:
    relay = UdpRelay(bind_host="127.0.0.1", advertise="127.0.0.1", ports=PORTS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for turns in range(12):
            opening = [asyncio.create_task(relay.open(f"CA{turns}-{n}")) for n in range(5)]
            for _ in range(turns):
                await asyncio.sleep(0)
            for task in opening:
                task.cancel()
            for opened in await asyncio.gather(*opening, return_exceptions=True):
                if isinstance(opened, RelaySession):  # done before its cancel
                    await opened.close()
            for _ in range(5):
                await asyncio.sleep(0)  # what was made after the cancel is closed
        await relay.close()
        gc.collect()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    # (Only the relay's sockets are this test's: an earlier test's garbage may be collected
    # here too, e.g. a finished subprocess's transport.)
    assert [message for message in unclosed if "UDPTransport" in message] == []
    # Every port of the range can be bound again: none is held by a lost transport.
    for port in (*PORTS, *(p + 1 for p in PORTS)):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind(("127.0.0.1", port))
        finally:
            probe.close()
