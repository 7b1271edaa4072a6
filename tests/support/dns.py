"""A real local DNS server (UDP) whose answers a test sets and changes: what
``MASKLINE_WEBHOOK_NAMESERVERS`` points the worker at to see a DNS change."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class DnsServer:
    """Answers A and AAAA questions from ``records`` (name → addresses), each with
    ``ttl``; any other name is NXDOMAIN. ``questions`` counts what was asked."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.ttl = 1
        self.questions = 0
        self._lock = threading.Lock()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.1)
        self.port: int = self._socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def answer(self, name: str, *addresses: str, ttl: int = 1) -> None:
        with self._lock:
            self.records[name.rstrip(".").lower()] = list(addresses)
            self.ttl = ttl

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._socket.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            with self._lock:
                self.questions += 1
                for question in query.question:
                    name = question.name.to_text().rstrip(".").lower()
                    if name not in self.records:
                        response.set_rcode(dns.rcode.NXDOMAIN)
                        continue
                    kind = "AAAA" if question.rdtype == dns.rdatatype.AAAA else "A"
                    wanted = [a for a in self.records[name] if (":" in a) == (kind == "AAAA")]
                    if wanted and question.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                        response.answer.append(
                            dns.rrset.from_text_list(
                                question.name, self.ttl, dns.rdataclass.IN, kind, wanted
                            )
                        )
            self._socket.sendto(response.to_wire(), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()


@contextmanager
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer()
    try:
        yield server
    finally:
        server.close()
