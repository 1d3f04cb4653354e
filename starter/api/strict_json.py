"""JSON bodies with a key given twice are refused with 422 naming the key (`starter.json_keys`
says why), before any route reads them: `starter.api.context.require` calls this once the
caller is authenticated."""

from __future__ import annotations

from fastapi import Request

from starter.api.problems import FieldProblem, invalid
from starter.json_keys import duplicate_key

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def _is_json(content_type: str | None) -> bool:
    """As FastAPI reads a body: JSON when it says so, and when it says nothing."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or media.endswith("+json")


async def refuse_duplicate_keys(request: Request) -> None:
    """422 (`ProblemError`) for a JSON body with a duplicate key. Called once the caller is
    authenticated: a stranger learns nothing about what their body would have done."""
    if request.method in _WITH_BODY and _is_json(request.headers.get("content-type")):
        key = duplicate_key(await request.body())
        if key is not None:
            raise invalid(
                [FieldProblem(field=key, message="given more than once in one JSON object")]
            )
