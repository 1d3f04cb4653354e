"""FHIR Subscriptions (R4, the Backport IG's shape) to the tasks of an owner: created through
the API running for real (a handshake, then event notifications naming the Tasks, `$status`,
turned off), and a receiver down for 30 minutes on the time-skipping server that then gets
every notification once, numbered without a gap. Every Bundle and resource is checked with
fhir.resources' R4 models; every notification's signature by the receiver."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest_asyncio
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.subscription import Subscription
from pydantic import SecretStr
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Replayer

from activities.channels import WebhookChannel
from activities.records import RecordActivities
from activities.subscription_bundles import (
    FILTER_CRITERIA,
    PAYLOAD_CONTENT,
    STATUS_PROFILE,
    TOPIC,
)
from activities.subscriptions import SubscriptionActivities
from rop_domain.commands import EventKind, NewPathway, PathwayStep, SubscriptionRun
from rop_domain.models import ValidationPolicy, parse_referral
from rop_domain.tasks import TaskKind
from starter.api.auth import Role
from tests import factories
from tests.api_harness import Api
from tests.channel_servers import SECRET, Receiver, start_receiver
from tests.conftest import DATA_CONVERTER
from tests.pathway_harness import running_pathways
from workflows.subscription import (
    SUBSCRIPTION_WORKFLOW,
    RopSubscription,
    subscription_workflow_id,
)


def subscription_body(endpoint: str, owner: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "the unit's worklist in our EPJ",
        "criteria": TOPIC,
        "_criteria": {
            "extension": [{"url": FILTER_CRITERIA, "valueString": f"Task?owner={owner}"}]
        },
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": "id-only"}]},
            "header": ["Authorization: Bearer receiver-token"],
        },
    }
    body.update(changes)
    return body


def _status(bundle: dict[str, Any]) -> dict[str, Any]:
    """A notification's status parameters by name (the Bundle valid R4 first)."""
    Bundle.model_validate(bundle)
    assert bundle["type"] == "history"
    status = bundle["entry"][0]["resource"]
    assert status["meta"]["profile"] == [STATUS_PROFILE]
    return {p["name"]: p for p in status["parameter"]}


def _event_numbers(bundle: dict[str, Any]) -> list[int]:
    events = [
        p for p in bundle["entry"][0]["resource"]["parameter"] if p["name"] == "notification-event"
    ]
    return [int(next(part["valueString"] for part in e["part"] if part["name"] == "event-number")) for e in events]  # fmt: skip


async def _unit_tasks(pool: asyncpg.Pool, trust: str, count: int) -> list[str]:
    """`count` pathways of `trust`, each inviting the unit's TSB contact point: a task each for
    `CareTeam/<trust>.TSB`, written by the record service."""
    records, environment = RecordActivities(pool), ActivityEnvironment()
    workflow_ids = []
    for _ in range(count):
        data = factories.referral_data(datetime.now(UTC), health_trust=trust)
        referral = parse_referral(data, ValidationPolicy(allow_synthetic_ids=True))
        wid = referral.workflow_id
        workflow_ids.append(wid)
        await environment.run(
            records.open_pathway,
            NewPathway(workflow_id=wid, referral=referral, meeting_deadline=datetime.now(UTC).date(), notifications=[]),
        )  # fmt: skip
        invitation = factories.task(wid, "2-tsb", TaskKind.MEETING_INVITATION, "tsb@example.invalid", party="tsb")  # fmt: skip
        step = PathwayStep(
            events=[factories.event(wid, "2-invited", EventKind.MEETING_INVITED, factories.CLINICIAN, {})],
            notifications=[invitation],
        )  # fmt: skip
        await environment.run(records.record_step, step)
    return workflow_ids


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[tuple[str, Receiver]]:
    url, state, runner = await start_receiver()
    try:
        yield url, state
    finally:
        await runner.cleanup()


