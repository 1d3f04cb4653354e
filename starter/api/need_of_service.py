"""Need of service (tjenstlig behov): which pathways a person may read and drive.

Pasientjournalloven § 22 and Normen allow a person to see a patient's records only when
they need them for the care they give. Here that means: the pathway belongs to one of
the person's units (`helse-bergen/TSB`), or it names them (receiving clinician, GP,
koordinator, crisis-plan responsible, measure responsible, an invited person). Who a pathway
names is kept as data when each step is written (`rop_domain.parties`, table
`pathway_parties`, migration 0012), so a check is one indexed read, and a list is filtered
by a join in the same query that fetches it; the API never reads the steps themselves.

In an emergency a person may "break the glass": the request carries `X-Break-Glass` with
the reason, the access is allowed, and the access log marks it for follow-up
(`rop access-log --break-glass`). Services (role system) act for others and are not
scoped; operators see no clinical content at all, so there is nothing to scope.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Annotated

import asyncpg
from pydantic import StringConstraints, TypeAdapter, ValidationError

from activities.database import Connection
from rop_domain.parties import email_party
from starter.access_log import Grounds
from starter.api.auth import Principal

BREAK_GLASS_HEADER = "X-Break-Glass"
"""The request header that breaks the glass: `<code>: <reason in words>`."""


class BreakGlassCode(StrEnum):
    """Why the glass is broken: the short list the privacy officer follows up by."""

    EMERGENCY = "emergency"  # akutt: the patient needs help now
    PATIENT_CONSENT = "patient-consent"  # the patient asked for or agreed to this access
    CONTINUITY_OF_CARE = "continuity-of-care"  # taking over care before the record says so


_TEXT = TypeAdapter(
    Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=10, max_length=300, pattern=r"^[^\x00-\x1f\x7f]+$"
        ),
    ]
)


class NoRecord(Exception):
    """The pathway has no record (unknown, or not yet written)."""


class InvalidReason(ValueError):
    """The break-glass reason names no code from the list, or its words say nothing."""


class TooManyBreakGlass(Exception):
    """The person broke the glass more often than `ROP_BREAK_GLASS_PER_HOUR` allows."""


def break_glass_reason(header: str | None) -> str | None:
    """The reason as `<code>: <text>` from the header, or None when the glass is not being
    broken. The text must say something: two words or more, not one character repeated."""
    if header is None:
        return None
    code, _, text = header.partition(":")
    codes = ", ".join(c.value for c in BreakGlassCode)
    try:
        reason = BreakGlassCode(code.strip())
        words = _TEXT.validate_python(text)
    except (ValueError, ValidationError):
        raise InvalidReason(
            f"{BREAK_GLASS_HEADER}: write `<code>: <reason>`, the code one of {codes} and the "
            "reason 10 to 300 characters of plain text"
        ) from None
    if len(words.split()) < 2 or len({c.casefold() for c in words if c.isalpha()}) < 5:
        raise InvalidReason(f"{BREAK_GLASS_HEADER}: the reason must say why, in words")
    return f"{reason.value}: {words}"


async def check_break_glass_rate(
    database: asyncpg.Pool | Connection, principal: Principal, per_hour: int
) -> None:
    """Raise `TooManyBreakGlass` when the person broke the glass `per_hour` times in the
    last hour (counted in the access log, so every API and codec-server process agrees)."""
    recent = await database.fetchval(
        "SELECT count(*) FROM access_log WHERE grounds = 'break-glass' AND principal = $1 "
        "AND at > now() - interval '1 hour'",
        principal.identity,
    )
    if recent >= per_hour:
        raise TooManyBreakGlass(
            f"{principal.name} broke the glass {recent} times in the last hour (the limit is "
            f"{per_hour}): call the privacy officer, who sees each of them"
        )


RECORD_WAIT = 2.0
"""Seconds to wait for a pathway's record: the intake writes it moments after a referral is
accepted, so a person who reads a pathway at once still finds it."""


def names_caller(units: str, person: str, email: str) -> str:
    """SQL: the rows of `pathway_parties` (alias g) that name the caller, given the
    placeholders of the caller's units, HPR number and case-folded e-mail address
    (`parties_arguments`). Types never mix: an HPR number matches only a person's row,
    never a unit's or an organisation's."""
    return (
        f"((g.party_type = 'unit' AND g.party = ANY ({units}::text[])) "
        f"OR (g.party_type = 'person' AND g.party = {person}) "
        f"OR (g.party_type = 'email' AND g.party = {email}))"
    )


NAMES_CALLER = names_caller("$2", "$3", "$4")

GROUNDS_OF_ROWS = (
    "CASE WHEN bool_or(g.party_type = 'unit' AND g.named_as = 'receiving-unit') "
    "THEN 'unit' ELSE 'participant' END"
)
"""The grounds several matching rows give: the pathway is of the person's unit, else it names
them (or their unit, invited to its meeting)."""


def parties_arguments(principal: Principal) -> tuple[list[str], str | None, str | None]:
    """The caller as `NAMES_CALLER` compares it: units, HPR number, trusted e-mail."""
    email = email_party(principal.email) if principal.email else None
    return sorted(principal.units), principal.actor, email


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
        row = await database.fetchrow(
            f"""SELECT (SELECT {GROUNDS_OF_ROWS} FROM pathway_parties g
                        WHERE g.workflow_id = p.workflow_id AND {NAMES_CALLER}
                        HAVING count(*) > 0) AS grounds
                FROM pathways p WHERE p.workflow_id = $1""",  # noqa: S608 - fixed SQL
            workflow_id,
            *parties_arguments(principal),
        )
        if row is not None:
            return None if row["grounds"] is None else Grounds(row["grounds"])
        if attempt * 0.1 < RECORD_WAIT:
            await asyncio.sleep(0.1)
    raise NoRecord(workflow_id)


async def pathways_naming(
    database: asyncpg.Pool | Connection,
    principal: Principal,
    *,
    phase: str | None,
    health_trust: str | None,
    overdue: bool | None,
    limit: int,
) -> list[tuple[asyncpg.Record, Grounds]]:
    """A person's pathways, newest first, as the record holds them, with their grounds: one
    query, the scope joined by index (a person's list never comes from all pathways filtered
    afterwards, which at a region's size would mostly be other people's)."""
    rows = await database.fetch(
        f"""WITH scope AS (
                SELECT g.workflow_id, {GROUNDS_OF_ROWS} AS grounds FROM pathway_parties g
                WHERE {names_caller("$1", "$2", "$3")} GROUP BY g.workflow_id)
            SELECT p.workflow_id, p.phase, p.health_trust, p.municipality, p.receiving_unit,
                   p.meeting_deadline, p.invited_on_time, p.crisis_plan_version,
                   p.next_review_due, p.overdue, scope.grounds
            FROM scope JOIN pathways p ON p.workflow_id = scope.workflow_id
            WHERE ($4::text IS NULL OR p.phase = $4)
              AND ($5::text IS NULL OR p.health_trust = $5)
              AND ($6::boolean IS NULL OR p.overdue = $6)
            ORDER BY p.received_at DESC, p.workflow_id LIMIT $7""",  # noqa: S608 - fixed SQL
        *parties_arguments(principal),
        phase,
        health_trust,
        overdue,
        limit,
    )
    return [(row, Grounds(row["grounds"])) for row in rows]
