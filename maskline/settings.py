"""The one typed settings object. Built once at the edge and passed in.

Every value is parsed and checked here, when the settings are loaded: a bad one stops
the process at start with one line naming its variable (``load_settings``), not a call
that fails later. The rest of the code gets typed values and never parses them again.
"""

from __future__ import annotations

import ipaddress
import string
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Literal, NamedTuple
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    AnyUrl,
    BeforeValidator,
    Field,
    IPvAnyAddress,
    PlainSerializer,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from maskline.errors import ConfigurationError

ENV_PREFIX = "MASKLINE_"
DEFAULT_SIP_PORT = 5060
# RTP below 1024 would need root; RTCP takes the odd port above each even RTP port.
RTP_PORT_MIN, RTP_PORT_MAX = 1024, 65535
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _unset_if_empty(value: object) -> object:
    # ``MASKLINE_X=`` (an empty line in a .env or a compose file) meant "unset" before
    # these values were typed, as it does for the secret key: it still does.
    return None if value == "" else value


def database_url(value: str | URL) -> URL:
    """A SQLite or PostgreSQL URL (SPEC §10) with its async driver chosen for it;
    ``ValueError`` for anything else. The errors never quote the URL: it may carry a
    password."""
    try:
        url = make_url(value)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ValueError("must be a URL, like sqlite:///./maskline.db") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+asyncpg")
    raise ValueError(f"must be a sqlite:// or postgresql:// URL, not {backend}://")


class HostPort(NamedTuple):
    host: str
    port: int


def _host_port(
    value: object, *, ip_only: bool, min_port: int, default_port: int = DEFAULT_SIP_PORT
) -> object:
    """``host[:port]`` or ``[v6]:port`` → ``HostPort`` (``default_port`` when not given)."""
    if not isinstance(value, str):
        return value
    value = value.strip()
    shape = "an IP address" if ip_only else "a host name or IP address"
    wanted = f"must be {shape} with an optional :port ([v6]:port for IPv6), not {value!r}"
    try:
        parts = urlsplit(f"//{value}")
        port = parts.port
    except ValueError:
        raise ValueError(wanted) from None
    host = parts.hostname
    if not host or parts.path or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(wanted)
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        if ip_only or not _is_host_name(host) or "[" in value:
            raise ValueError(wanted) from None
    if port is None:
        port = default_port
    if not min_port <= port <= 65535:
        raise ValueError(f"the port must be within {min_port}-65535, not {port}")
    return HostPort(host, port)


def _is_host_name(name: str) -> bool:
    """RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens."""
    labels = name.rstrip(".").split(".")
    allowed = set(string.ascii_letters + string.digits + "-")
    return len(name) <= 253 and all(
        0 < len(label) <= 63 and set(label) <= allowed and label[0] != "-" and label[-1] != "-"
        for label in labels
    )


# Where we listen: an address of ours (port 0: any free port).
BindAddress = Annotated[
    HostPort, BeforeValidator(lambda v: _host_port(v, ip_only=True, min_port=0))
]
# The trunk: a name (resolved once at start) or an address.
TrunkAddress = Annotated[
    HostPort, BeforeValidator(lambda v: _host_port(v, ip_only=False, min_port=1))
]


class PortRange(NamedTuple):
    """``MASKLINE_RTP_PORTS``: ``low-high``, both ends included."""

    low: int
    high: int

    @property
    def even_ports(self) -> range:
        """The even (RTP) ports of the range whose odd neighbour (RTCP) is in it too."""
        return range(self.low + self.low % 2, self.high, 2)


_PORT_RANGE = (
    f"must be a range of ports within {RTP_PORT_MIN}-{RTP_PORT_MAX} holding at least one "
    "even port and the odd one above it, like 20000-29999, not {!r}"
)


def _split_port_range(value: object) -> object:
    if not isinstance(value, str):
        return value
    low, sep, high = (part.strip() for part in value.partition("-"))
    if not (sep and low.isascii() and low.isdecimal() and high.isascii() and high.isdecimal()):
        raise ValueError(_PORT_RANGE.format(value))
    return (int(low), int(high))


