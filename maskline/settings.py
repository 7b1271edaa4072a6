"""The one typed settings object. Built once at the edge and passed in."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_STATE_CODE = re.compile(r"[0-9]{2}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MASKLINE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = "sqlite:///./maskline.db"
    redis_url: str | None = None
    secret_key: str | None = Field(default=None, repr=False)
    carrier: Literal["sim", "sip"] = "sim"
    sandbox: bool = False
    public_url: str = "http://127.0.0.1:8000"
    data_dir: Path = Path("./data")

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
    trusted_proxies: str | None = None

    provider_state_code: str = "24"
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

    sip_trunk: str | None = None
    sip_username: str | None = None
    sip_password: str | None = Field(default=None, repr=False)
    sip_bind: str = "0.0.0.0:5060"
    sip_advertise: str | None = None
    sip_dial_format: str = "+91{number}"
    sip_caller_format: str = "+{masked}"
    sip_max_cps: int = Field(default=50, ge=1)
    rtp_ports: str = "20000-29999"
    rtp_timeout_sec: int = Field(default=30, ge=1)

    log_level: str = "INFO"

    @field_validator("provider_state_code")
    @classmethod
    def _state_code(cls, value: str) -> str:
        if not _STATE_CODE.fullmatch(value):
            raise ValueError("provider_state_code must be a two-digit GST state code")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str | None) -> str | None:
        for entry in _entries(value):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {entry!r} is not an IP address or CIDR"
                ) from None
        return value

    @property
    def trusted_proxy_list(self) -> list[str]:
        """``MASKLINE_TRUSTED_PROXIES`` as a list (empty: trust no proxy)."""
        return _entries(self.trusted_proxies)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _entries(value: str | None) -> list[str]:
    return [entry.strip() for entry in (value or "").split(",") if entry.strip()]
