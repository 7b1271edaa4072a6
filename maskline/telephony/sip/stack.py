"""The SIP stack (PyPI ``sippy``) in its own thread, behind a narrow adapter.

sippy's reactor (ED2) is a process-wide singleton built at import time. It runs
here in one dedicated thread; every sippy object is created and touched only in
that thread. The engine's loop talks to it with ``SipThread.call``/``run``
(``ED2.callFromThread``), and legs report back with immutable ``UacEvent``s
through ``loop.call_soon_threadsafe``. See docs/decisions.md for the trial that
chose sippy and the three things adapted here.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from maskline.telephony.events import Dialog

log = logging.getLogger("maskline.sip")
wire_log = logging.getLogger("maskline.sip.wire")

T = TypeVar("T")
TICK_HZ = 200.0
# How long sippy's sender thread may hold a message it took from its queue: 20 tries
# 10 ms apart on a full socket, and the address resolved first.
SENDER_HORIZON_SEC = 0.5


@dataclass(frozen=True, slots=True)
class UacEvent:
    """What happened to a leg, as plain data. ``kind``: ring, connect, fail, bye, update,
    dead (and for a call to a pool number: offer, acked). ``then``, on a connect: the leg
    that follows it, already dialled (``agents.Uac``), a handle only the SIP thread uses;
    ``then_sec``: the seconds from this 200 OK's arrival to that leg's INVITE."""

    kind: str
    code: int | None = None
    reason: str | None = None
    sdp: str | None = None
    dialog: Dialog | None = None
    then: object | None = None
    then_sec: float | None = None


class _WireLog:
    """sippy's logger interface (``write``), sent to Python logging instead of stderr."""

    def write(self, *args: object, **_kwargs: object) -> None:
        if wire_log.isEnabledFor(logging.DEBUG):
            wire_log.debug("%s", "".join(str(a) for a in args))

    def shutdown(self) -> None:
        pass


