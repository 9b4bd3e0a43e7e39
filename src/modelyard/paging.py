"""Keyset paging: opaque cursors that carry where a page ended, so the next page starts there with an
index seek (stable while rows are added, and as fast deep in a list as at its top)."""

from __future__ import annotations

import base64
import binascii

import orjson

from modelyard.errors import InvalidQuery


def encode_cursor(state: dict[str, object]) -> str:
    """An opaque cursor for ``state``."""
    return base64.urlsafe_b64encode(orjson.dumps(state)).decode().rstrip("=")


def decode_cursor(cursor: str, *, field: str = "cursor") -> dict[str, object]:
    """The state of a cursor made by ``encode_cursor``; ``InvalidQuery`` (naming ``field``) otherwise."""
    try:
        state = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        state = None
    if not isinstance(state, dict):
        raise InvalidQuery(malformed(field), field=field)
    return state


def malformed(field: str) -> str:
    """What a client is told about a cursor it did not get from a response."""
    return f"malformed {field}: pass back a cursor of a response"
