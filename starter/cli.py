"""`rop`: the command-line face of rop-forlop.

Every command validates its input at the edge and prints one clear line on error
(exit code 1), so nothing half-valid reaches a pathway. The commands call the same
`starter.pathways.Pathways` API a backend service would import.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from rop_domain import calendar
from rop_domain.followup import (
    Closure,
    CrisisPlan,
    Measure,
    MeasureCancellation,
    MeasureStep,
    MeetingOutcome,
    Objection,
    PlanRevision,
    Review,
)
from rop_domain.models import Assessment, MeetingInvite, parse_referral
from starter.codec import KeyConfigurationError
from starter.pathways import PathwayError, Pathways
from starter.settings import RopSettings

Command = Callable[[argparse.Namespace, RopSettings], Awaitable[None]]


class UsageError(Exception):
    """The command line itself is wrong; the message says how."""


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `rop` console script."""
    args = _parser().parse_args(argv)
    if args.command_name == "worker":
        from worker import main as worker_main

        worker_main()
        return
    code = _run(args)
    if args.command_name == "stack":
        raise SystemExit(code)
    # A short-lived Temporal client process can abort in interpreter teardown while the
    # SDK's Rust threads still hold the GIL (temporalio/sdk-python#300). The command's
    # work is done and its output written: flush and leave without that teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run(args: argparse.Namespace) -> int:
    """Run one command; return the exit code, having printed any error as one line."""
    try:
        settings = RopSettings()
        from starter.logs import configure_logging

        configure_logging(settings.log_format)
        asyncio.run(args.handler(args, settings))
    except ValidationError as error:
        return _fail(f"invalid {_model_name(error)}: {_one_line(error)}")
    except (PathwayError, UsageError, KeyConfigurationError, OSError) as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        return 130
    return 0


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _model_name(error: ValidationError) -> str:
    return {
        "Referral": "referral",
        "Assessment": "assessment",
        "MeetingInvite": "meeting invite",
        "MeetingOutcome": "meeting record",
        "CrisisPlan": "crisis plan",
        "list[Measure]": "measures file",
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
    outcome = MeetingOutcome.model_validate(
        {
            "recorded_by": args.by,
            "held_at": args.held_at,
            "attendees": args.attendee,
            "koordinator": args.koordinator,
            "individual_plan": args.individual_plan,
            "crisis_plan_responsible": args.crisis_plan_responsible,
            "review_interval_weeks": args.review_weeks,
            "measures": _measures(args.measures),
        }
    )
    _print_model(await (await _pathways(settings)).record_meeting(args.workflow_id, outcome))


_MEASURES = TypeAdapter(list[Measure])


def _measures(path: str | None) -> list[Measure]:
    """The measures of a JSON file (a list of measures), or none."""
    return [] if path is None else _MEASURES.validate_json(Path(path).read_bytes())


async def _crisis_plan(args: argparse.Namespace, settings: RopSettings) -> None:
    plan = CrisisPlan.model_validate(
        {
            "registered_by": args.by,
            "version": args.version,
            "made_with_patient": args.made_with_patient,
            "relatives_involved": args.relatives_involved,
            "next_revision": args.next_revision,
        }
    )
    pathways = await _pathways(settings)
    _print_model(await pathways.register_crisis_plan(args.workflow_id, plan))


async def _measure(args: argparse.Namespace, settings: RopSettings) -> None:
    pathways = await _pathways(settings)
    if args.action == "cancel":
        if not args.reason:
            raise UsageError("measure cancel needs --reason")
        cancellation = MeasureCancellation(
            measure_id=args.measure_id, by=args.by, reason=args.reason
        )
        _print_model(await pathways.cancel_measure(args.workflow_id, cancellation))
        return
    step = MeasureStep.model_validate(
        {"measure_id": args.measure_id, "by": args.by, "note": args.note}
    )
    act = pathways.start_measure if args.action == "start" else pathways.complete_measure
    _print_model(await act(args.workflow_id, step))


async def _revise_plan(args: argparse.Namespace, settings: RopSettings) -> None:
    revision = PlanRevision(
        revised_by=args.by, reason=args.reason, measures=_measures(args.measures)
    )
    _print_model(await (await _pathways(settings)).revise_plan(args.workflow_id, revision))


async def _review(args: argparse.Namespace, settings: RopSettings) -> None:
    review = Review.model_validate(
        {
            "reviewed_by": args.by,
            "outcome": args.outcome,
            "next_interval_weeks": args.next_weeks,
            "revised_plan": None if args.measures is None else _measures(args.measures),
            "note": args.note,
        }
    )
    _print_model(await (await _pathways(settings)).complete_review(args.workflow_id, review))


async def _objection(args: argparse.Namespace, settings: RopSettings) -> None:
    objection = Objection.model_validate({"recorded_by": args.by, "note": args.note})
    _print_model(await (await _pathways(settings)).record_objection(args.workflow_id, objection))


async def _close(args: argparse.Namespace, settings: RopSettings) -> None:
    closure = Closure.model_validate(
        {"closed_by": args.by, "reason": args.reason, "note": args.note}
    )
    _print_model(await (await _pathways(settings)).close_pathway(args.workflow_id, closure))


async def _indicators(args: argparse.Namespace, settings: RopSettings) -> None:
    from starter.indicators import IndicatorQuery, compute_indicators, render_table

    query = IndicatorQuery.model_validate(
        {"from_date": args.from_date, "to_date": args.to_date, "health_trust": args.health_trust}
    )
    import asyncpg

    connection = await asyncpg.connect(_require_database(settings))
    try:
        indicators = await compute_indicators(connection, query)
    finally:
        await connection.close()
    print(indicators.model_dump_json(indent=2) if args.json else render_table(indicators))


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

    from starter.task_list import TaskFilter, list_tasks

    trust, _, unit = (args.unit or "").partition(":")
    connection = await asyncpg.connect(_require_database(settings))
    try:
        rows = await list_tasks(
            connection,
            TaskFilter(
                workflow_id=args.workflow_id,
                assignee=args.assignee,
                health_trust=trust or None,
                receiving_unit=unit or None,
                overdue=args.overdue,
                include_closed=args.all,
            ),
        )
    finally:
        await connection.close()
    for row in rows:
        due = row["due_at"].astimezone(calendar.OSLO).isoformat() if row["due_at"] else "-"
        print(
            f"{row['id']:>5}  {row['workflow_id']}  {row['kind']:<30} {row['status']:<10} "
            f"due {due}  to {row['recipient']}: {row['subject']}"
        )


async def _complete_task(args: argparse.Namespace, settings: RopSettings) -> None:
    import asyncpg

    from rop_domain.commands import TaskKind
    from starter.task_list import STEP_COMMANDS, complete_informational, find_task

    connection = await asyncpg.connect(_require_database(settings))
    try:
        task = await find_task(connection, args.task_id)
        if task is None:
            raise UsageError(f"no task {args.task_id}")
        if task["status"] != "requested":
            raise UsageError(f"task {args.task_id} is already {task['status']}")
        command = STEP_COMMANDS.get(TaskKind(task["kind"]))
        if command is None:
            await complete_informational(connection, args.task_id)
            print(f"task {args.task_id} completed")
            return
    finally:
        await connection.close()
    # The step the task stands for, through the same command and Update as ever.
    reference = [task["reference"]] if task["reference"] else []
    step = _parser().parse_args([*command, task["workflow_id"], *reference, *args.step_arguments])
    await step.handler(step, settings)


async def _resend(args: argparse.Namespace, settings: RopSettings) -> None:
    import asyncpg

    connection = await asyncpg.connect(_require_database(settings))
    try:
        task = await connection.fetchrow(
            "SELECT workflow_id, idempotency_key FROM tasks WHERE id = $1", args.task_id
        )
    finally:
        await connection.close()
    if task is None:
        raise UsageError(f"no task {args.task_id}")
    pathways = await _pathways(settings)
    await pathways.resend_notification(task["workflow_id"], task["idempotency_key"])
    print(f"task {args.task_id} of {task['workflow_id']} is being delivered again")


async def _load_contacts(args: argparse.Namespace, settings: RopSettings) -> None:
    from activities.contact_directory import load_directory
    from activities.database import create_pool, migrate

    path = Path(args.file)
    pool = await create_pool(_require_database(settings))
    try:
        await migrate(pool)
        points, teams = await load_directory(pool, path)
        print(f"{points} contact points and {teams} FACT teams loaded")
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


async def _codec_server(args: argparse.Namespace, settings: RopSettings) -> None:
    from starter.client import codec_from_settings
    from starter.codec_server import start_codec_server

    if settings.codec_server_token is None:
        raise UsageError("set ROP_CODEC_SERVER_TOKEN: the codec server answers only with it")
    runner = await start_codec_server(
        codec_from_settings(settings),
        token=settings.codec_server_token.get_secret_value(),
        ui_origin=settings.ui_origin,
        host=args.host,
        port=settings.codec_server_port,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


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

    meeting = command("meeting", _meeting, "record the avklaringsmøte and what it decided")
    meeting.add_argument("workflow_id")
    meeting.add_argument("--by", required=True, help="who records it")
    meeting.add_argument("--held-at", required=True, help="ISO 8601 with time zone")
    meeting.add_argument("--attendee", action="append", default=[], help="repeatable")
    meeting.add_argument("--koordinator", required=True, help="the appointed koordinator (id)")
    meeting.add_argument("--individual-plan", required=True, help="offered | accepted | declined")
    meeting.add_argument("--crisis-plan-responsible", required=True, help="id")
    meeting.add_argument("--review-weeks", type=int, default=12, help="review interval")
    meeting.add_argument("--measures", help="JSON file: a list of measures")

    crisis = command("crisis-plan", _crisis_plan, "register a version of the kriseplan")
    crisis.add_argument("workflow_id")
    crisis.add_argument("--by", required=True)
    crisis.add_argument("--version", type=int, required=True)
    crisis.add_argument("--made-with-patient", action="store_true")
    crisis.add_argument("--relatives-involved", action="store_true")
    crisis.add_argument("--next-revision", required=True, help="YYYY-MM-DD")

    measure = command("measure", _measure, "start, complete or cancel a measure")
    measure.add_argument("action", choices=["start", "complete", "cancel"])
    measure.add_argument("workflow_id")
    measure.add_argument("measure_id")
    measure.add_argument("--by", required=True)
    measure.add_argument("--note")
    measure.add_argument("--reason", help="why (cancel)")

    plan = commands.add_parser("plan", help="the plan of measures").add_subparsers(
        dest="plan_command", required=True, metavar="COMMAND"
    )
    revise = command("revise", _revise_plan, "replace the plan of measures", plan)
    revise.add_argument("workflow_id")
    revise.add_argument("--by", required=True)
    revise.add_argument("--reason", required=True)
    revise.add_argument("--measures", required=True, help="JSON file: a list of measures")

    review = command("review", _review, "record a periodic review (evaluering)")
    review.add_argument("workflow_id")
    review.add_argument("--by", required=True)
    review.add_argument("--outcome", required=True, help="continue | revise-plan | end-pathway")
    review.add_argument("--next-weeks", type=int)
    review.add_argument("--measures", help="JSON file with the revised plan (revise-plan)")
    review.add_argument("--note")

    objection = command("objection", _objection, "record the patient's objection to sharing")
    objection.add_argument("workflow_id")
    objection.add_argument("--by", required=True)
    objection.add_argument("--note")

    close = command("close", _close, "close the pathway")
    close.add_argument("workflow_id")
    close.add_argument("--by", required=True)
    close.add_argument(
        "--reason",
        required=True,
        help="completed | transferred | moved | deceased | declined-by-patient | other",
    )
    close.add_argument("--note")

    indicators = command("indicators", _indicators, "the region's indicators from the records")
    indicators.add_argument("--from", dest="from_date", help="referrals received on or after")
    indicators.add_argument("--to", dest="to_date", help="referrals received on or before")
    indicators.add_argument("--health-trust")
    indicators.add_argument("--json", action="store_true")

    status = command("status", _status, "show a pathway's phase, deadline, done and due")
    status.add_argument("workflow_id")

    tasks = command("tasks", _tasks, "list open tasks (all, or one pathway's)")
    tasks.add_argument("workflow_id", nargs="?")
    tasks.add_argument("--assignee", help="the person or unit id a task is for")
    tasks.add_argument("--unit", help="health trust, or TRUST:UNIT (e.g. helse-bergen:TSB)")
    tasks.add_argument("--overdue", action="store_true", help="only tasks past their due time")
    tasks.add_argument("--all", action="store_true", help="also completed and cancelled tasks")

    task = commands.add_parser("task", help="one task").add_subparsers(
        dest="task_command", required=True, metavar="COMMAND"
    )
    complete = command(
        "complete",
        _complete_task,
        "complete a task; a step's task takes that step's options (see `rop assess --help`...)",
        task,
    )
    complete.add_argument("task_id", type=int)
    complete.add_argument("step_arguments", nargs=argparse.REMAINDER)

    notification = commands.add_parser("notification", help="task delivery").add_subparsers(
        dest="notification_command", required=True, metavar="COMMAND"
    )
    resend = command("resend", _resend, "deliver a failed task again", notification)
    resend.add_argument("task_id", type=int)

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

    codec = command("codec-server", _codec_server, "decode payloads for the Temporal UI and CLI")
    codec.add_argument("--host", default="127.0.0.1")

    stack = command("stack", _stack, "run the local stack with a demo pathway (make run)")
    stack.add_argument("--demo", default=str(_seed("demo-referral.example.json")))
    stack.add_argument("--contacts", default=str(_seed("contact-points.example.json")))
    return parser


def _seed(name: str) -> Path:
    return Path(__file__).resolve().parent.parent / "deploy" / "seed" / name


if __name__ == "__main__":
    main()
