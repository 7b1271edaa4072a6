"""How every command prints: one JSON object with ``--json``, readable lines without."""

from __future__ import annotations

import json
from typing import Any

import click


def emit(payload: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(payload, ensure_ascii=False))
        return
    for key, value in payload.items():
        if isinstance(value, list):
            click.echo(f"{key}: {len(value)}")
            for item in value:
                click.echo("  " + json.dumps(item, ensure_ascii=False))
        elif isinstance(value, dict):
            click.echo(f"{key}: {json.dumps(value, ensure_ascii=False)}")
        else:
            click.echo(f"{key}: {'' if value is None else value}")