def _check_port_range(ports: PortRange) -> PortRange:
    if not (ports.low >= RTP_PORT_MIN and ports.high <= RTP_PORT_MAX and ports.even_ports):
        raise ValueError(_PORT_RANGE.format(f"{ports.low}-{ports.high}"))
    return ports


RtpPorts = Annotated[
    PortRange, BeforeValidator(_split_port_range), AfterValidator(_check_port_range)
]


def _network(value: object) -> object:
    # An address with host bits ("10.0.0.5/24") has always meant its network.
    if not isinstance(value, str):
        return value
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{value.strip()!r} is not an IP address or CIDR") from None


def _networks(value: object) -> object:
    if isinstance(value, str):
        return tuple(entry for entry in value.split(",") if entry.strip())
    return value


# DNS servers for webhook hosts: IP addresses, with an optional port (53).
Nameservers = Annotated[
    tuple[
        Annotated[
            HostPort,
            BeforeValidator(lambda v: _host_port(v, ip_only=True, min_port=1, default_port=53)),
        ],
        ...,
    ],
    BeforeValidator(_networks),
]

ProxyNetworks = Annotated[
    tuple[Annotated[IPv4Network | IPv6Network, BeforeValidator(_network)], ...],
    BeforeValidator(_networks),
]


def _sql_url(value: object) -> object:
    if isinstance(value, str | URL):
        return database_url(value)
    return value


DatabaseUrl = Annotated[
    URL,
    BeforeValidator(_sql_url),
    # A dump is the URL itself (a round trip must keep the password); repr() hides it.
    PlainSerializer(lambda url: url.render_as_string(hide_password=False), return_type=str),
]


def _http_url(value: str) -> str:
    """An absolute http(s) URL that paths are appended to, kept as written but for a
    trailing slash (the recording URLs are ``{MASKLINE_PUBLIC_URL}/v1/…``)."""
    wanted = f"must be an http:// or https:// URL without a query or fragment, not {value!r}"
    try:
        url = AnyHttpUrl(value)
    except ValidationError:
        raise ValueError(wanted) from None
    if url.query is not None or url.fragment is not None:
        raise ValueError(wanted)
    return value.rstrip("/")


def _redis_url(value: str) -> str:
    """A URL the Redis client takes: it reads any scheme but unix:// as TCP, and an
    unreadable database number as 0, so both are checked here. The value is not quoted
    in the errors: it may carry a password."""
    try:
        url = AnyUrl(value)
    except ValidationError:
        raise ValueError("must be a redis://, rediss:// or unix:// URL") from None
    if url.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    if url.scheme != "unix" and not url.host:
        raise ValueError("must name the Redis host, like redis://host:6379/0")
    database = (url.path or "").strip("/")
    if url.scheme != "unix" and database and not database.isdecimal():
        raise ValueError(
            f"the database must be a number, like redis://host:6379/0, not {database!r}"
        )
    return value


def _smtp_url(value: str) -> str:
    """``smtp://[user:pass@]host[:port]`` (STARTTLS) or ``smtps://…``; the value is not
    quoted in the errors: it may carry a password."""
    wanted = "must be an smtp:// or smtps:// URL, like smtp://user:pass@mail.example.com:587"
    try:
        url = AnyUrl(value)
    except ValidationError:
        raise ValueError(wanted) from None
    if url.scheme not in ("smtp", "smtps") or not url.host:
        raise ValueError(wanted)
    return value


def _number_format(placeholder: str) -> AfterValidator:
    """A ``str.format`` template with ``{placeholder}`` and no other field."""

    def check(value: str) -> str:
        wanted = f"must contain {{{placeholder}}} and no other {{field}}, not {value!r}"
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
            value.format_map({placeholder: "0"})
        except (ValueError, KeyError, IndexError, AttributeError):
            raise ValueError(wanted) from None
        if fields != {placeholder}:
            raise ValueError(wanted)
        return value

    return AfterValidator(check)


