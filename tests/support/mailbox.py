"""A real local SMTP server (aiosmtpd) that keeps what it receives."""

from __future__ import annotations

import email
import email.policy
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.server import free_port
from tests.support.waits import eventually_blocking

LINK = re.compile(r"https?://\S+")


@dataclass
class Mailbox:
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.messages.append(message)
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]

    def link_to(self, address: str, subject_part: str, *, within: float = 20) -> str:
        """The link of the newest message to ``address`` whose subject has ``subject_part``."""

        def found() -> list[EmailMessage]:
            return [m for m in self.to(address) if subject_part in str(m["Subject"])]

        messages = eventually_blocking(found, what=f"a mail to {address}", within=within)
        body = messages[-1].get_content()
        links = LINK.findall(body)
        assert len(links) == 1, body
        return str(links[0])


@contextmanager
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox(port=free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
