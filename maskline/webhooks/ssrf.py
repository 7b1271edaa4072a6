"""Where a webhook may be sent (SPEC §6): the URL's rules, and only to global unicast
addresses. Every URL (the endpoint's, a call's ``webhook_url``) is checked here, when
it is given and again before each attempt.

The URL's host is resolved once, every address is checked, and the request
then goes to the checked address (with the original Host and TLS name), so a
DNS answer that changes between the check and the connection (rebinding)
cannot send it elsewhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from maskline.errors import InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


class RefusedDestination(InvalidRequest):
    """The URL points somewhere webhooks may not go."""


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL's syntax rules of SPEC §6 (https, a host, no userinfo); the DNS-free half
    of ``resolve``, for input checks that must answer before anything is looked up."""
    if len(url) > MAX_URL_LENGTH:
        raise RefusedDestination("webhook_url must be at most 2048 characters.")
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


async def resolve(url: str, *, allow_private: bool) -> Destination:
    """Check ``url`` (``check_url``) and every address its host resolves to; pick the
    one to connect to."""
    parts = urlsplit(check_url(url, allow_private=allow_private))
    host = parts.hostname
    assert host  # check_url refuses a URL without one
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (socket.gaierror, UnicodeError):
        raise RefusedDestination(f"webhook_url host {host!r} does not resolve.") from None
    addresses: list[IPAddress] = []
    for info in infos:
        raw = str(info[4][0]).split("%", 1)[0]
        addresses.append(ipaddress.ip_address(raw))
    if not addresses:
        raise RefusedDestination(f"webhook_url host {host!r} does not resolve.")
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise RefusedDestination(
                    f"webhook_url must not point to a private or reserved address ({address})."
                )
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    return Destination(
        url=url,
        host=host,
        address=str(addresses[0]),
        port=port,
        scheme=parts.scheme,
        target=target,
    )
