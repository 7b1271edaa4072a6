"""``maskline``: the operator's command line (SPEC §9)."""

from __future__ import annotations

import sys

import click
from sqlalchemy.exc import DBAPIError, OperationalError

from maskline.cli import calls, keys, numbers, orgs, server, wallet, webhook
from maskline.errors import AppError, ConfigurationError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="maskline")
def cli() -> None:
    """Operate a maskline installation."""


for command in (
    server.serve,
    server.migrate,
    orgs.org,
    keys.key,
    wallet.wallet,
    numbers.numbers,
    webhook.webhook,
    calls.calls,
):
    cli.add_command(command)


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def main() -> None:
    """Every failure is one line on stderr and a non-zero exit, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except AppError as exc:
        _fail(exc.message)
    except ConfigurationError as exc:
        _fail(str(exc))
    except OperationalError as exc:
        _fail(f"the database cannot be reached or used: {exc.orig.__class__.__name__}")
    except DBAPIError as exc:
        _fail(f"the database refused the change: {exc.orig.__class__.__name__}")
    except OSError as exc:
        _fail(f"{exc.strerror or exc}")