async def _eventually(check: Any, seconds: float = 20) -> None:
    """Poll `check` until it holds (deliveries run on the worker, a moment behind)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{check.__name__} never held")
        await asyncio.sleep(0.1)


async def test_a_subscription_is_handshaken_notified_and_turned_off(
    api: Api, pool: asyncpg.Pool, receiver: tuple[str, Receiver]
) -> None:
    url, inbox = receiver
    trust = f"helse-{uuid.uuid4().hex[:8]}"
    owner = f"CareTeam/{trust}.TSB"
    async with api.client(Role.SYSTEM) as system:
        created = await system.post(
            "/fhir/Subscription",
            json=subscription_body(url, owner),
            headers={"Content-Type": "application/fhir+json"},
        )
        assert created.status_code == 201, created.text
        Subscription.model_validate(created.json())
        location = created.headers["location"]

        async def handshaken() -> bool:
            return any(_status(b)["type"]["valueCode"] == "handshake" for b in inbox.accepted)

        await _eventually(handshaken)
        assert inbox.received[0][1]["Authorization"] == "Bearer receiver-token"
        assert inbox.received[0][1]["Content-Type"] == "application/fhir+json"

        async def active() -> bool:
            return bool((await system.get(location)).json()["status"] == "active")

        await _eventually(active)
        await _unit_tasks(pool, trust, 3)

        async def notified() -> list[int]:
            return [n for b in inbox.accepted for n in _event_numbers(b)]

        await _eventually(lambda: _at_least(notified, 3))
        numbers = await notified()
        assert numbers == [1, 2, 3]
        focus = [
            part["valueReference"]["reference"]
            for b in inbox.accepted
            for p in b["entry"][0]["resource"]["parameter"] if p["name"] == "notification-event"
            for part in p["part"] if part["name"] == "focus"
        ]  # fmt: skip
        assert all(f.startswith(f"{api.url}/fhir/Task/") for f in focus)
        for notification in inbox.accepted:  # no patient data: ids only
            assert "patient" not in str(notification).lower()
        status = (await system.get(f"{location}/$status")).json()
        Bundle.model_validate(status)
        parameters = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
        assert parameters["events-since-subscription-start"]["valueString"] == "3"
        assert parameters["type"]["valueCode"] == "query-status"
        # Off: the next task of the owner is no event.
        assert (await system.delete(location)).json()["status"] == "off"
        await _unit_tasks(pool, trust, 1)
        await asyncio.sleep(1.5)
        assert await notified() == [1, 2, 3]
        status = (await system.get(f"{location}/$status")).json()
        assert status["entry"][0]["resource"]["parameter"][4]["valueString"] == "3"
    async with api.client(Role.CLINICIAN) as clinician:
        refused = await clinician.post("/fhir/Subscription", json=subscription_body(url, owner))
        assert refused.status_code == 403


async def _at_least(numbers: Any, count: int) -> bool:
    return len(await numbers()) >= count


async def test_a_subscription_that_this_server_does_not_offer_is_422_naming_the_element(
    api: Api,
) -> None:
    endpoint = "https://ehr.example.invalid/rop"
    full = subscription_body(endpoint, "CareTeam/helse-bergen.TSB")
    full["channel"]["_payload"]["extension"][0]["valueCode"] = "full-resource"
    cases = [
        (subscription_body(endpoint, "CareTeam/helse-bergen.TSB", criteria="https://x/Topic"), "criteria"),
        (subscription_body(endpoint, "Patient/1"), "criteria.extension"),
        (subscription_body("http://ehr.example.invalid/rop", "CareTeam/helse-bergen.TSB"), "channel.endpoint"),
        (full, "channel.payload.extension"),
        (subscription_body(endpoint, "CareTeam/helse-bergen.TSB", channel={**subscription_body(endpoint, "x")["channel"], "header": ["X-A: b\r\nX-Injected: c"]}), "channel.header"),
    ]  # fmt: skip
    async with api.client(Role.SYSTEM) as system:
        for body, element in cases:
            answer = await system.post("/fhir/Subscription", json=body)
            assert answer.status_code == 422, answer.text
            assert answer.json()["errors"][0]["field"] == element


async def test_a_receiver_down_for_30_minutes_gets_every_notification_once_without_a_gap(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str,
    receiver: tuple[str, Receiver], database_url: str,
) -> None:  # fmt: skip
    url, inbox = receiver
    trust = f"helse-{uuid.uuid4().hex[:8]}"
    subscription_id = uuid.uuid4()
    owner = await asyncpg.connect(database_url)
    try:
        await owner.execute(
            "INSERT INTO subscriptions (id, owner_type, owner, endpoint, content, heartbeat_seconds, created_by) "
            "VALUES ($1, 'CareTeam', $2, $3, 'id-only', 600, 'test')",
            subscription_id, f"{trust}.TSB", url,
        )  # fmt: skip
    finally:
        await owner.close()
    async with (
        httpx.AsyncClient(timeout=5) as http,
        running_pathways(
            time_skipping_env.client, pool, task_queue,
            subscriptions=SubscriptionActivities(
                pool, WebhookChannel(SecretStr(SECRET), http), "https://rop.example.invalid/fhir",
                wait=timedelta(0), batch=4,
            ),
        ),
    ):  # fmt: skip
        handle = await time_skipping_env.client.start_workflow(
            SUBSCRIPTION_WORKFLOW, SubscriptionRun(subscription_id=str(subscription_id)),
            id=subscription_workflow_id(str(subscription_id)), task_queue=task_queue,
        )  # fmt: skip

        async def handshaken() -> bool:
            return len(inbox.accepted) >= 1

        await _eventually(handshaken)
        inbox.down = True
        await _unit_tasks(pool, trust, 10)
        await time_skipping_env.sleep(timedelta(minutes=30))
        assert all(not _event_numbers(b) for b in inbox.accepted)  # nothing got through
        inbox.down = False
        for _ in range(40):
            if sum(len(_event_numbers(b)) for b in inbox.accepted) >= 10:
                break
            await time_skipping_env.sleep(timedelta(minutes=1))
        numbers = [n for b in inbox.accepted for n in _event_numbers(b)]
        assert numbers == list(range(1, 11))  # each once, in order, no gap
        for bundle in inbox.accepted[1:]:
            status = _status(bundle)
            assert int(status["events-since-subscription-start"]["valueString"]) >= max(
                _event_numbers(bundle)
            )
        failed = await pool.fetchval(
            "SELECT count(*) FROM subscription_attempts WHERE subscription_id = $1 AND outcome LIKE 'failed%'",
            subscription_id,
        )  # fmt: skip
        assert failed >= 5  # each attempt while it was down is on record
        # Nothing to send for the subscription's heartbeat period (10 minutes): a heartbeat.
        await time_skipping_env.sleep(timedelta(minutes=11))
        kinds = [_status(b)["type"]["valueCode"] for b in inbox.accepted]
        assert kinds[-1] == "heartbeat", kinds
        assert _status(inbox.accepted[-1])["events-since-subscription-start"]["valueString"] == "10"
        await handle.terminate()
        # The run replays on today's code: the workflow is deterministic.
        history = await handle.fetch_history()
        replayer = Replayer(workflows=[RopSubscription], data_converter=DATA_CONVERTER)
        await replayer.replay_workflow(history)