class SipThread:
    """Runs sippy's reactor in a thread of its own."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="maskline-sip", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failed is not None:
            raise self._failed

    def _run(self) -> None:
        try:
            # sippy is imported here, in this thread, never at maskline's import time.
            from elperiodic.ElPeriodic import ElPeriodic
            from sippy.Core.EventDispatcher import ED2

            _keep_the_gil()

            # ED2 wakes the thread that imported sippy; point its wake-up at this one.
            previous, ED2.elp = ED2.elp, None
            del previous
            ED2.elp = ElPeriodic(TICK_HZ)
            ED2.elp.CFT_enable(signal.SIGURG)
            ED2.bands = [(TICK_HZ, 0)]
            ED2.my_ident = threading.get_ident()
            ED2.tlisteners, ED2.twasted = [], 0
        except BaseException as exc:
            self._failed = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            ED2.loop()
        finally:
            # The handle must be freed in the thread that made it.
            handle, ED2.elp = ED2.elp, None
            del handle

    def call(self, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` in the SIP thread, without waiting."""
        from sippy.Core.EventDispatcher import ED2

        ED2.callFromThread(_guarded(fn), *args)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` in the SIP thread and wait for its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(result: T | None, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]

        def job() -> None:
            try:
                result = fn(*args)
            except BaseException as exc:
                loop.call_soon_threadsafe(settle, None, exc)
            else:
                loop.call_soon_threadsafe(settle, result, None)

        from sippy.Core.EventDispatcher import ED2

        ED2.callFromThread(job)
        return await future

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        from sippy.Core.EventDispatcher import ED2

        if self._thread is None:
            return
        ED2.callFromThread(ED2.breakLoop, 0)
        self._thread.join(5)
        self._thread = None


def _keep_the_gil() -> None:
    """Two things sippy does for every message give up the GIL, and a SIP thread that
    gives it up waits up to a switch interval to get it back while the engine's loop
    runs (py-spy, 100 calls/s: 7% of the SIP thread's time in the second alone):

    - its clock (``MonoTime``) is read through ctypes, which gives the GIL up for every
      call: read instead through ``time.clock_gettime``, same clock ids, which keeps it;
    - its default address for our URLs (``SipConf.my_address``) is the host's name
      resolved again (``gethostbyname(gethostname())``) whenever such a URL is written
      out without our socket's address: resolved once here instead, the same value.
    """
    import sippy.Time.MonoTime as monotime
    from sippy.SipConf import MyAddress, SipConf

    monotime.clock_getdtime = time.clock_gettime
    resolved = str(SipConf.my_address)

    class _Resolved(MyAddress):  # type: ignore[misc]
        def __str__(self) -> str:
            return resolved

    SipConf.my_address = _Resolved()


def _guarded(fn: Callable[..., object]) -> Callable[..., None]:
    def guarded(*args: object) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("SIP thread task failed")

    return guarded


@functools.lru_cache(maxsize=64)
def _is_ipv4(host: str) -> bool:
    """Whether ``host`` is an IPv4 address written as digits (sent to as it is)."""
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _check_free(host: str, port: int) -> None:
    """Fail with a clear OSError if the SIP address is taken, before sippy tries to bind
    it (sippy leaves the socket of a failed bind for the garbage collector)."""
    if port == 0:
        return
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.bind(address)


class SipEndpoint:
    """sippy's transaction manager bound to our SIP address. Build it in the SIP thread."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        advertise: str,
        on_request: Callable[[Any, Any], Any],
        from_trunk: Callable[[Any], bool],
    ) -> None:
        """Listen on ``host:port``; write ``advertise`` (MASKLINE_SIP_ADVERTISE, else the
        bind host) and the bound port in our Via sent-by, Contact and any other header
        sippy fills with "my address" (SPEC §10). ``on_request`` gets the requests of no
        dialog of ours; ``from_trunk`` tells whether a request's packet came from the
        trunk (in-dialog requests from elsewhere are dropped, see ``agents``)."""
        self.from_trunk = from_trunk
        from sippy.SipTransactionManager import SipTransactionManager
        from sippy.Udp_server import Udp_server, Udp_server_opts

        advertised = f"[{advertise}]" if ":" in advertise and "[" not in advertise else advertise

        class _OneWorker(Udp_server_opts):  # type: ignore[misc]
            nworkers = 1  # several sender threads could reorder our messages

        class _AdvertisedServer(Udp_server):  # type: ignore[misc]
            # sippy writes this address wherever a header holds "my address": behind NAT
            # the trunk must route responses (Via) and in-dialog requests (Contact) to the
            # public address, not to the private one we are bound to.
            def getSIPaddr(self) -> tuple[tuple[str, int], str]:
                (_bound, bound_port), transport = super().getSIPaddr()
                return (advertised, bound_port), transport

            # Until then (time.monotonic()) every message goes sippy's way.
            queued_until = 0.0

            def send_to(self, data: bytes | str, address: Any, delayed: bool = False) -> None:
                # sippy queues every message for a sender thread, which resolves the
                # address again and sends: one more hand-over of the GIL a message, on
                # the path of B's INVITE at A's answer. To an IPv4 address as digits it
                # goes from this thread at once. A socket that cannot take it now, a
                # host name (resolved there, never here) and IPv6 (its scope) go
                # sippy's way, and so does everything after them until the sender
                # thread has had time to send what it took (it may hold a message out
                # of its queue, retrying for up to 200 ms): nothing overtakes it.
                now = time.monotonic()
                if (
                    self.uopts.family == socket.AF_INET
                    and now >= self.queued_until
                    and self.sendqueue.empty()
                ):
                    payload = data.encode("utf-8") if isinstance(data, str) else data
                    try:
                        host, port = address
                        if isinstance(host, str) and _is_ipv4(host):
                            sent = self.skt.sendto(payload, socket.MSG_DONTWAIT, (host, port))
                            if sent == len(payload):
                                return
                    except (OSError, TypeError, ValueError):
                        pass
                self.queued_until = now + SENDER_HORIZON_SEC
                super().send_to(data, address, delayed)

        class _Manager(SipTransactionManager):  # type: ignore[misc]
            model_udp_server = (_AdvertisedServer, _OneWorker)

            def newTransaction(self, msg: Any, *args: Any, **kwargs: Any) -> Any:
                # sippy picks the socket by comparing the target's transport with "udp"
                # as written, and raises for anything else; the target comes from a URI
                # the peer wrote (Contact, Record-Route), where RFC 3261 §19.1.4 makes
                # ";transport=UDP" the same as "udp" (SIPp and some trunks write it so).
                # Lowered on our own requests only, here: sippy's URI parsing is left as
                # it is for everyone else in the process, and the URIs are sent back as
                # the peer wrote them.
                address, transport = msg.getTarget()
                if isinstance(transport, str) and transport != transport.lower():
                    msg.setTarget((address, transport.lower()))
                return super().newTransaction(msg, *args, **kwargs)

        self.config: dict[str, Any] = {
            "_sip_address": host,
            "_sip_port": port,
            "_sip_logger": _WireLog(),
        }
        self._on_request = on_request
        _check_free(host, port)
        with warnings.catch_warnings():
            # sippy's local-address probe leaves an IPv6 socket for the GC.
            warnings.simplefilter("ignore", ResourceWarning)
            self.config["_sip_tm"] = _Manager(self.config, self._request)

    def _request(self, req: Any, transaction: Any) -> Any:
        try:
            return self._on_request(req, transaction)
        except Exception:
            log.exception("SIP request handling failed")
            return (req.genResponse(500, "Server Internal Error"), None, None)

    def shutdown(self) -> None:
        self.config["_sip_tm"].shutdown()
