"""`rop` commands that drive a pathway, one per step of the registry (`rop_domain.steps`):
each reads its options into the step's body, then sends it through the same
`starter.pathways.Pathways.send` a backend service would import. `rop task complete` takes
a task's step with the same options (`complete_task`)."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from rop_domain.calendar import OSLO
from rop_domain.followup import Measure
from rop_domain.models import Referral, parse_referral
from rop_domain.steps import STEP, STEPS, StepName
from rop_domain.tasks import TaskStatus, step_for
from rop_runtime.settings import RopSettings
from starter.cli_support import (
    OneLineParser,
    UsageError,
    connect_pathways,
    print_model,
    require_database,
    update_id,
)
from starter.json_keys import duplicate_key
from starter.pathways import Pathways


async def submit(args: argparse.Namespace, settings: RopSettings) -> None:
    referral = _read_referral(Path(args.file).read_bytes(), settings)
    submitted = await (await connect_pathways(settings)).submit(referral)
    state = "started" if submitted.created else "exists already; not started again"
    print(f"pathway {state}", file=sys.stderr)
    print(submitted.workflow_id)


def _read_referral(raw: bytes, settings: RopSettings) -> Referral:
    """Our referral, or a FHIR R4 ServiceRequest (as the HTTP API takes), by its resourceType."""
    _refuse_duplicate_keys(raw, "referral file")
    try:
        resource_type = json.loads(raw).get("resourceType")
    except (ValueError, AttributeError):
        resource_type = None  # not a JSON object: parse_referral says what is wrong
    if resource_type != "ServiceRequest":
        return parse_referral(raw, settings.validation_policy())
    from starter.fhir.service_request import FhirMappingError, referral_from_service_request

    try:
        return referral_from_service_request(raw, settings.validation_policy())
    except FhirMappingError as error:
        raise UsageError(f"invalid ServiceRequest: {error}") from None


# --- each step's options, and the body they make ----------------------------------------


def _body(step: StepName, data: dict[str, Any]) -> BaseModel:
    """The step's body (its model in the registry), validated from the options."""
    return STEP[step].body.model_validate(data)


def _assess_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--assessor", required=True, help="the assessing clinician's id (HPR)")
    parser.add_argument("--decision", required=True, help="in-target-group | not-in-target-group")
    parser.add_argument("--reason", required=True)


async def _assessment(args: argparse.Namespace, _: Pathways) -> BaseModel:
    return _body(
        StepName.ASSESS,
        {"assessor": args.assessor, "decision": args.decision, "reason": args.reason},
    )


def _invite_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--by", required=True, help="the inviting clinician's id")
    parser.add_argument("--at", required=True, help="meeting time, ISO 8601 with time zone")
    parser.add_argument("--location")
    parser.add_argument("--video-link")
    parser.add_argument(
        "--participant", action="append", default=[], help="ROLE:NAME:ADDRESS (repeatable)"
    )
    parser.add_argument(
        "--recommended", action="store_true", help="invite the recommended participants too"
    )
    parser.add_argument(
        "--absent",
        action="append",
        default=[],
        help="ROLE:REASON for a recommended party not invited (repeatable)",
    )


async def _invite(args: argparse.Namespace, pathways: Pathways) -> BaseModel:
    participants: list[Any] = [_participant(text) for text in args.participant]
    if args.recommended:
        status = await pathways.status(args.workflow_id)
        participants += [p.model_dump() for p in status.recommended_participants]
    return _body(
        StepName.INVITE_TO_MEETING,
        {
            "invited_by": args.by,
            "meeting_at": args.at,
            "location": args.location,
            "video_link": args.video_link,
            "participants": participants,
            "absent_reasons": dict(_absent(text) for text in args.absent),
        },
    )


def _absent(text: str) -> tuple[str, str]:
    role, _, reason = text.partition(":")
    if not (role and reason):
        raise UsageError(f"--absent {text!r}: write ROLE:REASON, e.g. kommune:Deltar neste gang")
    return role, reason


def _participant(text: str) -> dict[str, str]:
    role, _, rest = text.partition(":")
    name, _, address = rest.partition(":")
    if not (role and name and address):
        raise UsageError(
            f"--participant {text!r}: write ROLE:NAME:ADDRESS, e.g. tsb:TSB Bergen:x@y"
        )
    return {"role": role, "name": name, "address": address}


def _move_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--by", required=True, help="who moves the meeting")
    parser.add_argument("--at", required=True, help="the new time, ISO 8601 with time zone")
    parser.add_argument("--reason", required=True, help="why, as the parties will be told")
    parser.add_argument("--location", help="a new place (default: unchanged)")
    parser.add_argument("--far-ahead-reason", help="needed for a time more than 180 days ahead")


async def _move(args: argparse.Namespace, _: Pathways) -> BaseModel:
    return _body(
        StepName.MOVE_MEETING,
        {
            "moved_by": args.by,
            "meeting_at": args.at,
            "reason": args.reason,
            "location": args.location,
            "far_ahead_reason": args.far_ahead_reason,
        },
    )


