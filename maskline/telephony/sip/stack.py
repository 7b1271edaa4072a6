"""The SIP stack (PyPI ``sippy``) on the engine's loop, behind a narrow adapter.

sippy's reactor (ED2) is a process-wide singleton built at import time. Here it
runs on the engine's asyncio loop (``SipLoop``): the loop reads the SIP socket and
runs sippy's timers, and every sippy object is created and touched only on the
loop's thread. The carrier asks for work with ``SipLoop.call``/``run``, and legs
report back with immutable ``UacEvent``s. See docs/decisions.md for the trial that
chose sippy and the things adapted here.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import heapq
import ipaddress
import logging
import socket
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from maskline.telephony.events import Dialog

log = logging.getLogger("maskline.sip")
wire_log = logging.getLogger("maskline.sip.wire")

T = TypeVar("T")
# Datagrams read from the socket in one callback before the loop's other work gets its
# turn (the rest are read in the next pass). Measured at 100 calls/s: 8 a callback
# doubled the connect's p50 (54-60 ms against 26-29 ms) by putting the loop's other
# callbacks between a burst's datagrams.
READ_BURST = 64
# sippy's timers are set on the loop this much after they are due (the loop's timers may
# fire up to a millisecond early, and one that finds nothing due would be set again).
TIMER_SLACK_SEC = 0.001
# How long sippy's sender thread may hold a message it took from its queue: 20 tries
# 10 ms apart on a full socket, and the address resolved first.
SENDER_HORIZON_SEC = 0.5


@dataclass(frozen=True, slots=True)
class UacEvent:
    """What happened to a leg, as plain data. ``kind``: ring, connect, fail, bye, update,
    dead (and for a call to a pool number: offer, acked). ``then``, on a connect: the leg
    that follows it, already dialled (``agents.Uac``), a handle only the SIP stack uses;
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


