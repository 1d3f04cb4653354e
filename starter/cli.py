"""`rop`: the command-line face of rop-forlop.

Every command validates its input at the edge and prints one clear line on error
(exit code 1), so nothing half-valid reaches a pathway. The commands call the same
`starter.pathways.Pathways` API a backend service would import.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from rop_domain import calendar
from rop_domain.models import (
    Assessment,
    MeetingHeld,
    MeetingInvite,
    parse_referral,
)
from starter.pathways import PathwayError, Pathways
from starter.settings import RopSettings

Command = Callable[[argparse.Namespace, RopSettings], Awaitable[None]]


class UsageError(Exception):
    """The command line itself is wrong; the message says how."""


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `rop` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command_name == "worker":
        from worker import main as worker_main

        worker_main()
        return
    try:
        settings = RopSettings()
        from starter.logs import configure_logging

        configure_logging(settings.log_format)
        asyncio.run(args.handler(args, settings))
    except ValidationError as error:
        _fail(f"invalid {_model_name(error)}: {_one_line(error)}")
    except (PathwayError, UsageError, OSError) as error:
        _fail(str(error))
    except KeyboardInterrupt:
        pass


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(1)


def _model_name(error: ValidationError) -> str:
    return {
        "Referral": "referral",
        "Assessment": "assessment",
        "MeetingInvite": "meeting invite",
        "MeetingHeld": "meeting record",
    }.get(error.title, error.title)


def _one_line(error: ValidationError) -> str:
    """Every problem of a validation error on one line, each naming its field."""
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in item["loc"]) or "input"
        parts.append(f"{field}: {item['msg']}")
    return "; ".join(parts)


def _print_model(model: BaseModel) -> None:
    print(model.model_dump_json(indent=2))


async def _pathways(settings: RopSettings) -> Pathways:
    from starter.client import connect

    try:
        client = await connect(settings)
    except RuntimeError as error:
        raise UsageError(
            f"cannot reach Temporal at {settings.temporal_address} (is `make run` running?): "
            f"{str(error).splitlines()[0]}"
        ) from None
    return Pathways(
        client, task_queue=settings.task_queue, pathway_settings=settings.pathway_settings()
    )


# --- commands ---------------------------------------------------------------------------


async def _submit(args: argparse.Namespace, settings: RopSettings) -> None:
    referral = parse_referral(Path(args.file).read_bytes(), settings.validation_policy())
    submitted = await (await _pathways(settings)).submit(referral)
    state = "started" if submitted.created else "exists already; not started again"
    print(f"pathway {state}", file=sys.stderr)
    print(submitted.workflow_id)


async def _assess(args: argparse.Namespace, settings: RopSettings) -> None:
    assessment = Assessment.model_validate(
        {"assessor": args.assessor, "decision": args.decision, "reason": args.reason}
    )
    _print_model(await (await _pathways(settings)).assess(args.workflow_id, assessment))


async def _invite(args: argparse.Namespace, settings: RopSettings) -> None:
    pathways = await _pathways(settings)
    participants: list[Any] = [_participant(text) for text in args.participant]
    if args.recommended:
        status = await pathways.status(args.workflow_id)
        participants += [p.model_dump() for p in status.recommended_participants]
    invite = MeetingInvite.model_validate(
        {
            "invited_by": args.by,
            "meeting_at": args.at,
            "location": args.location,
            "video_link": args.video_link,
            "participants": participants,
        }
    )
    _print_model(await pathways.invite_to_meeting(args.workflow_id, invite))


def _participant(text: str) -> dict[str, str]:
    role, _, rest = text.partition(":")
    name, _, address = rest.partition(":")
    if not (role and name and address):
        raise UsageError(
            f"--participant {text!r}: write ROLE:NAME:ADDRESS, e.g. tsb:TSB Bergen:x@y"
        )
    return {"role": role, "name": name, "address": address}


async def _meeting(args: argparse.Namespace, settings: RopSettings) -> None:
    meeting = MeetingHeld.model_validate(
        {"recorded_by": args.by, "held_at": args.held_at, "attendees": args.attendee}
    )
    _print_model(await (await _pathways(settings)).record_meeting(args.workflow_id, meeting))


async def _status(args: argparse.Namespace, settings: RopSettings) -> None:
    _print_model(await (await _pathways(settings)).status(args.workflow_id))


async def _deadline(args: argparse.Namespace, settings: RopSettings) -> None:
    try:
        received = date.fromisoformat(args.received)
    except ValueError:
        raise UsageError(f"--received {args.received!r}: write a date as YYYY-MM-DD") from None
    working_days = args.working_days or settings.meeting_working_days
    if working_days < 1:
        raise UsageError("--working-days must be at least 1")
    count_saturdays = args.count_saturdays or settings.count_saturdays
    rule = (
        calendar.WorkingDayRule.MONDAY_TO_SATURDAY
        if count_saturdays
        else calendar.WorkingDayRule.MONDAY_TO_FRIDAY
    )
    deadline = calendar.add_working_days(received, working_days, rule)
    print(f"received {received.isoformat()}, {working_days} working days ({rule.value}):")
    print(deadline.isoformat())


async def _tasks(args: argparse.Namespace, settings: RopSettings) -> None:
    import asyncpg

    url = _require_database(settings)
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            """SELECT id, workflow_id, kind, recipient, status, due_at, subject FROM tasks
               WHERE $1::text IS NULL OR workflow_id = $1 ORDER BY id""",
            args.workflow_id,
        )
    finally:
        await connection.close()
    for row in rows:
        due = row["due_at"].astimezone(calendar.OSLO).isoformat() if row["due_at"] else "-"
        print(
            f"{row['id']:>5}  {row['workflow_id']}  {row['kind']:<30} {row['status']:<10} "
            f"due {due}  to {row['recipient']}: {row['subject']}"
        )


async def _load_contacts(args: argparse.Namespace, settings: RopSettings) -> None:
    from activities.contact_directory import read_contact_points, upsert_contact_points
    from activities.database import create_pool, migrate

    points = read_contact_points(Path(args.file))
    pool = await create_pool(_require_database(settings))
    try:
        await migrate(pool)
        print(f"{await upsert_contact_points(pool, points)} contact points loaded")
    finally:
        await pool.close()


async def _migrate(args: argparse.Namespace, settings: RopSettings) -> None:
    from activities.database import create_pool, migrate

    pool = await create_pool(_require_database(settings))
    try:
        applied = await migrate(pool)
        print("applied: " + ", ".join(applied) if applied else "database is up to date")
    finally:
        await pool.close()


async def _stack(args: argparse.Namespace, settings: RopSettings) -> None:
    from starter.stack import run_stack

    await run_stack(settings, demo_referral=Path(args.demo), contacts=Path(args.contacts))


def _require_database(settings: RopSettings) -> str:
    if not settings.database_url:
        raise UsageError("set DATABASE_URL (make run prints it)")
    return settings.database_url


# --- parser -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rop", description="Run the ROP patient pathway.")
    commands = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")

    def command(name: str, handler: Command, help_text: str, parent: Any = commands) -> Any:
        sub = parent.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    referral = commands.add_parser("referral", help="referrals").add_subparsers(
        dest="referral_command", required=True, metavar="COMMAND"
    )
    submit = command(
        "submit", _submit, "submit a referral (JSON file); prints the workflow id", referral
    )
    submit.add_argument("file")

    assess = command("assess", _assess, "assess a referral: in or out of the target group")
    assess.add_argument("workflow_id")
    assess.add_argument("--assessor", required=True, help="the assessing clinician's id (HPR)")
    assess.add_argument("--decision", required=True, help="in-target-group | not-in-target-group")
    assess.add_argument("--reason", required=True)

    invite = command("invite", _invite, "invite the parties to the avklaringsmøte")
    invite.add_argument("workflow_id")
    invite.add_argument("--by", required=True, help="the inviting clinician's id")
    invite.add_argument("--at", required=True, help="meeting time, ISO 8601 with time zone")
    invite.add_argument("--location")
    invite.add_argument("--video-link")
    invite.add_argument(
        "--participant", action="append", default=[], help="ROLE:NAME:ADDRESS (repeatable)"
    )
    invite.add_argument(
        "--recommended", action="store_true", help="invite the recommended participants too"
    )

    meeting = command("meeting", _meeting, "record that the avklaringsmøte was held")
    meeting.add_argument("workflow_id")
    meeting.add_argument("--by", required=True, help="who records it")
    meeting.add_argument("--held-at", required=True, help="ISO 8601 with time zone")
    meeting.add_argument("--attendee", action="append", default=[], help="repeatable")

    status = command("status", _status, "show a pathway's phase, deadline, done and due")
    status.add_argument("workflow_id")

    tasks = command("tasks", _tasks, "list queued tasks (all, or one pathway's)")
    tasks.add_argument("workflow_id", nargs="?")

    cal = commands.add_parser("calendar", help="working-day calendar").add_subparsers(
        dest="calendar_command", required=True, metavar="COMMAND"
    )
    deadline = command("deadline", _deadline, "the meeting deadline for a receipt date", cal)
    deadline.add_argument("--received", required=True, help="YYYY-MM-DD")
    deadline.add_argument(
        "--working-days", type=int, help="default: ROP_MEETING_WORKING_DAYS or 10"
    )
    deadline.add_argument("--count-saturdays", action="store_true")

    contacts = commands.add_parser("contacts", help="contact directory").add_subparsers(
        dest="contacts_command", required=True, metavar="COMMAND"
    )
    load = command("load", _load_contacts, "load contact points from a JSON file", contacts)
    load.add_argument("file")

    db = commands.add_parser("db", help="database").add_subparsers(
        dest="db_command", required=True, metavar="COMMAND"
    )
    command("migrate", _migrate, "apply pending migrations", db)

    commands.add_parser("worker", help="run the worker (needs DATABASE_URL)")

    stack = command("stack", _stack, "run the local stack with a demo pathway (make run)")
    stack.add_argument("--demo", default=str(_seed("demo-referral.example.json")))
    stack.add_argument("--contacts", default=str(_seed("contact-points.example.json")))
    return parser


def _seed(name: str) -> Path:
    return Path(__file__).resolve().parent.parent / "deploy" / "seed" / name


if __name__ == "__main__":
    main()
