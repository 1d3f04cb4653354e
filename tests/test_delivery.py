"""Delivering tasks by e-mail (a real SMTP server) and webhook (a real HTTP receiver), once."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.channels import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    EmailChannel,
    SmtpSettings,
    WebhookChannel,
    sign,
)
from activities.delivery import DeliveryActivities, message_id
from activities.records import RecordActivities
from rop_domain.commands import (
    Delivery,
    EventKind,
    NewPathway,
    Notification,
    PathwayEvent,
    PathwayStep,
    SummaryChange,
)
from rop_domain.models import WrittenStandard
from rop_domain.routing import Channel, Route, RoutingTable
from rop_domain.tasks import TaskKind
from tests import factories
from tests.channel_servers import SECRET, Receiver, SmtpServer, start_receiver

NATIONAL_ID = factories.national_id("150586951")


async def _queue_task(pool: asyncpg.Pool, recipient: str, kind: TaskKind) -> str:
    """A real pathway record with one task, as the workflow's steps write them."""
    referral = factories.parse_referral_for_test(
        factories.referral_data(datetime(2026, 4, 1, 9, tzinfo=UTC))
    )
    workflow_id = referral.workflow_id
    records = RecordActivities(pool)
    env = ActivityEnvironment()
    await env.run(
        records.open_pathway,
        NewPathway(workflow_id=workflow_id, referral=referral, meeting_deadline=date(2026, 4, 20)),
    )
    key = f"{workflow_id}/00002-{kind.value}"
    await env.run(
        records.record_step,
        PathwayStep(
            events=[
                PathwayEvent(
                    idempotency_key=f"{workflow_id}/00001-step",
                    workflow_id=workflow_id,
                    kind=EventKind.MEETING_REMINDER_SENT,
                    actor="rop-forlop",
                    occurred_at=datetime(2026, 4, 16, 6, tzinfo=UTC),
                    change=SummaryChange(),
                )
            ],
            notifications=[
                Notification(
                    idempotency_key=key,
                    workflow_id=workflow_id,
                    kind=kind,
                    recipient=recipient,
                    params=factories.TASK_PARAMS | {"referral_id": referral.referral_id},
                )
            ],
        ),
    )
    return key


async def _delivery_row(pool: asyncpg.Pool, key: str) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT d.* FROM deliveries d JOIN tasks t ON t.id = d.task_id WHERE t.idempotency_key = $1",
        key,
    )
    assert row is not None
    return row


def _email_activities(
    pool: asyncpg.Pool, controller: SmtpServer, routing: RoutingTable
) -> DeliveryActivities:
    settings = SmtpSettings(host="127.0.0.1", port=controller.port, sender="rop@example.invalid")
    return DeliveryActivities(
        pool, routing, email=EmailChannel(settings), task_link_base="https://rop.example"
    )


async def test_email_is_sent_once_in_the_routed_standard(
    pool: asyncpg.Pool, smtp_server: SmtpServer
) -> None:
    controller, inbox = smtp_server, smtp_server.inbox
    routing = RoutingTable(
        routes=[
            Route(
                recipient="9000123",
                channel=Channel.EMAIL,
                address="lege@example.invalid",
                standard=WrittenStandard.NYNORSK,
            )
        ]
    )
    key = await _queue_task(pool, "9000123", TaskKind.INVITE_TO_MEETING_REMINDER)
    deliveries = _email_activities(pool, controller, routing)
    env = ActivityEnvironment()
    first = await env.run(deliveries.deliver, Delivery(task_key=key, max_attempts=5))
    again = await env.run(deliveries.deliver, Delivery(task_key=key, max_attempts=5))
    assert (first.status, again.status) == ("sent", "sent")
    assert len(inbox.messages) == 1
    sent = inbox.messages[0]
    assert sent["To"] == "lege@example.invalid"
    assert sent["Subject"] == "Påminning: kall inn til avklaringsmøte innan 20.04.2026"
    assert sent["Message-ID"] == message_id(key)
    text = sent.get_body(preferencelist=("plain",))
    html = sent.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    assert "https://rop.example/tasks/" in text.get_content()
    whole = sent.as_string()
    assert NATIONAL_ID not in whole
    assert "pseudo-123" not in whole


async def test_smtp_down_then_up_delivers_exactly_one_message(
    pool: asyncpg.Pool, smtp_server: SmtpServer
) -> None:
    controller, inbox = smtp_server, smtp_server.inbox
    key = await _queue_task(pool, "kontakt@example.invalid", TaskKind.MEETING_INVITATION)
    deliveries = _email_activities(pool, controller, RoutingTable())
    controller.stop()
    with pytest.raises(Exception, match=r"(?i)connect"):
        await ActivityEnvironment().run(deliveries.deliver, Delivery(task_key=key, max_attempts=5))
    row = await _delivery_row(pool, key)
    assert (row["status"], row["attempts"]) == ("sending", 1)
    assert row["last_error"]

    controller.start()
    retried = await ActivityEnvironment().run(
        deliveries.deliver, Delivery(task_key=key, max_attempts=5)
    )
    await ActivityEnvironment().run(deliveries.deliver, Delivery(task_key=key, max_attempts=5))
    assert (retried.status, retried.attempts) == ("sent", 2)
    assert len(inbox.messages) == 1
    assert inbox.messages[0]["Message-ID"] == message_id(key)


async def test_the_last_failed_attempt_marks_the_delivery_failed(
    pool: asyncpg.Pool, smtp_server: SmtpServer
) -> None:
    controller = smtp_server
    key = await _queue_task(pool, "kontakt@example.invalid", TaskKind.MEETING_INVITATION)
    deliveries = _email_activities(pool, controller, RoutingTable())
    controller.stop()
    with pytest.raises(ApplicationError, match="failed after 1 attempts") as failure:
        await ActivityEnvironment().run(deliveries.deliver, Delivery(task_key=key, max_attempts=1))
    assert failure.value.non_retryable
    assert (await _delivery_row(pool, key))["status"] == "failed"


