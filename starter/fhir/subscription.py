"""Taking FHIR R4 Subscriptions (the Subscriptions R5 Backport IG's shape) from systems:
the topic "a task for an owner" with one filter on the owner, a rest-hook channel, `id-only`
or `empty` content (a notification carries no patient data), an optional heartbeat period.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B.subscription import Subscription
from pydantic import ValidationError

from activities.subscription_bundles import (
    CONTENTS,
    FILTER_CRITERIA,
    HEARTBEAT_PERIOD,
    PAYLOAD_CONTENT,
    TOPIC,
    SubscriptionRow,
)
from activities.task_owner import OwnerType

_FILTER = re.compile(r"^Task\?owner=(Practitioner|CareTeam|Organization)/([A-Za-z0-9\-.]{1,64})$")
_HEADER = re.compile(r"^[A-Za-z0-9-]{1,64}: ?[\x20-\x7e]{1,1000}$")
"""A channel header as a receiver's system sets it: printable ASCII only (no header
injection). The signature's own headers are set after these, so none can shadow them."""
_ENDPOINT = re.compile(r"^(https://|http://127\.0\.0\.1[:/]|http://localhost[:/])")


class SubscriptionRefused(ValueError):
    """A Subscription this server does not take: the message says which element and why."""

    def __init__(self, element: str, message: str) -> None:
        super().__init__(message)
        self.element = element


@dataclass(frozen=True)
class SubscriptionRequest:
    """What a new subscription asks for, checked."""

    owner_type: OwnerType
    owner: str
    endpoint: str
    headers: list[str]
    content: str
    heartbeat_seconds: int | None


def parse_subscription(document: dict[str, Any]) -> SubscriptionRequest:
    """A Subscription a system sends, as R4 and the Backport IG shape it; `SubscriptionRefused`
    names the element that is wrong."""
    try:
        resource = Subscription.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        raise SubscriptionRefused(
            ".".join(str(part) for part in first["loc"]) or "Subscription", first["msg"]
        ) from None
    if resource.criteria != TOPIC:
        raise SubscriptionRefused("criteria", f"the topic is {TOPIC}")
    filters = [
        e.valueString
        for e in (resource.criteria__ext.extension if resource.criteria__ext else None) or []
        if e.url == FILTER_CRITERIA
    ]
    match = _FILTER.fullmatch(filters[0] or "") if len(filters) == 1 else None
    if match is None:
        raise SubscriptionRefused(
            "criteria.extension",
            "one filter criteria: Task?owner=<CareTeam|Practitioner|Organization>/<id>",
        )
    channel = resource.channel
    if channel.type != "rest-hook":
        raise SubscriptionRefused("channel.type", "rest-hook is the channel this server sends")
    endpoint = str(channel.endpoint or "")
    if not _ENDPOINT.match(endpoint):
        raise SubscriptionRefused("channel.endpoint", "an https:// endpoint")
    if channel.payload not in (None, "application/fhir+json"):
        raise SubscriptionRefused("channel.payload", "application/fhir+json")
    content = "id-only"
    for extension in (channel.payload__ext.extension if channel.payload__ext else None) or []:
        if extension.url == PAYLOAD_CONTENT:
            content = str(extension.valueCode)
    if content not in CONTENTS:
        raise SubscriptionRefused(
            "channel.payload.extension",
            f"one of {', '.join(CONTENTS)}: a notification carries no patient data; read the "
            "Task it names with your own token",
        )
    heartbeat = None
    for extension in channel.extension or []:
        if extension.url == HEARTBEAT_PERIOD:
            heartbeat = int(extension.valueUnsignedInt or 0) or None
    headers = [str(header) for header in channel.header or []]
    if len(headers) > 10 or not all(_HEADER.fullmatch(header) for header in headers):
        raise SubscriptionRefused(
            "channel.header", "at most 10, each `Name: value` in printable ASCII"
        )
    return SubscriptionRequest(
        owner_type=OwnerType(match.group(1)),
        owner=match.group(2),
        endpoint=endpoint,
        headers=headers,
        content=content,
        heartbeat_seconds=heartbeat,
    )


def subscription_resource(row: SubscriptionRow) -> dict[str, Any]:
    """The subscription as a FHIR R4 Subscription, validated."""
    channel: dict[str, Any] = {
        "type": "rest-hook",
        "endpoint": row.endpoint,
        "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": row.content}]},
    }
    if row.heartbeat_seconds:
        channel["extension"] = [
            {"url": HEARTBEAT_PERIOD, "valueUnsignedInt": row.heartbeat_seconds}
        ]
    resource = {
        "resourceType": "Subscription",
        "id": str(row.id),
        "status": row.status,
        "reason": "Tasks for an owner (rop-forlop)",
        "criteria": TOPIC,
        "_criteria": {
            "extension": [
                {"url": FILTER_CRITERIA, "valueString": f"Task?owner={row.owner_type}/{row.owner}"}
            ]
        },
        "channel": channel,
        **({"error": row.error} if row.error else {}),
    }
    return Subscription.model_validate(resource).model_dump(mode="json", exclude_none=True)
