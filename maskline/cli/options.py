from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")(
        func
    )


def org_option(func: F) -> F:
    return click.option(
        "--org", "org_ref", required=True, metavar="ORG", help="Organisation id or name."
    )(func)