async def test_unrouted_ids_stay_on_the_task_list(pool: asyncpg.Pool) -> None:
    key = await _queue_task(pool, "9000999", TaskKind.ASSESS_REFERRAL)
    deliveries = DeliveryActivities(pool, RoutingTable())
    outcome = await ActivityEnvironment().run(
        deliveries.deliver, Delivery(task_key=key, max_attempts=3)
    )
    assert (outcome.channel, outcome.status) == (Channel.TASK_LIST, "task-list")


async def test_webhook_is_signed_and_verified(
    pool: asyncpg.Pool, receiver: tuple[str, Receiver]
) -> None:
    url, state = receiver
    routing = RoutingTable(
        routes=[Route(recipient="bergen-bolig", channel=Channel.WEBHOOK, address=url)]
    )
    key = await _queue_task(pool, "bergen-bolig", TaskKind.START_MEASURE)
    async with httpx.AsyncClient() as http:
        deliveries = DeliveryActivities(
            pool, routing, webhook=WebhookChannel(SecretStr(SECRET), http)
        )
        env = ActivityEnvironment()
        await env.run(deliveries.deliver, Delivery(task_key=key, max_attempts=3))
        await env.run(deliveries.deliver, Delivery(task_key=key, max_attempts=3))
    assert len(state.accepted) == 1
    payload = state.accepted[0]
    assert payload["kind"] == "start-measure"
    assert payload["subject"].startswith("Start tiltak bolig i ROP-forløp")
    assert NATIONAL_ID not in json.dumps(payload)


async def test_each_receiver_has_its_own_secret_and_the_body_names_its_recipient(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A body signed for one receiver does not verify at another (finding: one shared
    secret let a body for /kommune verify anywhere), and it says whom it is for."""
    secrets = {name: f"{name}-secret-{uuid.uuid4().hex}" for name in ("kommune", "bolig")}
    receivers = {name: await start_receiver(secret) for name, secret in secrets.items()}
    files = {}
    for name, secret in secrets.items():
        files[name] = tmp_path / f"{name}.secret"
        files[name].write_text(secret + "\n")
    routing = RoutingTable(
        routes=[
            Route(
                recipient="kommune-4601",
                channel=Channel.WEBHOOK,
                address=receivers["kommune"][0],
                secret_file=files["kommune"],
            ),
            Route(
                recipient="bergen-bolig",
                channel=Channel.WEBHOOK,
                address=receivers["bolig"][0],
                secret_file=files["bolig"],
            ),
        ]
    )
    key = await _queue_task(pool, "kommune-4601", TaskKind.START_MEASURE)
    try:
        async with httpx.AsyncClient() as http:
            deliveries = DeliveryActivities(pool, routing, webhook=WebhookChannel(None, http))
            await ActivityEnvironment().run(
                deliveries.deliver, Delivery(task_key=key, max_attempts=3)
            )
            _, kommune, _ = receivers["kommune"]
            [payload] = kommune.accepted
            assert payload["recipient"] == "kommune-4601"
            [(body, headers)] = kommune.received
            forwarded = {
                name: headers[name]
                for name in (TIMESTAMP_HEADER, SIGNATURE_HEADER, DELIVERY_HEADER)
            }
            other_url, bolig, _ = receivers["bolig"]
            refused = await http.post(other_url, content=body, headers=forwarded)
        assert refused.status_code == 401
        assert bolig.accepted == []
    finally:
        for _, _, runner in receivers.values():
            await runner.cleanup()


async def test_receiver_refuses_a_tampered_body_and_a_replay(
    receiver: tuple[str, Receiver],
) -> None:
    url, state = receiver
    body = json.dumps({"kind": "start-measure"}).encode()
    now = int(time.time())
    good = {
        TIMESTAMP_HEADER: str(now),
        SIGNATURE_HEADER: sign(SECRET.encode(), now, body),
        DELIVERY_HEADER: f"<{uuid.uuid4().hex}@rop-forlop>",
    }
    async with httpx.AsyncClient() as http:
        tampered = await http.post(url, content=body.replace(b"start", b"stopp"), headers=good)
        accepted = await http.post(url, content=body, headers=good)
        replayed = await http.post(url, content=body, headers=good)
        old = now - 3600
        stale = await http.post(
            url,
            content=body,
            headers={
                TIMESTAMP_HEADER: str(old),
                SIGNATURE_HEADER: sign(SECRET.encode(), old, body),
                DELIVERY_HEADER: "<another@rop-forlop>",
            },
        )
    assert (tampered.status_code, accepted.status_code) == (401, 204)
    assert (replayed.status_code, stale.status_code) == (401, 401)
    assert len(state.accepted) == 1


def test_routing() -> None:
    routing = RoutingTable(
        routes=[
            Route(
                recipient="nav-bergen", channel=Channel.WEBHOOK, address="https://nav.example/rop"
            )
        ]
    )
    assert routing.route_for("nav-bergen").channel is Channel.WEBHOOK
    assert routing.route_for("lege@example.invalid").address == "lege@example.invalid"
    assert routing.route_for("9000123").channel is Channel.TASK_LIST
    with pytest.raises(ValueError, match="needs an address"):
        Route(recipient="x", channel=Channel.EMAIL)
    with pytest.raises(ValueError, match="https"):
        Route(recipient="x", channel=Channel.WEBHOOK, address="http://nav.example/rop")