def _meeting_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--by", required=True, help="who records it")
    parser.add_argument(
        "--held-at", help="ISO 8601 with time zone; default: now (a meeting just held)"
    )
    parser.add_argument("--attendee", action="append", default=[], help="repeatable")
    parser.add_argument("--koordinator", required=True, help="the appointed koordinator (id)")
    parser.add_argument("--individual-plan", required=True, help="offered | accepted | declined")
    parser.add_argument("--crisis-plan-responsible", required=True, help="id")
    parser.add_argument("--review-weeks", type=int, default=12, help="review interval")
    parser.add_argument("--measures", help="JSON file: a list of measures")


async def _meeting(args: argparse.Namespace, _: Pathways) -> BaseModel:
    return _body(
        StepName.RECORD_MEETING,
        {
            "recorded_by": args.by,
            "held_at": args.held_at or datetime.now(OSLO).replace(microsecond=0).isoformat(),
            "attendees": args.attendee,
            "koordinator": args.koordinator,
            "individual_plan": args.individual_plan,
            "crisis_plan_responsible": args.crisis_plan_responsible,
            "review_interval_weeks": args.review_weeks,
            "measures": _measures(args.measures),
        },
    )


_MEASURES = TypeAdapter(list[Measure])


def _measures(path: str | None) -> list[Measure]:
    """The measures of a JSON file (a list of measures), or none."""
    if path is None:
        return []
    raw = Path(path).read_bytes()
    _refuse_duplicate_keys(raw, "measures file")
    return _MEASURES.validate_json(raw)


def _refuse_duplicate_keys(raw: bytes, what: str) -> None:
    key = duplicate_key(raw)
    if key is not None:
        raise UsageError(f"invalid {what}: {key!r} is given more than once in one JSON object")


def _crisis_plan_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--by", required=True)
    parser.add_argument("--version", type=int, required=True)
    parser.add_argument("--made-with-patient", action="store_true")
    parser.add_argument("--relatives-involved", action="store_true")
    parser.add_argument("--next-revision", required=True, help="YYYY-MM-DD")
    parser.add_argument(
        "--without-patient-reason", help="why the plan was made without the patient (then required)"
    )


async def _crisis_plan(args: argparse.Namespace, _: Pathways) -> BaseModel:
    return _body(
        StepName.REGISTER_CRISIS_PLAN,
        {
            "registered_by": args.by,
            "version": args.version,
            "made_with_patient": args.made_with_patient,
            "relatives_involved": args.relatives_involved,
            "next_revision": args.next_revision,
            "without_patient_reason": args.without_patient_reason,
        },
    )


def _measure_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("measure_id")
    parser.add_argument("--by", required=True)
    parser.add_argument("--note")


async def _measure_step(args: argparse.Namespace, _: Pathways) -> BaseModel:
    return _body(
        StepName.START_MEASURE, {"measure_id": args.measure_id, "by": args.by, "note": args.note}
    )


def _cancel_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("measure_id")
    parser.add_argument("--by", required=True)
    parser.add_argument("--reason", required=True, help="why the measure is cancelled")


async def _cancellation(args: argparse.Namespace, _: Pathways) -> BaseModel:
    return _body(
        StepName.CANCEL_MEASURE,
        {"measure_id": args.measure_id, "by": args.by, "reason": args.reason},
    )


def _revise_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--by", required=True)
    parser.add_argument("--reason", required=True)
    parser.add_argument("--measures", required=True, help="JSON file: a list of measures")
    parser.add_argument(
        "--replaces-version",
        type=int,
        help="the plan version this replaces (plan_version in `rop status`); "
        "refused if that version is already replaced",
    )


async def _revision(args: argparse.Namespace, _: Pathways) -> BaseModel:
    return _body(
        StepName.REVISE_PLAN,
        {
            "revised_by": args.by,
            "reason": args.reason,
            "measures": _measures(args.measures),
            "replaces_version": args.replaces_version,
        },
    )


def _review_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--by", required=True)
    parser.add_argument("--outcome", required=True, help="continue | revise-plan | end-pathway")
    parser.add_argument("--next-weeks", type=int)
    parser.add_argument("--measures", help="JSON file with the revised plan (revise-plan)")
    parser.add_argument("--note")
    parser.add_argument(
        "--review-number",
        type=int,
        help="the review this completes (review.number in `rop status`); "
        "refused if that review is already completed",
    )


async def _review(args: argparse.Namespace, _: Pathways) -> BaseModel:
    return _body(
        StepName.COMPLETE_REVIEW,
        {
            "reviewed_by": args.by,
            "outcome": args.outcome,
            "next_interval_weeks": args.next_weeks,
            "revised_plan": None if args.measures is None else _measures(args.measures),
            "note": args.note,
            "review_number": args.review_number,
        },
    )


def _objection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--by", required=True)
    parser.add_argument("--note")


async def _objection(args: argparse.Namespace, _: Pathways) -> BaseModel:
    return _body(StepName.RECORD_OBJECTION, {"recorded_by": args.by, "note": args.note})


