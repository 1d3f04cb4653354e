"""`rop` commands that drive a pathway: each validates its input, then calls the same
`starter.pathways.Pathways` API a backend service would import."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

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
from rop_domain.models import Assessment, MeetingInvite, Referral, parse_referral
from rop_runtime.settings import RopSettings
from starter.cli_support import UsageError, connect_pathways, print_model, update_id
from starter.json_keys import duplicate_key


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


async def assess(args: argparse.Namespace, settings: RopSettings) -> None:
    assessment = Assessment.model_validate(
        {"assessor": args.assessor, "decision": args.decision, "reason": args.reason}
    )
    print_model(
        await (await connect_pathways(settings)).assess(
            args.workflow_id, assessment, update_id=update_id(args)
        )
    )


async def invite(args: argparse.Namespace, settings: RopSettings) -> None:
    pathways = await connect_pathways(settings)
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
    print_model(
        await pathways.invite_to_meeting(args.workflow_id, invite, update_id=update_id(args))
    )


def _participant(text: str) -> dict[str, str]:
    role, _, rest = text.partition(":")
    name, _, address = rest.partition(":")
    if not (role and name and address):
        raise UsageError(
            f"--participant {text!r}: write ROLE:NAME:ADDRESS, e.g. tsb:TSB Bergen:x@y"
        )
    return {"role": role, "name": name, "address": address}


async def meeting(args: argparse.Namespace, settings: RopSettings) -> None:
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
    print_model(
        await (await connect_pathways(settings)).record_meeting(
            args.workflow_id, outcome, update_id=update_id(args)
        )
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


async def crisis_plan(args: argparse.Namespace, settings: RopSettings) -> None:
    plan = CrisisPlan.model_validate(
        {
            "registered_by": args.by,
            "version": args.version,
            "made_with_patient": args.made_with_patient,
            "relatives_involved": args.relatives_involved,
            "next_revision": args.next_revision,
        }
    )
    pathways = await connect_pathways(settings)
    print_model(
        await pathways.register_crisis_plan(args.workflow_id, plan, update_id=update_id(args))
    )


async def measure(args: argparse.Namespace, settings: RopSettings) -> None:
    pathways = await connect_pathways(settings)
    if args.action == "cancel":
        if not args.reason:
            raise UsageError("measure cancel needs --reason")
        cancellation = MeasureCancellation(
            measure_id=args.measure_id, by=args.by, reason=args.reason
        )
        print_model(
            await pathways.cancel_measure(args.workflow_id, cancellation, update_id=update_id(args))
        )
        return
    step = MeasureStep.model_validate(
        {"measure_id": args.measure_id, "by": args.by, "note": args.note}
    )
    act = pathways.start_measure if args.action == "start" else pathways.complete_measure
    print_model(await act(args.workflow_id, step, update_id=update_id(args)))


async def revise_plan(args: argparse.Namespace, settings: RopSettings) -> None:
    revision = PlanRevision(
        revised_by=args.by, reason=args.reason, measures=_measures(args.measures)
    )
    print_model(
        await (await connect_pathways(settings)).revise_plan(
            args.workflow_id, revision, update_id=update_id(args)
        )
    )


async def review(args: argparse.Namespace, settings: RopSettings) -> None:
    review = Review.model_validate(
        {
            "reviewed_by": args.by,
            "outcome": args.outcome,
            "next_interval_weeks": args.next_weeks,
            "revised_plan": None if args.measures is None else _measures(args.measures),
            "note": args.note,
            "review_number": args.review_number,
        }
    )
    print_model(
        await (await connect_pathways(settings)).complete_review(
            args.workflow_id, review, update_id=update_id(args)
        )
    )


async def objection(args: argparse.Namespace, settings: RopSettings) -> None:
    objection = Objection.model_validate({"recorded_by": args.by, "note": args.note})
    print_model(
        await (await connect_pathways(settings)).record_objection(
            args.workflow_id, objection, update_id=update_id(args)
        )
    )


async def close(args: argparse.Namespace, settings: RopSettings) -> None:
    closure = Closure.model_validate(
        {"closed_by": args.by, "reason": args.reason, "note": args.note}
    )
    print_model(
        await (await connect_pathways(settings)).close_pathway(
            args.workflow_id, closure, update_id=update_id(args)
        )
    )


async def status(args: argparse.Namespace, settings: RopSettings) -> None:
    print_model(await (await connect_pathways(settings)).status(args.workflow_id))
