"""What the app's routes say about a request path (for 405 answers)."""

from __future__ import annotations

from fastapi import Request
from fastapi.routing import iter_route_contexts
from starlette.routing import Match


def allowed_methods(request: Request) -> str:
    """The ``Allow`` value for the request's path: every method some route serves there.

    Starlette's 405 names only the first route whose path matched, which is wrong
    when several routes (GET and DELETE of a recording) share one path.
    """
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        match, _ = route.matches(request.scope)
        if match != Match.NONE and route.methods:
            methods |= route.methods
    return ", ".join(sorted(methods))
