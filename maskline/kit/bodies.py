"""Request bodies (SPEC §1): the 64 KiB cap, and JSON read without surprises.

The cap is an ASGI middleware, so no route can forget it and nothing is read
past it: a declared ``Content-Length`` over the cap is refused before a byte of
the body is read; a streamed (chunked) body is counted as it arrives and
refused as soon as it passes the cap. Bodies are JSON as I-JSON (RFC 7493)
defines it: UTF-8, no repeated key in an object, no lone surrogate, and only
numbers (no ``NaN`` or ``Infinity``); a body nested too deeply or holding a
number too long to convert is refused like any other unreadable body.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from maskline.errors import InvalidRequest, PayloadTooLarge, envelope

MAX_BODY_BYTES = 64 * 1024
# The methods whose requests carry a body; no route reads the body of any other.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NOT_JSON = "The request body is not valid JSON."
_NAMED_KEY_MAX = 64


class BodyLimitMiddleware:
    """Answers 413 ``payload_too_large`` for a body over ``max_bytes``, without reading it."""

    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None:
            if declared > self.max_bytes:
                await _refuse(send)
                return
            # The server holds the client to its Content-Length: nothing more can come.
            await self.app(scope, receive, send)
            return
        # Streamed: read up to the cap here (at most 64 KiB held), then hand it on.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away mid-body: the app sees the disconnect, not a
                # partial body passed off as whole.
                await self.app(scope, _once(message, then=receive), send)
                return
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        buffered: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _once(buffered, then=receive), send)


def _once(first: Message, *, then: Receive) -> Receive:
    """A ``receive`` that gives ``first``, then what ``then`` gives."""
    given = False

    async def receive() -> Message:
        nonlocal given
        if given:
            return await then()
        given = True
        return first

    return receive


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
            if not (text.isascii() and text.isdigit()):
                return None  # the server refuses a malformed one; if not, count instead
            # More digits than any body we would read: too large, whatever the value.
            return int(text) if len(text) <= 18 else 10**18
    return None


async def _refuse(send: Send) -> None:
    body = json.dumps(envelope(PayloadTooLarge()), separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": PayloadTooLarge.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The rest of the body is not read: the connection cannot be reused.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _refuse_constant(_name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON numbers")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return result


class _RepeatedKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def read_json(raw: bytes) -> Any:
    """The JSON value of a request body, or 400 ``invalid_request``."""
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_object, parse_constant=_refuse_constant)
    except _RepeatedKey as repeated:
        name = repeated.key
        if len(name) <= _NAMED_KEY_MAX:
            raise InvalidRequest(
                f"The request body gives {json.dumps(name)} more than once."
            ) from None
        raise InvalidRequest("The request body gives a key more than once.") from None
    # ValueError: bad JSON, bad UTF-8 (UnicodeDecodeError), or an integer with more
    # digits than Python converts; RecursionError: nested deeper than the parser goes.
    except (ValueError, RecursionError):
        raise InvalidRequest(NOT_JSON) from None
    # A lone surrogate can only come from a \u escape: look only when there is one.
    if "\\u" in text and _has_lone_surrogate(value):
        raise InvalidRequest(NOT_JSON)
    return value
