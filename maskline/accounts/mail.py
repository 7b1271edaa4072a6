"""Portal mail (SPEC §10): through a real SMTP client to ``MASKLINE_SMTP_URL``; without
one, the message is written to the log (the links are how a local install signs in)."""

from __future__ import annotations

import ipaddress
import logging
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib

from maskline.settings import Settings

log = logging.getLogger("maskline.mail")
SEND_TIMEOUT_SEC = 30


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self._url = settings.smtp_url
        self._sender = settings.mail_from

    async def send(self, to: str, subject: str, body: str) -> None:
        """Send one plain-text message. A failure is logged (never the body: it holds
        a link that signs in) and not raised: the page answers as if it was sent, so
        a mail problem does not tell anyone whether the address has an account."""
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        if self._url is None:
            log.info("portal mail (MASKLINE_SMTP_URL unset) to %s: %s\n%s", to, subject, body)
            return
        url = urlsplit(self._url)
        host = url.hostname or "localhost"
        implicit_tls = url.scheme == "smtps"
        try:
            await aiosmtplib.send(
                message,
                hostname=host,
                port=url.port or (465 if implicit_tls else 587),
                username=unquote(url.username) if url.username else None,
                password=unquote(url.password) if url.password else None,
                use_tls=implicit_tls,
                # smtp://: STARTTLS, required but towards a loopback relay (docs/decisions.md).
                start_tls=False if implicit_tls else (None if _is_loopback(host) else True),
                timeout=SEND_TIMEOUT_SEC,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.error("portal mail to %s could not be sent: %s", to, type(exc).__name__)


def invitation(org_name: str, role: str, link: str, *, by: str) -> tuple[str, str]:
    """The subject and body of the mail that brings an invited member in."""
    return (
        f"You are invited to {org_name} on maskline",
        f"{by} added you to {org_name} on maskline as {role}.\n\n"
        f"Sign in with this link (it works once, for 24 hours):\n\n{link}\n\n"
        "Then set a password on your Account page.\n",
    )
