"""Need of service (tjenstlig behov): which pathways a person may read and drive.

Pasientjournalloven § 22 and Normen allow a person to see a patient's records only when
they need them for the care they give. Here that means: the pathway belongs to one of
the person's units (`helse-bergen/TSB`), or it names them (receiving clinician, GP,
koordinator, crisis-plan responsible, measure responsible, an invited party, anyone who
recorded a step). The database answers (`rop_need_of_service`, migration 0008), so the
API needs no right to read the steps it checks.

In an emergency a person may "break the glass": the request carries `X-Break-Glass` with
the reason, the access is allowed, and the access log marks it for follow-up
(`rop access-log --break-glass`). Services (role system) act for others and are not
scoped; operators see no clinical content at all, so there is nothing to scope.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import asyncpg
from pydantic import StringConstraints, TypeAdapter, ValidationError

from activities.database import Connection
from starter.access_log import Grounds
from starter.api.auth import Principal

BREAK_GLASS_HEADER = "X-Break-Glass"
"""The request header that breaks the glass; its value is the reason, in words."""

BreakGlassReason = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=10, max_length=300, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]
_REASON = TypeAdapter(BreakGlassReason)


class NoRecord(Exception):
    """The pathway has no record (unknown, or not yet written)."""


class InvalidReason(ValueError):
    """The break-glass reason is too short, too long or not plain text."""


def break_glass_reason(header: str | None) -> str | None:
    """The stated reason from the header, or None when the glass is not being broken."""
    if header is None:
        return None
    try:
        return _REASON.validate_python(header)
    except ValidationError:
        raise InvalidReason(
            f"{BREAK_GLASS_HEADER}: state the reason in 10 to 300 characters of plain text"
        ) from None


RECORD_WAIT = 2.0
"""Seconds to wait for a pathway's record: the intake writes it moments after a referral is
accepted, so a person who reads a pathway at once still finds it."""


async def grounds_for(
    database: asyncpg.Pool | Connection, principal: Principal, workflow_id: str
) -> Grounds | None:
    """On which grounds the caller may see the pathway; None if a person has none.

    Raises `NoRecord` for a person when the pathway has no record (after `RECORD_WAIT`),
    so that they learn nothing more than for a pathway that does not exist.
    """
    if not principal.is_person:
        return Grounds.SERVICE
    for attempt in range(int(RECORD_WAIT / 0.1) + 1):
        answer = await database.fetchval(
            "SELECT rop_need_of_service($1, $2, $3, $4)",
            workflow_id,
            sorted(principal.units),
            principal.actor,
            principal.email,
        )
        if answer is not None:
            return None if answer == "none" else Grounds(answer)
        if attempt * 0.1 < RECORD_WAIT:
            await asyncio.sleep(0.1)
    raise NoRecord(workflow_id)


async def visible(
    database: asyncpg.Pool | Connection, principal: Principal, workflow_ids: list[str]
) -> dict[str, Grounds]:
    """The pathways among `workflow_ids` the caller may see, each with its grounds (lists
    show only these; breaking the glass is for one pathway at a time, never for a list)."""
    if not principal.is_person:
        return dict.fromkeys(workflow_ids, Grounds.SERVICE)
    rows = await database.fetch(
        "SELECT w, g FROM unnest($1::text[]) AS w, rop_need_of_service(w, $2, $3, $4) AS g "
        "WHERE g IN ('unit', 'participant')",
        list(dict.fromkeys(workflow_ids)),
        sorted(principal.units),
        principal.actor,
        principal.email,
    )
    return {row["w"]: Grounds(row["g"]) for row in rows}
