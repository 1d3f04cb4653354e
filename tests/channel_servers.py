"""Real servers for the delivery channels: an SMTP server (aiosmtpd) that can be stopped and
started again, and an HTTP receiver that verifies webhook signatures and refuses replays."""

from __future__ import annotations

import email
import email.policy
import json
import socket
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import asyncpg
from aiohttp import web
from aiosmtpd.controller import Controller

from activities.channels import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    EmailChannel,
    SmtpSettings,
    verify,
)
from activities.delivery import DeliveryActivities
from rop_domain.models import WrittenStandard
from rop_domain.routing import Channel, Route, RoutingTable
from tests import factories

SECRET = "webhook-test-secret"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Inbox:
    """What a real SMTP server received."""

    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted for delivery"


class SmtpServer:
    """A real SMTP server on a fixed port that can be stopped and started again."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.port = free_port()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@dataclass
class Receiver:
    """A webhook receiver that verifies signatures and refuses replays, as ours should."""

    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    secret: str = SECRET
    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    """Every request as it came (body and headers), to send on elsewhere in a test."""
    down: bool = False
    """Answer 503 to everything (the receiving system is down)."""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((body, dict(request.headers)))
        if self.down:
            return web.Response(status=503)
        delivery = request.headers.get(DELIVERY_HEADER, "")
        valid = verify(
            self.secret.encode(),
            timestamp=request.headers.get(TIMESTAMP_HEADER, ""),
            body=body,
            signature=request.headers.get(SIGNATURE_HEADER, ""),
        )
        if not valid or delivery in self.seen:
            self.refused.append(delivery)
            return web.Response(status=401)
        self.seen.add(delivery)
        self.accepted.append(json.loads(body))
        return web.Response(status=204)


async def start_receiver(secret: str = SECRET) -> tuple[str, Receiver, web.AppRunner]:
    """Start a webhook receiver on a free local port, verifying with `secret`."""
    state = Receiver(secret=secret)
    app = web.Application()
    app.router.add_post("/rop", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return f"http://127.0.0.1:{port}/rop", state, runner


def email_delivery(pool: asyncpg.Pool, smtp: SmtpServer) -> DeliveryActivities:
    """Deliveries that send the receiving clinician's tasks by e-mail through `smtp` (nynorsk)."""
    routing = RoutingTable(
        routes=[
            Route(
                recipient=factories.CLINICIAN,
                channel=Channel.EMAIL,
                address="lege@example.invalid",
                standard=WrittenStandard.NYNORSK,
            )
        ]
    )
    settings = SmtpSettings(host="127.0.0.1", port=smtp.port)
    return DeliveryActivities(pool, routing, email=EmailChannel(settings))
