"""``maskline``: the operator's command line (SPEC §9)."""

from __future__ import annotations

import importlib
import sys

import click
from sqlalchemy.exc import DBAPIError, OperationalError

from maskline.errors import AppError, ConfigurationError

# command name → "module:attribute". A command's module (and what it needs: the web
# framework for `serve`, the call models for `calls`) is imported only when that command
# runs or a help page lists it, so each short command starts in a fraction of the time.
COMMANDS = {
    "serve": "maskline.cli.server:serve",
    "migrate": "maskline.cli.server:migrate",
    "org": "maskline.cli.orgs:org",
    "key": "maskline.cli.keys:key",
    "wallet": "maskline.cli.wallet:wallet",
    "numbers": "maskline.cli.numbers:numbers",
    "webhook": "maskline.cli.webhook:webhook",
    "calls": "maskline.cli.calls:calls",
    "user": "maskline.cli.users:user",
}


class LazyGroup(click.Group):
    """A group whose sub-commands are imported when first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attribute = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="maskline")
def cli() -> None:
    """Operate a maskline installation."""


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
    except DBAPIError as exc:
        # Imported here, where a command has already loaded it: `--help` stays fast.
        from maskline.kit.writer import cause_of

        if isinstance(exc, OperationalError):
            _fail(f"the database cannot be reached or used: {cause_of(exc)}")
        else:
            _fail(f"the database refused the change: {cause_of(exc)}")
    except OSError as exc:
        _fail(f"{exc.strerror or exc}")
