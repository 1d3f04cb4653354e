"""JSON in which one object gives a key twice means two things: the ways in refuse it.

Python's JSON reader (and pydantic's) keeps the last of two equal keys, so a referral
with an invalid `national_id` followed by a valid one passed validation; another reader
(an audit tool, a proxy) may keep the first. The HTTP API answers 422 naming the key
(`starter.api.strict_json`), the CLI exits with one line.
"""

from __future__ import annotations

import json
from typing import Any


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def duplicate_key(body: bytes) -> str | None:
    """The first key some object in `body` gives twice; None if none does, or if `body` is
    not JSON at all (the route then answers that)."""
    try:
        json.loads(body, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as duplicate:
        return duplicate.key
    except ValueError:
        return None
    return None
