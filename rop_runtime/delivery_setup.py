"""Building the delivery channels from settings: the worker's side of routing tasks."""

from __future__ import annotations

import asyncpg
import httpx

from activities.channels import EmailChannel, SmtpSettings, WebhookChannel
from activities.delivery import DeliveryActivities
from rop_domain.routing import Channel, RoutingTable
from rop_runtime.settings import RopSettings


def build_delivery(
    settings: RopSettings, pool: asyncpg.Pool, http: httpx.AsyncClient
) -> DeliveryActivities:
    """Channels as configured; with no SMTP host, e-mail addresses are not e-mailed."""
    email = None
    if settings.smtp_host:
        email = EmailChannel(
            SmtpSettings(
                host=settings.smtp_host,
                port=settings.smtp_port,
                sender=settings.smtp_sender,
                use_tls=settings.smtp_tls,
                start_tls=settings.smtp_starttls,
                username=settings.smtp_username,
                password=settings.smtp_password,
            )
        )
    routing = (
        RoutingTable.from_file(settings.routing_file)
        if settings.routing_file
        else RoutingTable(email_unrouted_addresses=email is not None)
    )
    # A webhook route signs with its own secret (its `secret_file`) or the shared one.
    routes_webhooks = any(route.channel is Channel.WEBHOOK for route in routing.routes)
    webhook = (
        WebhookChannel(settings.webhook_secret, http)
        if settings.webhook_secret or routes_webhooks
        else None
    )
    return DeliveryActivities(
        pool, routing, email=email, webhook=webhook, task_link_base=settings.task_link_base
    )
