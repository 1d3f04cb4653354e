"""A pathway as a FHIR R4 Bundle: a CarePlan with the measures (and the crisis plan, its
involvement coded) as its activities, the pathway's Tasks, an Appointment for the
clarification meeting, and once it is held an Encounter saying who took part.

Every party is a typed reference: a person by HPR number (Practitioner), a relative
(RelatedPerson), the patient, or a unit or organisation by our id (Organization); an e-mail
address is never made an Organization's id (a task's owner is then named by display only).

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

from rop_domain.models import Participant, Phase
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
    if status.invite is not None and status.meeting is not None:
        entries.append(
            {
                "fullUrl": _full_url(workflow_id, "encounter"),
                "resource": _encounter(status, subject, appointment_url),
            }
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
        activities.append(
            {
                "detail": {
                    "extension": [
                        {"url": systems.MADE_WITH_PATIENT, "valueBoolean": plan.made_with_patient},
                        {
                            "url": systems.RELATIVES_INVOLVED,
                            "valueBoolean": plan.relatives_involved,
                        },
                    ],
                    "code": {
                        "coding": [{"system": systems.CARE_ACTIVITY, "code": "kriseplan"}],
                        "text": f"Kriseplan versjon {plan.version}",
                    },
                    "status": "in-progress",
                    "scheduledString": f"neste revisjon {plan.next_revision.isoformat()}",
                }
            }
        )
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
    # Before the meeting nobody's answer is recorded (needs-action); once it is held, who came
    # (the meeting's record) accepted and the others declined.
    came = _came(status)

    def answer(role: str) -> str:
        if came is None:
            return "needs-action"
        return "accepted" if role in came else "declined"

    participants: list[dict[str, Any]] = [
        {"actor": subject, "required": "required", "status": answer("patient")},
        *(
            {
                "type": [_role(participant.role.value)],
                "actor": _party(participant, subject),
                "status": answer(participant.role.value),
            }
            for participant in invite.invite.participants
            if participant.role.value != "patient"
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


def _came(status: PathwayStatus) -> set[str] | None:
    """The roles that took part in the held meeting (None before it): attended by role, or
    named among the free-text attendees."""
    if status.meeting is None:
        return None
    meeting = status.meeting
    return {role.value for role in meeting.attended} | {name.lower() for name in meeting.attendees}


def _role(role: str) -> dict[str, Any]:
    return {"coding": [{"system": systems.PARTICIPANT_ROLE, "code": role}], "text": role}


def _party(participant: Participant, subject: dict[str, Any]) -> dict[str, Any]:
    """A meeting party as a typed reference: the patient, a relative, a person by HPR number,
    or the unit or organisation by our id; a display alone where none is known."""
    role = participant.role.value
    if role == "patient":
        return subject
    if role == "parorende":
        return {"type": "RelatedPerson", "display": participant.name}
    if participant.person and _HPR_NUMBER.match(participant.person):
        return {
            "type": "Practitioner",
            "identifier": {"system": systems.HPR, "value": participant.person},
            "display": participant.name,
        }
    if participant.organisation:
        return {
            "type": "Organization",
            "identifier": {"system": systems.LOCAL_ID, "value": participant.organisation},
            "display": participant.name,
        }
    return {"type": "Organization", "display": participant.name}


def _encounter(
    status: PathwayStatus, subject: dict[str, Any], appointment_url: str
) -> dict[str, Any]:
    """The held avklaringsmøte: when, and the persons who took part (organisations show as
    accepted on the Appointment: an Encounter's participant is a person)."""
    meeting, invite = status.meeting, status.invite
    assert meeting is not None
    assert invite is not None
    came = _came(status) or set()
    individuals = [
        {"type": [_role(p.role.value)], "individual": _party(p, subject)}
        for p in invite.invite.participants
        if p.role.value in came
        and _party(p, subject).get("type") in ("Practitioner", "RelatedPerson")
    ]
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": systems.ACT_CODE, "code": "AMB", "display": "ambulatory"},
        "type": [{"text": "Avklaringsmøte"}],
        "subject": subject,
        "appointment": [{"reference": appointment_url, "type": "Appointment"}],
        "period": {
            "start": meeting.held_at.isoformat(),
            "end": (meeting.held_at + NOMINAL_MEETING_LENGTH).isoformat(),
        },
        "participant": individuals or None,
    }
    return {k: v for k, v in resource.items() if v is not None}


def _owner(task: TaskView) -> dict[str, Any]:
    """Whom a task is for: a person by HPR number, a unit by our id, or, for an address
    (e-mail) with no identity behind it, a display alone."""
    if "@" in task.recipient:
        return {"display": task.recipient}
    return _local(task.recipient)


def task_elements(task: TaskView) -> dict[str, Any]:
    """What every Task of ours says of its task, in a pathway's bundle as in a Task search
    (`starter.fhir.task`): its id, status, kind, text, when it was raised and is due."""
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
        "authoredOn": task.created_at.isoformat(),
    }
    if task.due_at is not None:
        resource["restriction"] = {"period": {"end": task.due_at.isoformat()}}
    return resource


def _task(task: TaskView, subject: dict[str, Any], careplan_url: str) -> dict[str, Any]:
    return {
        **task_elements(task),
        "focus": {"reference": careplan_url, "type": "CarePlan"},
        "for": subject,
        "owner": _owner(task),
    }
