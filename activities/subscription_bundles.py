"""Notifications of FHIR R4 Subscriptions, as the Subscriptions R5 Backport IG shapes them
(issue 30): each a `history` Bundle whose first entry is the subscription's status (a
Parameters resource of profile backport-subscription-status-r4) carrying
`events-since-subscription-start`, so a receiver can tell from the numbers whether it missed
one, and ask `$status` what it should have had.

A notification carries no patient data: its events name the Tasks by URL (`id-only`), or
not at all (`empty`); a receiver reads a Task with its own token, under need of service.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.parameters import Parameters

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
STATUS_PROFILE = f"{BACKPORT}/backport-subscription-status-r4"
FILTER_CRITERIA = f"{BACKPORT}/backport-filter-criteria"
PAYLOAD_CONTENT = f"{BACKPORT}/backport-payload-content"
HEARTBEAT_PERIOD = f"{BACKPORT}/backport-heartbeat-period"
TOPIC = "https://rop-forlop.no/fhir/SubscriptionTopic/task-owner"
"""A task for an owner was raised, changed status, was claimed or given back."""
CONTENTS = ("empty", "id-only")


@dataclass(frozen=True)
class SubscriptionRow:
    """A subscription as the record keeps it."""

    id: uuid.UUID
    owner_type: str
    owner: str
    endpoint: str
    headers: list[str]
    content: str
    heartbeat_seconds: int | None
    status: str
    error: str | None
    events_since_start: int


@dataclass(frozen=True)
class Event:
    """One event to notify: its number, when, and the task it is about."""

    number: int
    at: datetime
    task_id: int


def status_parameters(
    row: SubscriptionRow, kind: str, base_url: str, events: tuple[Event, ...] = ()
) -> dict[str, Any]:
    """The subscription's status (backport-subscription-status-r4): for a notification of
    `kind` (handshake, heartbeat, event-notification) or a `$status` query (query-status)."""
    parameters: list[dict[str, Any]] = [
        {
            "name": "subscription",
            "valueReference": {"reference": f"{base_url}/Subscription/{row.id}"},
        },
        {"name": "topic", "valueCanonical": TOPIC},
        {"name": "status", "valueCode": row.status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(row.events_since_start)},
    ]
    for event in events:
        part: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(event.number)},
            {"name": "timestamp", "valueInstant": event.at.isoformat()},
        ]
        if row.content != "empty":
            part.append(
                {
                    "name": "focus",
                    "valueReference": {"reference": f"{base_url}/Task/{event.task_id}"},
                }
            )
        parameters.append({"name": "notification-event", "part": part})
    if row.error:
        parameters.append({"name": "error", "valueCodeableConcept": {"text": row.error}})
    resource = {
        "resourceType": "Parameters",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": parameters,
    }
    return Parameters.model_validate(resource).model_dump(mode="json", exclude_none=True)


def notification_bundle(
    row: SubscriptionRow, kind: str, base_url: str, at: datetime, events: tuple[Event, ...] = ()
) -> dict[str, Any]:
    """A notification: a `history` Bundle of the subscription's status."""
    status = status_parameters(row, kind, base_url, events)
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{status['id']}",
            "resource": status,
            "request": {"method": "GET", "url": f"{base_url}/Subscription/{row.id}/$status"},
            "response": {"status": "200"},
        }
    ]
    bundle = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "history",
        "timestamp": at.isoformat(),
        "entry": entries,
    }
    return Bundle.model_validate(bundle).model_dump(mode="json", exclude_none=True)