def _state_code(value: str) -> str:
    if not (len(value) == 2 and value.isdecimal() and value.isascii()):
        raise ValueError(f"must be a two-digit GST state code, like 24, not {value!r}")
    return value


def _checkout_site_dir() -> Path:
    """``site/`` of the checkout this package runs from (where ``make docs`` builds)."""
    return Path(__file__).resolve().parents[1] / "site"


def _log_level(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # Every value comes as the string it was written as: the types below parse it
        # (a list-typed value would otherwise have to be written as JSON).
        enable_decoding=False,
    )

    database_url: DatabaseUrl = Field(default="sqlite:///./maskline.db")  # type: ignore[assignment]
    redis_url: Annotated[
        Annotated[str, AfterValidator(_redis_url)] | None, BeforeValidator(_unset_if_empty)
    ] = None
    secret_key: str | None = Field(default=None, repr=False)
    carrier: Literal["sim", "sip"] = "sim"
    sandbox: bool = False
    public_url: Annotated[str, AfterValidator(_http_url)] = "http://127.0.0.1:8000"
    data_dir: Path = Path("./data")
    # The documentation site built by `make docs`, served at /docs/guide/ when present.
    docs_site_dir: Path = Field(default_factory=_checkout_site_dir)

    ring_timeout_sec: int = Field(default=30, ge=1, le=600)
    sim_ring_sec: float = Field(default=2.0, ge=0)
    sim_talk_sec: float = Field(default=20.0, ge=0)
    call_max_lifetime_sec: int = Field(default=7500, ge=60)
    shutdown_grace_sec: float = Field(default=0.0, ge=0)
    recording_retention_days: int | None = Field(default=None, ge=1)
    call_retention_days: int | None = Field(default=None, ge=1)

    allow_private_webhooks: bool = False
    metrics_token: str | None = Field(default=None, repr=False)
    # Addresses or CIDRs, comma-separated, whose X-Forwarded-For gives the client address.
    trusted_proxies: Annotated[ProxyNetworks, BeforeValidator(lambda v: v or ())] = ()
    # DNS servers (comma-separated ``ip[:port]``) that webhook hosts are resolved with;
    # unset: the system's resolver.
    webhook_nameservers: Annotated[Nameservers, BeforeValidator(lambda v: v or ())] = ()
    # CA certificates (a PEM file) trusted for webhook receivers besides the usual ones
    # (certifi's): a private CA, or a test receiver's own certificate.
    webhook_ca_file: Path | None = None

    provider_state_code: Annotated[str, AfterValidator(_state_code)] = "24"
    provider_gstin: str | None = None
    provider_name: str | None = None
    provider_address: str | None = None
    invoice_sac: str = "9984"

    # Request budgets (SPEC §7): per key per minute, moving window.
    rate_limit_per_minute: int = Field(default=100, ge=1)
    call_status_rate_limit_per_minute: int = Field(default=600, ge=1)
    auth_failure_limit_per_minute: int = Field(default=60, ge=1)
    # SPEC §3: how long a request waits for another with its Idempotency-Key before 409.
    idempotency_wait_sec: float = Field(default=10.0, gt=0, le=60)

    sip_trunk: Annotated[TrunkAddress | None, BeforeValidator(_unset_if_empty)] = None
    sip_username: str | None = None
    sip_password: str | None = Field(default=None, repr=False)
    sip_bind: BindAddress = HostPort("0.0.0.0", DEFAULT_SIP_PORT)  # noqa: S104 (SPEC §10)
    # Written in Contact, Via and SDP; the bind host when unset.
    sip_advertise: Annotated[IPvAnyAddress | None, BeforeValidator(_unset_if_empty)] = None
    sip_dial_format: Annotated[str, _number_format("number")] = "+91{number}"
    sip_caller_format: Annotated[str, _number_format("masked")] = "+{masked}"
    sip_max_cps: int = Field(default=50, ge=1)
    # The SIP stack and the RTP relay in a process of their own, beside the engine
    # (telephony/sip/process.py), at this real-time priority (SCHED_RR 1-99; 0: none).
    sip_process: bool = False
    sip_realtime_priority: int = Field(default=0, ge=0, le=99)
    rtp_ports: RtpPorts = PortRange(20000, 29999)
    rtp_timeout_sec: int = Field(default=30, ge=1)
    # How long an engine's claim on a call lasts unrenewed: a dead engine's calls are
    # ended by another engine this long after its last heartbeat (every sixth of it).
    engine_lease_sec: int = Field(default=30, ge=6, le=600)

    log_level: Annotated[LogLevel, BeforeValidator(_log_level)] = "INFO"

    # The customer portal (SPEC §12). Sign-up: unset means open on the embedded SQLite
    # install, invite otherwise (``signup_mode``).
    signup: Annotated[
        Literal["open", "invite", "closed"] | None, BeforeValidator(_unset_if_empty)
    ] = None
    smtp_url: Annotated[
        Annotated[str, AfterValidator(_smtp_url)] | None, BeforeValidator(_unset_if_empty)
    ] = Field(default=None, repr=False)
    mail_from: str = "maskline <noreply@localhost>"

    # Razorpay (SPEC §13): unset credentials leave payments off (the portal says so).
    razorpay_key_id: Annotated[str | None, BeforeValidator(_unset_if_empty)] = None
    razorpay_key_secret: Annotated[str | None, BeforeValidator(_unset_if_empty)] = Field(
        default=None, repr=False
    )
    razorpay_webhook_secret: Annotated[str | None, BeforeValidator(_unset_if_empty)] = Field(
        default=None, repr=False
    )
    razorpay_api_url: Annotated[str, AfterValidator(_http_url)] = "https://api.razorpay.com"
    razorpay_checkout_url: Annotated[str, AfterValidator(_http_url)] = (
        "https://checkout.razorpay.com/v1/checkout.js"
    )

    @model_validator(mode="after")
    def _trunk_for_sip(self) -> Settings:
        if self.carrier == "sip" and self.sip_trunk is None:
            raise ValueError(f"{ENV_PREFIX}SIP_TRUNK is required with {ENV_PREFIX}CARRIER=sip")
        return self

    @property
    def trusted_proxy_list(self) -> list[str]:
        """``MASKLINE_TRUSTED_PROXIES`` as networks in text (empty: trust no proxy)."""
        return [str(network) for network in self.trusted_proxies]

    @property
    def signup_mode(self) -> str:
        """``MASKLINE_SIGNUP``, or its default: ``open`` embedded, ``invite`` otherwise."""
        if self.signup is not None:
            return self.signup
        return "open" if self.is_sqlite else "invite"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.get_backend_name() == "sqlite"

    @property
    def advertised_host(self) -> str:
        """The address written in Contact, Via and SDP."""
        return str(self.sip_advertise) if self.sip_advertise is not None else self.sip_bind.host


def load_settings() -> Settings:
    """The settings from the environment (and ``.env``); a bad value is a
    ``ConfigurationError`` whose one line names each variable and what is wrong."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(describe(exc)) from None
    except SettingsError as exc:
        raise ConfigurationError(str(exc)) from None


def describe(exc: ValidationError) -> str:
    """One line for a failed load: ``MASKLINE_X: what is wrong; MASKLINE_Y: …``.

    The value itself is left out unless a check quotes it: it may be a secret, or a
    database URL carrying a password.
    """
    problems: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_input=False):
        context = error.get("ctx") or {}
        message = str(context["error"]) if error["type"] == "value_error" else error["msg"]
        location = error["loc"]
        if not location:  # a check across variables names them itself
            problems.setdefault(message, message)
            continue
        name = f"{ENV_PREFIX}{str(location[0]).upper()}"
        problems.setdefault(name, f"{name}: {message}")
    return "; ".join(problems.values())
