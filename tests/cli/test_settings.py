"""SPEC §10: the settings are checked when maskline starts. A bad value stops `serve` and
every command with one line on stderr naming the variable and what is wrong (never a
traceback, never the value of a secret), and a non-zero exit; good values still work."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from maskline.cli.main import cli as maskline_cli
from maskline.cli.main import main
from maskline.keys.service import generate_key
from maskline.settings import Settings
from tests.adversarial.test_cli_bad_input import leaf_commands
from tests.conftest import TEST_SECRET_KEY
from tests.support.cli import CliResult, run_cli, run_installed
from tests.support.databases import fresh_database
from tests.support.server import running_server

PORTS = (
    "must be a range of ports within 1024-65535 holding at least one even port and the odd "
    "one above it, like 20000-29999, not "
)
IP_PORT = "must be an IP address with an optional :port ([v6]:port for IPv6), not "
HOST_PORT = "must be a host name or IP address with an optional :port ([v6]:port for IPv6), not "

EVERY_ADDRESS = "0.0.0.0"  # noqa: S104 (SPEC §10's default bind address)

# (the variables set, the exact line on stderr after "error: ")
BAD: list[tuple[dict[str, str], str]] = [
    (
        {"MASKLINE_DATABASE_URL": "mysql://maskline:secret@db/maskline"},
        "MASKLINE_DATABASE_URL: must be a sqlite:// or postgresql:// URL, not mysql://",
    ),
    (
        {"MASKLINE_DATABASE_URL": "maskline.db"},
        "MASKLINE_DATABASE_URL: must be a URL, like sqlite:///./maskline.db",
    ),
    (
        {"MASKLINE_DATABASE_URL": "postgresql://maskline:secret@db:pg/maskline"},
        "MASKLINE_DATABASE_URL: must be a URL, like sqlite:///./maskline.db",
    ),
    (
        {"MASKLINE_REDIS_URL": "http://redis.internal:6379"},
        "MASKLINE_REDIS_URL: must be a redis://, rediss:// or unix:// URL",
    ),
    (
        {"MASKLINE_REDIS_URL": "redis://:secret@redis.internal/zero"},
        "MASKLINE_REDIS_URL: the database must be a number, like redis://host:6379/0, not 'zero'",
    ),
    ({"MASKLINE_CARRIER": "pstn"}, "MASKLINE_CARRIER: Input should be 'sim' or 'sip'"),
    (
        {"MASKLINE_CARRIER": "sip"},
        "MASKLINE_SIP_TRUNK is required with MASKLINE_CARRIER=sip",
    ),
    (
        {"MASKLINE_SANDBOX": "maybe"},
        "MASKLINE_SANDBOX: Input should be a valid boolean, unable to interpret input",
    ),
    (
        {"MASKLINE_PUBLIC_URL": "voice.example.in"},
        "MASKLINE_PUBLIC_URL: must be an http:// or https:// URL without a query or fragment, "
        "not 'voice.example.in'",
    ),
    (
        {"MASKLINE_RING_TIMEOUT_SEC": "thirty"},
        "MASKLINE_RING_TIMEOUT_SEC: Input should be a valid integer, unable to parse string "
        "as an integer",
    ),
    (
        {"MASKLINE_CALL_MAX_LIFETIME_SEC": "59"},
        "MASKLINE_CALL_MAX_LIFETIME_SEC: Input should be greater than or equal to 60",
    ),
    (
        {"MASKLINE_CALL_RETENTION_DAYS": "0"},
        "MASKLINE_CALL_RETENTION_DAYS: Input should be greater than or equal to 1",
    ),
    (
        {"MASKLINE_TRUSTED_PROXIES": "10.0.0.0/8, proxy.internal"},
        "MASKLINE_TRUSTED_PROXIES: 'proxy.internal' is not an IP address or CIDR",
    ),
    (
        {"MASKLINE_PROVIDER_STATE_CODE": "7"},
        "MASKLINE_PROVIDER_STATE_CODE: must be a two-digit GST state code, like 24, not '7'",
    ),
    (
        {"MASKLINE_SIP_TRUNK": "sip.example.in:65536"},
        f"MASKLINE_SIP_TRUNK: {HOST_PORT}'sip.example.in:65536'",
    ),
    (
        {"MASKLINE_SIP_TRUNK": "sip.example.in:0"},
        "MASKLINE_SIP_TRUNK: the port must be within 1-65535, not 0",
    ),
    (
        {"MASKLINE_SIP_TRUNK": "sip:trunk@sip.example.in"},
        f"MASKLINE_SIP_TRUNK: {HOST_PORT}'sip:trunk@sip.example.in'",
    ),
    (
        {"MASKLINE_SIP_TRUNK": "sip_example.in"},
        f"MASKLINE_SIP_TRUNK: {HOST_PORT}'sip_example.in'",
    ),
    ({"MASKLINE_SIP_BIND": "any:5060"}, f"MASKLINE_SIP_BIND: {IP_PORT}'any:5060'"),
    ({"MASKLINE_SIP_BIND": "127.0.0.1:sip"}, f"MASKLINE_SIP_BIND: {IP_PORT}'127.0.0.1:sip'"),
    ({"MASKLINE_SIP_BIND": "::1:5060"}, f"MASKLINE_SIP_BIND: {IP_PORT}'::1:5060'"),
    (
        {"MASKLINE_SIP_ADVERTISE": "public.example.in"},
        "MASKLINE_SIP_ADVERTISE: value is not a valid IPv4 or IPv6 address",
    ),
    (
        {"MASKLINE_SIP_DIAL_FORMAT": "+91{num}"},
        "MASKLINE_SIP_DIAL_FORMAT: must contain {number} and no other {field}, not '+91{num}'",
    ),
    (
        {"MASKLINE_SIP_DIAL_FORMAT": "+91{number"},
        "MASKLINE_SIP_DIAL_FORMAT: must contain {number} and no other {field}, not '+91{number'",
    ),
    (
        {"MASKLINE_SIP_CALLER_FORMAT": "+918080000000"},
        "MASKLINE_SIP_CALLER_FORMAT: must contain {masked} and no other {field}, "
        "not '+918080000000'",
    ),
    (
        {"MASKLINE_SIP_MAX_CPS": "0"},
        "MASKLINE_SIP_MAX_CPS: Input should be greater than or equal to 1",
    ),
    *[
        ({"MASKLINE_RTP_PORTS": spec}, f"MASKLINE_RTP_PORTS: {PORTS}{spec!r}")
        for spec in ("", "20000", "a-b", "30000-20000", "80-90", "20000-70000", "20001-20002")
    ],
    (
        {"MASKLINE_RTP_TIMEOUT_SEC": "-1"},
        "MASKLINE_RTP_TIMEOUT_SEC: Input should be greater than or equal to 1",
    ),
    (
        {"MASKLINE_ENGINE_LEASE_SEC": "5"},
        "MASKLINE_ENGINE_LEASE_SEC: Input should be greater than or equal to 6",
    ),
    (
        {"MASKLINE_ENGINE_LEASE_SEC": "601"},
        "MASKLINE_ENGINE_LEASE_SEC: Input should be less than or equal to 600",
    ),
    (
        {"MASKLINE_LOG_LEVEL": "verbose"},
        "MASKLINE_LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'",
    ),
    (
        {"MASKLINE_RTP_PORTS": "80-90", "MASKLINE_LOG_LEVEL": "loud"},
        f"MASKLINE_RTP_PORTS: {PORTS}'80-90'; "
        "MASKLINE_LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'",
    ),
]

# Arguments each command accepts, so that what stops it is the settings alone.
ORG = "settings-org"
ARGS: dict[tuple[str, ...], list[str]] = {
    ("serve",): ["--port", "8999"],
    ("migrate",): [],
    ("org", "create"): [ORG],
    ("org", "update"): [ORG, "--pulse-sec", "30"],
    ("org", "list"): [],
    ("key", "create"): ["--org", ORG],
    ("key", "list"): ["--org", ORG],
    ("key", "revoke"): ["key_x"],
    ("wallet", "topup"): ["--org", ORG, "100"],
    ("wallet", "show"): ["--org", ORG],
    ("numbers", "add"): ["918089000001"],
    ("numbers", "list"): [],
    ("numbers", "remove"): ["918089000001"],
    ("webhook", "set"): ["--org", ORG, "--url", "https://hooks.example.in/h"],
    ("webhook", "show"): ["--org", ORG],
    ("webhook", "test"): ["--org", ORG],
    ("webhook", "rotate-secret"): ["--org", ORG],
    ("webhook", "deliveries"): ["--org", ORG],
    ("webhook", "replay"): ["dlv_x"],
    ("calls", "show"): ["3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"],
    ("user", "create"): ["--org", ORG, "--email", "dev@example.in"],
    ("user", "invite"): ["--org", ORG, "--email", "dev@example.in"],
    ("user", "list"): ["--org", ORG],
    ("user", "remove"): ["--org", ORG, "--email", "dev@example.in"],
    ("calls", "seed"): ["--org", ORG, "--count", "5"],
}
BAD_SETTING = {"MASKLINE_RTP_PORTS": "20000"}
BAD_SETTING_LINE = f"error: MASKLINE_RTP_PORTS: {PORTS}'20000'\n"


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {
        "MASKLINE_DATABASE_URL": f"sqlite:///{tmp_path / 'maskline.db'}",
        "MASKLINE_SECRET_KEY": TEST_SECRET_KEY,
        "MASKLINE_DATA_DIR": str(tmp_path / "data"),
        **values,
    }


def _argv(command: tuple[str, ...]) -> list[str]:
    # Every command but serve takes --json (SPEC §9).
    return [*command, *ARGS[command], *([] if command == ("serve",) else ["--json"])]


Maskline = Callable[..., CliResult]


@pytest.fixture
def maskline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Maskline:
    """The ``maskline`` entry point run in this process, as its console script runs it,
    with these variables alone and ``tmp_path`` as its directory: a refused start then
    costs no interpreter start. ``TestTheInstalledCommand`` runs the real command."""

    def run(*args: str, env: dict[str, str]) -> CliResult:
        for name in [name for name in os.environ if name.startswith("MASKLINE_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "argv", ["maskline", *args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main()
        out, err = capsys.readouterr()
        code = exited.value.code
        return CliResult(code if isinstance(code, int) else -1, out, err)

    return run


class TestBadSettings:
    @pytest.mark.parametrize(
        ("values", "message"),
        BAD,
        ids=[" ".join(f"{k}={v}" for k, v in values.items()) for values, _ in BAD],
    )
    def test_are_one_line_naming_the_variable_and_exit_1(
        self, maskline: Maskline, tmp_path: Path, values: dict[str, str], message: str
    ) -> None:
        result = maskline("org", "list", "--json", env=_env(tmp_path, **values))
        assert (result.code, result.stdout, result.stderr) == (1, "", f"error: {message}\n")

    def test_every_command_has_arguments_here(self) -> None:
        assert set(leaf_commands(maskline_cli)) == set(ARGS)

    @pytest.mark.parametrize("command", list(ARGS), ids=" ".join)
    def test_stop_every_command_and_serve(
        self, maskline: Maskline, tmp_path: Path, command: tuple[str, ...]
    ) -> None:
        result = maskline(*_argv(command), env=_env(tmp_path, **BAD_SETTING))
        assert (result.code, result.stdout, result.stderr) == (1, "", BAD_SETTING_LINE)

    def test_in_the_env_file_too(self, maskline: Maskline, tmp_path: Path) -> None:
        (tmp_path / ".env").write_text("MASKLINE_SIP_BIND=0.0.0.0:65536\n")
        result = maskline("org", "list", "--json", env=_env(tmp_path))
        assert (result.code, result.stderr) == (
            1,
            f"error: MASKLINE_SIP_BIND: {IP_PORT}'0.0.0.0:65536'\n",
        )


class TestTheInstalledCommand:
    """The installed script itself (the other tests fork it: tests/support/forks.py)."""

    @pytest.mark.parametrize("command", [("serve",), ("org", "list")], ids=" ".join)
    def test_says_the_same_one_line(self, tmp_path: Path, command: tuple[str, ...]) -> None:
        result = run_installed(*_argv(command), env=_env(tmp_path, **BAD_SETTING), cwd=tmp_path)
        assert (result.code, result.stdout, result.stderr) == (1, "", BAD_SETTING_LINE)


GOOD = {
    "MASKLINE_REDIS_URL": "redis://redis.internal:6379/0",
    "MASKLINE_CARRIER": "sip",
    "MASKLINE_PUBLIC_URL": "https://voice.example.in/",
    "MASKLINE_TRUSTED_PROXIES": "10.0.0.5/24, 192.0.2.1,2001:db8::/32",
    "MASKLINE_PROVIDER_STATE_CODE": "27",
    "MASKLINE_SIP_TRUNK": "sip.example-carrier.in:5060",
    "MASKLINE_SIP_BIND": "[::]:5062",
    "MASKLINE_SIP_ADVERTISE": "203.0.113.7",
    "MASKLINE_SIP_DIAL_FORMAT": "0{number}",
    "MASKLINE_SIP_CALLER_FORMAT": "+{masked}",
    "MASKLINE_RTP_PORTS": "30000-30999",
    "MASKLINE_LOG_LEVEL": "debug",
}
# An empty value is an unset one, as it always was.
EMPTY = {
    name: ""
    for name in (
        "MASKLINE_REDIS_URL",
        "MASKLINE_TRUSTED_PROXIES",
        "MASKLINE_SIP_TRUNK",
        "MASKLINE_SIP_ADVERTISE",
    )
}


class TestGoodSettings:
    @pytest.mark.parametrize("values", [GOOD, EMPTY], ids=["set", "empty"])
    def test_a_command_runs(self, tmp_path: Path, values: dict[str, str]) -> None:
        name = f"good-{uuid.uuid4().hex[:8]}"
        result = run_cli(
            "org", "create", name, "--json", env=_env(tmp_path, **values), cwd=tmp_path
        )
        assert (result.code, result.stderr, result.json["name"]) == (0, "", name)

    def test_they_are_read_as_written(self) -> None:
        settings = Settings(
            _env_file=None, **{k.removeprefix("MASKLINE_").lower(): v for k, v in GOOD.items()}
        )  # type: ignore[arg-type]
        assert (
            settings.redis_url,
            settings.public_url,
            settings.trusted_proxy_list,
            settings.sip_trunk,
            settings.sip_bind,
            settings.advertised_host,
            settings.log_level,
            list(settings.rtp_ports.even_ports)[:2],
            len(settings.rtp_ports.even_ports),
        ) == (
            "redis://redis.internal:6379/0",
            "https://voice.example.in",
            ["10.0.0.0/24", "192.0.2.1/32", "2001:db8::/32"],
            ("sip.example-carrier.in", 5060),
            ("::", 5062),
            "203.0.113.7",
            "DEBUG",
            [30000, 30002],
            500,
        )

    def test_the_defaults(self) -> None:
        settings = Settings(_env_file=None)
        assert (
            settings.database_url.render_as_string(),
            settings.sip_bind,
            settings.advertised_host,
            settings.sip_trunk,
            settings.rtp_ports.even_ports,
            settings.trusted_proxy_list,
            settings.log_level,
        ) == (
            "sqlite+aiosqlite:///./maskline.db",
            (EVERY_ADDRESS, 5060),
            EVERY_ADDRESS,
            None,
            range(20000, 29999, 2),
            [],
            "INFO",
        )

    @pytest.mark.parametrize(
        ("spec", "ports"),
        [
            ("20001-20008", [20002, 20004, 20006]),
            ("20000-20001", [20000]),
            ("20000-20003", [20000, 20002]),
        ],
    )
    def test_the_rtp_range_gives_the_even_ports_whose_rtcp_port_is_in_it(
        self, spec: str, ports: list[int]
    ) -> None:
        assert list(Settings(_env_file=None, rtp_ports=spec).rtp_ports.even_ports) == ports  # type: ignore[arg-type]

    def test_a_trusted_proxy_written_with_host_bits_is_its_network(self, tmp_path: Path) -> None:
        # uvicorn takes only a network without host bits; "127.0.0.5/8" used to be
        # accepted here and then silently trusted no one.
        env = _env(
            tmp_path,
            MASKLINE_AUTH_FAILURE_LIMIT_PER_MINUTE="3",
            MASKLINE_TRUSTED_PROXIES="127.0.0.5/8",
            MASKLINE_LOG_LEVEL="warning",
        )
        bad = {"Authorization": f"Bearer {generate_key(test=False)}"}
        with running_server(env, tmp_path) as server:
            codes = [
                httpx.get(
                    f"{server.base_url}/v1/masking/billing",
                    headers={**bad, "X-Forwarded-For": f"203.0.113.{n}"},
                    timeout=10,
                ).status_code
                for n in range(1, 5)
            ]
        # Four clients behind the proxy, each with its own budget of failures.
        assert codes == [401, 401, 401, 401]


@pytest.mark.postgres_only
@pytest.mark.database
class TestPostgresqlUrls:
    """The URL forms of PostgreSQL that SPEC §10 takes, on a real server."""

    @pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
    def test_migrate_takes_a_percent_encoded_password(self, tmp_path: Path, scheme: str) -> None:
        # The test server trusts local connections, so any password gets in; "%40" ("@")
        # used to reach Alembic's ini interpolation and fail the command.
        with fresh_database(tmp_path, migrate=False) as url:
            user_at = url.replace("postgresql://postgres@", f"{scheme}://postgres:p%40ss@", 1)
            assert user_at != url
            result = run_cli(
                "migrate", "--json", env=_env(tmp_path, MASKLINE_DATABASE_URL=user_at), cwd=tmp_path
            )
        assert (result.code, result.stderr) == (0, "")
