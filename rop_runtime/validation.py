"""Validation errors told in one line, for every way in and for the worker."""

from __future__ import annotations

from pydantic import ValidationError


def one_line(error: ValidationError) -> str:
    """Every problem of a validation error on one line, each naming its field."""
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in item["loc"]) or "input"
        parts.append(f"{field}: {item['msg']}")
    return "; ".join(parts)
