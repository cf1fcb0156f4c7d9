"""Redis replies as text: a client may or may not decode responses (`decode_responses`); scalper speaks str
either way."""

from __future__ import annotations


def as_str(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