def _close_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--by", required=True)
    parser.add_argument(
        "--reason",
        required=True,
        help="completed | transferred | moved | deceased | declined-by-patient | other",
    )
    parser.add_argument("--note")


async def _closure(args: argparse.Namespace, _: Pathways) -> BaseModel:
    return _body(
        StepName.CLOSE_PATHWAY, {"closed_by": args.by, "reason": args.reason, "note": args.note}
    )


@dataclass(frozen=True)
class CliStep:
    """A step's own options, and how they make the step's body."""

    options: Callable[[argparse.ArgumentParser], None]
    body: Callable[[argparse.Namespace, Pathways], Awaitable[BaseModel]]
    help: str


CLI_STEPS: dict[StepName, CliStep] = {
    StepName.ASSESS: CliStep(
        _assess_options, _assessment, "assess a referral: in or out of the target group"
    ),
    StepName.INVITE_TO_MEETING: CliStep(
        _invite_options, _invite, "invite the parties to the avklaringsmøte"
    ),
    StepName.MOVE_MEETING: CliStep(
        _move_options, _move, "move the avklaringsmøte to another time; the parties are told"
    ),
    StepName.RECORD_MEETING: CliStep(
        _meeting_options, _meeting, "record the avklaringsmøte and what it decided"
    ),
    StepName.REGISTER_CRISIS_PLAN: CliStep(
        _crisis_plan_options, _crisis_plan, "register a version of the kriseplan"
    ),
    StepName.START_MEASURE: CliStep(_measure_options, _measure_step, "a measure has started"),
    StepName.COMPLETE_MEASURE: CliStep(_measure_options, _measure_step, "a measure is completed"),
    StepName.CANCEL_MEASURE: CliStep(_cancel_options, _cancellation, "a measure is cancelled"),
    StepName.REVISE_PLAN: CliStep(_revise_options, _revision, "replace the plan of measures"),
    StepName.COMPLETE_REVIEW: CliStep(
        _review_options, _review, "record a periodic review (evaluering)"
    ),
    StepName.RECORD_OBJECTION: CliStep(
        _objection_options, _objection, "record the patient's objection to sharing"
    ),
    StepName.CLOSE_PATHWAY: CliStep(_close_options, _closure, "close the pathway"),
}

COMMAND_GROUPS = {
    "measure": "start, complete or cancel a measure",
    "plan": "the plan of measures",
}
"""The commands that group steps (`rop measure start`, `rop plan revise`)."""


def add_step_commands(commands: Any) -> None:
    """One command per step of the registry, under `commands` (argparse subparsers)."""
    groups: dict[str, Any] = {}
    for step in STEPS:
        parent = commands
        if len(step.command) == 2:
            group = step.command[0]
            if group not in groups:
                groups[group] = commands.add_parser(
                    group, help=COMMAND_GROUPS[group], description=COMMAND_GROUPS[group]
                ).add_subparsers(dest=f"{group}_command", required=True, metavar="COMMAND")
            parent = groups[group]
        cli = CLI_STEPS[step.name]
        command = parent.add_parser(step.command[-1], help=cli.help, description=cli.help)
        command.set_defaults(handler=functools.partial(take_step, step.name))
        command.add_argument("workflow_id")
        command.add_argument(
            "--idempotency-key",
            help="send the step under this key: sent again with the same key, it is applied "
            "once (default: a new key, printed if the pathway does not answer)",
        )
        cli.options(command)


async def take_step(step: StepName, args: argparse.Namespace, settings: RopSettings) -> None:
    """Send the step the command line describes; print the pathway's answer."""
    pathways = await connect_pathways(settings)
    body = await CLI_STEPS[step].body(args, pathways)
    print_model(await pathways.send(step, args.workflow_id, body, update_id=update_id(args)))


async def complete_task(args: argparse.Namespace, settings: RopSettings) -> None:
    """`rop task complete ID [the step's options]`: the step the task stands for, or, for a
    task that only informs, the task marked completed."""
    import asyncpg

    from starter.task_list import complete_informational, find_task

    connection = await asyncpg.connect(require_database(settings))
    try:
        task = await find_task(connection, args.task_id)
        if task is None:
            raise UsageError(f"no task {args.task_id}")
        if task.status is not TaskStatus.REQUESTED:
            raise UsageError(f"task {args.task_id} is already {task.status}")
        step = step_for(task.kind)
        if step is None:
            await complete_informational(connection, args.task_id)
            print(f"task {args.task_id} completed")
            return
    finally:
        await connection.close()
    options = OneLineParser(
        prog=f"rop task complete {args.task_id}",
        description=f"a {task.kind.value} task: {STEP[step].action} ({CLI_STEPS[step].help})",
    )
    CLI_STEPS[step].options(options)
    given = [task.reference] if task.reference else []
    step_args = options.parse_args([*given, *args.step_arguments])
    step_args.workflow_id, step_args.idempotency_key = task.workflow_id, None
    await take_step(step, step_args, settings)


async def status(args: argparse.Namespace, settings: RopSettings) -> None:
    print_model(await (await connect_pathways(settings)).status(args.workflow_id))