class SipLoop:
    """Runs sippy on the engine's asyncio loop: its socket read by the loop, its timers
    set on the loop, every sippy object touched only on the loop's thread.

    sippy's own event loop (``ED2.loop``) needs a thread of its own, beside which it
    reads the socket in another thread and hands each datagram over through a C library
    (ElPeriodic) that wakes 200 times a second. In one process those threads take the
    GIL from the engine's loop in turn: at 100 calls/s every hand-over waited for a busy
    loop, and A's 200 OK waited in the socket tens of milliseconds before B's INVITE
    could go (docs/decisions.md). On the loop there is no hand-over: a datagram is read
    and answered in one callback.
    """

    # The one started in this process (sippy's ED2 is one a process too), which the
    # server sippy builds registers its socket with.
    running: ClassVar[SipLoop | None] = None

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._servers: dict[int, Any] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._ident = 0
        # sippy's event dispatcher, clock and address class, once started (sippy is
        # imported then, never at maskline's import time).
        self._ed2: Any = None
        self._clock: Any = None
        self._address: Any = None

    def start(self) -> None:
        """Make the running loop sippy's (call on the loop)."""
        from sippy.Core.EventDispatcher import ED2
        from sippy.Network_server import Remote_address
        from sippy.Time.MonoTime import MonoTime

        if SipLoop.running is not None:
            # sippy's timers, its hand-in from threads and its socket are one a process.
            raise RuntimeError("a SIP stack already runs in this process")
        _adapt_sippy()
        self._loop = asyncio.get_running_loop()
        self._ed2, self._clock, self._address = ED2, MonoTime, Remote_address
        # sippy's loop and its calls from threads ran on ElPeriodic: not used.
        previous, ED2.elp = ED2.elp, None
        del previous
        self._ident = ED2.my_ident = threading.get_ident()
        ED2.tlisteners, ED2.twasted, ED2.endloop = [], 0, False
        ED2.callFromThread = self.call  # sippy's threads (its sender) call in through it
        SipLoop.running = self

    def call(self, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` on the loop soon, without waiting (from any thread). Calls run
        in the order they were asked for; ``run`` runs at once, ahead of any still queued."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the SIP stack is not running")
        if threading.get_ident() == self._ident:
            loop.call_soon(self._now, fn, args)
        else:
            loop.call_soon_threadsafe(self._now, fn, args)

    def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` now, on the loop, and return its result."""
        try:
            return fn(*args)
        finally:
            self._pump()

    @property
    def alive(self) -> bool:
        """Started, not stopped, and reading its socket."""
        return self._loop is not None and bool(self._servers)

    def stop(self) -> None:
        ED2 = self._ed2
        if self._loop is None:
            return
        for fd in list(self._servers):
            self._forget(fd)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        ED2.tlisteners, ED2.twasted = [], 0
        with contextlib.suppress(AttributeError):
            del ED2.callFromThread  # sippy's own again: it fails, as nothing runs
        SipLoop.running = None
        self._loop = None

    # -- sippy's side --------------------------------------------------------------

    def watch(self, server: Any) -> None:
        """Read ``server``'s socket (a sippy ``Udp_server`` started without receivers)."""
        assert self._loop is not None
        fd = server.skt.fileno()
        self._servers[fd] = server
        self._loop.add_reader(fd, self._readable, fd)

    def unwatch(self, server: Any) -> None:
        for fd, watched in list(self._servers.items()):
            if watched is server:
                self._forget(fd)

    def _forget(self, fd: int) -> None:
        self._servers.pop(fd, None)
        if self._loop is not None:
            self._loop.remove_reader(fd)

    def _now(self, fn: Callable[..., object], args: tuple[object, ...]) -> None:
        if self._loop is None:
            return  # stopped since it was asked for: sippy's objects are shut down
        try:
            fn(*args)
        except Exception:
            log.exception("SIP task failed")
        self._pump()

    def _readable(self, fd: int) -> None:
        server = self._servers.get(fd)
        if server is None:
            return
        for _ in range(READ_BURST):
            try:
                data, address = server.skt.recvfrom(8192, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                # As sippy's receiver did: a socket that is gone is let go; any other
                # error (ENOBUFS, say) loses that datagram only.
                log.exception("cannot read the SIP socket")
                if exc.errno in (errno.EBADF, errno.ENOTSOCK):
                    self._forget(fd)
                break
            rtime = self._clock()
            if server.uopts.family == socket.AF_INET6:
                address = (f"[{address[0]}]", address[1])
            # sippy's handle_read logs what its callback raises.
            server.handle_read(data, self._address(address, server.transport), rtime)
        self._pump()

    def _pump(self) -> None:
        """Run sippy's due timers, then set the loop's timer for its next one."""
        if self._loop is None:
            return
        ED2, MonoTime = self._ed2, self._clock
        ED2.last_ts = MonoTime()
        ED2.dispatchTimers()
        if ED2.twasted * 2 > len(ED2.tlisteners):
            # As sippy's loop does: drop cancelled timers once they are half the heap.
            ED2.tlisteners = [t for t in ED2.tlisteners if t.cb_func is not None]
            heapq.heapify(ED2.tlisteners)
            ED2.twasted = 0
        if not ED2.tlisteners:
            return
        due = max(0.0, ED2.tlisteners[0].etime - MonoTime())
        at = self._loop.time() + due + TIMER_SLACK_SEC
        if self._timer is not None and not self._timer.cancelled():
            if self._timer_at <= at:
                return  # it comes first, and pumps again then
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._pump()


# sippy's modules that ask ``'my' in dir(x)`` (is ``x`` a placeholder for our own
# address, port or transport?), and only that, of ``dir``.
_ASKS_DIR_FOR_MY = (
    "SdpOrigin",
    "SipConf",
    "SipTransactionManager",
    "SipURL",
    "SipVia",
    "SipWWWAuthenticate",
)
_MY = ("my",)
_NOT_MY = ()


def _my_marker(obj: object) -> tuple[str, ...]:
    """``dir`` as those modules use it: ``'my'`` is in it exactly when ``obj`` has the
    attribute (sippy's ``MyAddress``, ``MyPort`` and ``MyTransport`` have it as a class
    attribute; the strings and ints that stand for real values do not)."""
    return _MY if hasattr(obj, "my") else _NOT_MY


def _adapt_sippy() -> None:
    """Three things sippy does for every message cost far more than they need to:

    - its clock (``MonoTime``) is read through ctypes, which gives the GIL up for every
      call: read instead through ``time.clock_gettime``, same clock ids, which keeps it;
    - its default address for our URLs (``SipConf.my_address``) is the host's name
      resolved again (``gethostbyname(gethostname())``) whenever such a URL is written
      out without our socket's address: resolved once here instead, the same value;
    - writing a URL, a Via or an SDP origin out asks ``'my' in dir(x)`` for its host,
      port and transport: ``dir`` lists and sorts every attribute of an int or a str
      (about 10 µs), a few dozen times a message. Those modules get ``_my_marker``
      instead, the same answer (py-spy on the engine at 100 calls/s: about 16% of its
      samples under the socket's read callback were in them; the engine's CPU went from
      57–58% to 52–54% of a core).

    The first two were measured when sippy ran in a thread of its own (py-spy, 100
    calls/s: 7% of that thread's time in the second alone).
    """
    import importlib

    import sippy.Time.MonoTime as monotime
    from sippy.SipConf import MyAddress, SipConf

    monotime.clock_getdtime = time.clock_gettime
    for name in _ASKS_DIR_FOR_MY:
        importlib.import_module(f"sippy.{name}").dir = _my_marker  # type: ignore[attr-defined]
    resolved = str(SipConf.my_address)

    class _Resolved(MyAddress):  # type: ignore[misc]
        def __str__(self) -> str:
            return resolved

    SipConf.my_address = _Resolved()


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
    """sippy's transaction manager bound to our SIP address. Build it with ``SipLoop.run``."""

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
        from sippy.Udp_server import AsyncSender, Udp_server, Udp_server_opts

        advertised = f"[{advertise}]" if ":" in advertise and "[" not in advertise else advertise

        class _OneWorker(Udp_server_opts):  # type: ignore[misc]
            # No receiver thread: the loop reads the socket (``SipLoop``). The one
            # sender thread is started by the server below (several could reorder our
            # messages).
            nworkers = 0

        running = SipLoop.running
        assert running is not None, "build the endpoint on the SIP stack's loop"
        reactor: SipLoop = running

        class _AdvertisedServer(Udp_server):  # type: ignore[misc]
            def __init__(self, global_config: Any, uopts: Any) -> None:
                super().__init__(global_config, uopts)
                self.asenders.append(AsyncSender(self))
                reactor.watch(self)

            def shutdown(self) -> None:
                reactor.unwatch(self)
                super().shutdown()

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
                    except (OSError, TypeError, ValueError, OverflowError):
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
