"""Where a webhook may be sent (SPEC §6): the URL's rules, and only to global unicast
addresses. Every URL (the endpoint's, a call's ``webhook_url``) is checked here, when
it is given and again before each attempt.

The URL's host is resolved, every address is checked, and the request then goes
to the checked address (with the original Host and TLS name), so a DNS answer
that changes between the check and the connection (rebinding) cannot send it
elsewhere. The worker keeps each host's answer for its TTL (``HostResolver``), but
the addresses are checked again at every attempt, and a changed answer is checked
before anything connects to it.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
from cachetools import TLRUCache

from maskline.errors import InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048

# How long an answer of the system resolver (which gives no TTL) is kept, and the most
# any answer is kept whatever its TTL.
SYSTEM_TTL_SEC = 30.0
MAX_TTL_SEC = 300.0
CACHED_HOSTS = 4096
LOOKUP_TIMEOUT_SEC = 5.0

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


class RefusedDestination(InvalidRequest):
    """The URL points somewhere webhooks may not go."""


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL's syntax rules of SPEC §6 (https, a host, no userinfo); the DNS-free half
    of ``resolve``, for input checks that must answer before anything is looked up."""
    if len(url) > MAX_URL_LENGTH:
        raise RefusedDestination("webhook_url must be at most 2048 characters.")
    if len(url.encode()) > MAX_URL_LENGTH:
        # Stored in the delivery indexes, whose entries PostgreSQL caps at 2,704 bytes.
        raise RefusedDestination("webhook_url must be at most 2048 bytes in UTF-8.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise RefusedDestination("webhook_url is not a valid URL.") from None
    allowed = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in allowed:
        raise RefusedDestination("webhook_url must be an https URL.")
    if not parts.hostname:
        raise RefusedDestination("webhook_url must name a host.")
    if parts.username is not None or parts.password is not None:
        raise RefusedDestination("webhook_url must not contain a user name or password.")
    if port == 0:
        raise RefusedDestination("webhook_url has an invalid port.")
    return url


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries: IPv4-mapped, 6to4, NAT64 or Teredo."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.teredo is not None:
        return address.teredo[1]
    return None


# Remembered per address: a pure function of it, asked of every address of the answer at
# every attempt, and ``is_global`` alone tests the address against some twenty networks.
@functools.lru_cache(maxsize=CACHED_HOSTS)
def is_public(address: IPAddress) -> bool:
    """Global unicast, and not a form that smuggles in a non-global IPv4 address."""
    if address.is_multicast or address.is_reserved or address.is_unspecified:
        return False
    if not address.is_global:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64_LOCAL:
            return False
        inner = embedded_ipv4(address)
        if inner is not None:
            return is_public(inner)
    return True


@dataclass(frozen=True, slots=True)
class Destination:
    """A checked URL: where to connect, and what to call the host in HTTP and TLS."""

    url: str
    host: str
    address: str
    port: int
    scheme: str
    target: str  # path and query

    @property
    def connect_url(self) -> str:
        literal = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{literal}:{self.port}{self.target}"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


class HostResolver:
    """Webhook hosts to addresses, each answer kept for its TTL (at most
    ``MAX_TTL_SEC``; ``SYSTEM_TTL_SEC`` for the system resolver, which gives none).

    ``nameservers`` (``MASKLINE_WEBHOOK_NAMESERVERS``), when given, are asked over DNS
    for A and AAAA records instead of the system resolver (``getaddrinfo``, which also
    reads ``/etc/hosts``). ``now`` is the clock the TTLs run on, in seconds. Only
    answers are kept: a name that does not resolve is asked again next time.
    """

    def __init__(
        self, *, now: Callable[[], float], nameservers: Sequence[tuple[str, int]] = ()
    ) -> None:
        self._cache: TLRUCache[str, tuple[tuple[IPAddress, ...], float]] = TLRUCache(
            maxsize=CACHED_HOSTS, ttu=lambda _host, value, at: at + value[1], timer=now
        )
        self._dns: dns.asyncresolver.Resolver | None = None
        if nameservers:
            self._dns = dns.asyncresolver.Resolver(configure=False)
            self._dns.nameservers = [
                dns.nameserver.Do53Nameserver(address, port) for address, port in nameservers
            ]
            self._dns.lifetime = LOOKUP_TIMEOUT_SEC

    async def lookup(self, host: str, port: int) -> tuple[IPAddress, ...]:
        """Every address ``host`` has now (from the cache while its answer is fresh)."""
        cached = self._cache.get(host)
        if cached is not None:
            return cached[0]
        if self._dns is None:
            addresses, ttl = await _system_lookup(host, port), SYSTEM_TTL_SEC
        else:
            addresses, ttl = await self._dns_lookup(self._dns, host)
        if addresses and ttl > 0:
            self._cache[host] = (addresses, min(ttl, MAX_TTL_SEC))
        return addresses

    @staticmethod
    async def _dns_lookup(
        resolver: dns.asyncresolver.Resolver, host: str
    ) -> tuple[tuple[IPAddress, ...], float]:
        try:
            name = dns.name.from_text(host)
        except dns.exception.DNSException:
            return (), 0.0
        addresses: list[IPAddress] = []
        ttls: list[int] = []
        for kind in (dns.rdatatype.A, dns.rdatatype.AAAA):
            try:
                answer = await resolver.resolve(name, kind, search=False)
            except dns.exception.DNSException:
                continue
            if answer.rrset is not None:
                ttls.append(answer.rrset.ttl)
                addresses.extend(ipaddress.ip_address(r.address) for r in answer.rrset)
        return tuple(addresses), float(min(ttls, default=0))


async def _system_lookup(host: str, port: int) -> tuple[IPAddress, ...]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (socket.gaierror, UnicodeError):
        return ()
    return tuple(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos)


@dataclass(frozen=True, slots=True)
class _Parts:
    """What ``resolve`` needs of a URL that passed ``check_url``."""

    scheme: str
    host: str
    port: int
    target: str  # path and query
    literal: IPAddress | None  # the host, when it is an IP address


# Remembered per URL: an endpoint's URL is parsed the same way at every attempt.
@functools.lru_cache(maxsize=CACHED_HOSTS)
def _parts(url: str, *, allow_private: bool) -> _Parts:
    parts = urlsplit(check_url(url, allow_private=allow_private))
    host = parts.hostname
    assert host  # check_url refuses a URL without one
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return _Parts(parts.scheme, host, port, target, literal)


async def resolve(
    url: str, *, allow_private: bool, resolver: HostResolver | None = None
) -> Destination:
    """Check ``url`` (``check_url``) and every address its host resolves to (through
    ``resolver``'s cache when given); pick the one to connect to."""
    parts = _parts(url, allow_private=allow_private)
    host, port = parts.host, parts.port
    if parts.literal is not None:
        addresses: Sequence[IPAddress] = (parts.literal,)
    elif resolver is not None:
        addresses = await resolver.lookup(host, port)
    else:
        addresses = await _system_lookup(host, port)
    if not addresses:
        raise RefusedDestination(f"webhook_url host {host!r} does not resolve.")
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise RefusedDestination(
                    f"webhook_url must not point to a private or reserved address ({address})."
                )
    return Destination(
        url=url,
        host=host,
        address=str(addresses[0]),
        port=port,
        scheme=parts.scheme,
        target=parts.target,
    )
