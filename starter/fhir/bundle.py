"""A pathway as a FHIR R4 Bundle: a CarePlan with the measures as its activities, the
pathway's Tasks, and an Appointment for the clarification meeting.

Built from the pathway's status (Temporal) and its tasks (the record service), then
validated by `fhir.resources`' R4B models before it leaves. The patient appears only by
the pseudonymous reference: the Bundle never carries a fødselsnummer or a name.
Resource ids are derived from the workflow id, so two exports of the same pathway name
the same resources.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from rop_domain.models import Phase
from rop_domain.plan import MeasureStatus
from rop_domain.view import PathwayStatus
from starter.fhir import systems
from starter.task_list import TaskView

NOMINAL_MEETING_LENGTH = timedelta(hours=1)
"""The invitation gives no end time; FHIR asks for both start and end or neither."""

_NAMESPACE = uuid.UUID("6f1c1d52-8f7e-4d0e-9a59-3c1f0e6b2a10")

_CAREPLAN_STATUS = {
    Phase.AWAITING_ASSESSMENT: "draft",
    Phase.AWAITING_INVITE: "active",
    Phase.MEETING_INVITED: "active",
    Phase.FOLLOW_UP: "active",
    Phase.CLOSED: "completed",
    Phase.NOT_IN_TARGET_GROUP: "revoked",
}

_ACTIVITY_STATUS = {
    MeasureStatus.PLANNED: "not-started",
    MeasureStatus.READY: "scheduled",
    MeasureStatus.ACTIVE: "in-progress",
    MeasureStatus.COMPLETED: "completed",
    MeasureStatus.CANCELLED: "cancelled",
}


def _full_url(workflow_id: str, name: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{workflow_id}/{name}')}"


_HPR_NUMBER = re.compile(r"^\d{7,9}$")


def _local(value: str) -> dict[str, Any]:
    """A person or unit as a typed reference: a Practitioner by HPR number where the id is
    one (as referrals name clinicians), else an Organization by our own id."""
    if _HPR_NUMBER.match(value):
        return {"type": "Practitioner", "identifier": {"system": systems.HPR, "value": value}}
    return {"type": "Organization", "identifier": {"system": systems.LOCAL_ID, "value": value}}


def pathway_bundle(
    status: PathwayStatus,
    patient_reference: str,
    tasks: Sequence[TaskView],
    *,
    now: datetime | None = None,
) -> Bundle:
    """The pathway as a `collection` Bundle, validated."""
    workflow_id = status.workflow_id
    careplan_url = _full_url(workflow_id, "careplan")
    appointment_url = _full_url(workflow_id, "appointment")
    subject = {
        "type": "Patient",
        "identifier": {"system": systems.PATIENT_REFERENCE, "value": patient_reference},
    }
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": careplan_url,
            "resource": _careplan(status, subject, appointment_url if status.invite else None),
        }
    ]
    if status.invite is not None:
        entries.append(
            {"fullUrl": appointment_url, "resource": _appointment(status, subject, careplan_url)}
        )
    entries += [
        {
            "fullUrl": _full_url(workflow_id, f"task/{task.id}"),
            "resource": _task(task, subject, careplan_url),
        }
        for task in tasks
    ]
    return Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "type": "collection",
            "identifier": {"system": systems.PATHWAY, "value": workflow_id},
            "timestamp": (now or datetime.now(UTC)).isoformat(),
            "entry": entries,
        }
    )


def _careplan(
    status: PathwayStatus, subject: dict[str, Any], appointment_url: str | None
) -> dict[str, Any]:
    activities: list[dict[str, Any]] = []
    if appointment_url is not None:
        activities.append(
            {
                "reference": {
                    "reference": appointment_url,
                    "type": "Appointment",
                    "display": "Avklaringsmøte",
                }
            }
        )
    for measure in status.measures:
        detail: dict[str, Any] = {
            "kind": "ServiceRequest",
            "code": {
                "coding": [{"system": systems.MEASURE_KIND, "code": measure.kind.value}],
                "text": measure.kind.value,
            },
            "status": _ACTIVITY_STATUS[measure.status],
            "performer": [_local(measure.responsible)],
        }
        description = "; ".join(
            part
            for part in (
                f"{measure.id} ({measure.provider.value})",
                measure.description,
                f"etter {', '.join(measure.depends_on)}" if measure.depends_on else None,
            )
            if part
        )
        detail["description"] = description
        activities.append({"detail": detail})
    period: dict[str, Any] = {"start": status.received_at.isoformat()}
    if status.closure is not None:
        period["end"] = status.closure.closed_at.isoformat()
    notes = []
    plan = status.crisis_plan.current
    if plan is not None:
        notes.append(
            {
                "text": f"Kriseplan versjon {plan.version}, "
                f"neste revisjon {plan.next_revision.isoformat()}; "
                f"laget sammen med pasienten: {_yes_no(plan.made_with_patient)}"
                + (
                    ""
                    if plan.made_with_patient or not plan.without_patient_reason
                    else f" ({plan.without_patient_reason})"
                )
                + f"; pårørende involvert: {_yes_no(plan.relatives_involved)}"
            }
        )
    resource: dict[str, Any] = {
        "resourceType": "CarePlan",
        "identifier": [{"system": systems.PATHWAY, "value": status.workflow_id}],
        "status": _CAREPLAN_STATUS[status.phase],
        "intent": "plan",
        "category": [{"coding": [{"system": systems.PATHWAY_PHASE, "code": status.phase.value}]}],
        "title": "ROP-forløp",
        "subject": subject,
        "period": period,
        "created": status.received_at.isoformat(),
        "activity": activities or None,
        "note": notes or None,
    }
    if status.meeting is not None:
        resource["author"] = _local(status.meeting.koordinator)
    return {k: v for k, v in resource.items() if v is not None}


def _yes_no(value: bool) -> str:
    return "ja" if value else "nei"


def _appointment(
    status: PathwayStatus, subject: dict[str, Any], careplan_url: str
) -> dict[str, Any]:
    invite = status.invite
    assert invite is not None
    held = status.meeting is not None
    if held:
        appointment_status = "fulfilled"
    elif status.phase in (Phase.CLOSED, Phase.NOT_IN_TARGET_GROUP):
        appointment_status = "cancelled"
    else:
        appointment_status = "booked"
    start = invite.invite.meeting_at
    # Nobody's answer to the invitation is recorded, so no party is marked as accepted.
    participants: list[dict[str, Any]] = [
        {"actor": subject, "required": "required", "status": "needs-action"},
        *(
            {
                "type": [{"text": participant.role.value}],
                "actor": {"display": participant.name},
                "status": "needs-action",
            }
            for participant in invite.invite.participants
        ),
    ]
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "status": appointment_status,
        "appointmentType": {"text": "Avklaringsmøte"},
        "description": "Første avklaringsmøte i ROP-forløpet",
        "start": start.isoformat(),
        "end": (start + NOMINAL_MEETING_LENGTH).isoformat(),
        "created": invite.sent_at.date().isoformat(),
        "participant": participants,
        "supportingInformation": [{"reference": careplan_url, "type": "CarePlan"}],
    }
    where = [invite.invite.location, str(invite.invite.video_link or "") or None]
    comment = "; ".join(part for part in where if part)
    if comment:
        resource["comment"] = comment
    return resource


def _task(task: TaskView, subject: dict[str, Any], careplan_url: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "identifier": [{"system": systems.TASK, "value": str(task.id)}],
        "status": task.status.value,  # our task statuses are FHIR Task's own codes
        "intent": "order",
        "code": {
            "coding": [{"system": systems.TASK_KIND, "code": task.kind.value}],
            "text": task.kind.value,
        },
        "description": task.subject,
        "focus": {"reference": careplan_url, "type": "CarePlan"},
        "for": subject,
        "authoredOn": task.created_at.isoformat(),
        "owner": _local(task.recipient),
    }
    if task.due_at is not None:
        resource["restriction"] = {"period": {"end": task.due_at.isoformat()}}
    return resource
