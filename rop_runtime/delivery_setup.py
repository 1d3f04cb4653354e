"""Building the delivery channels from settings: the worker's side of routing tasks."""

from __future__ import annotations

import asyncpg
import httpx

from activities.channels import EmailChannel, SmtpSettings, WebhookChannel
from activities.delivery import DeliveryActivities
from activities.dialog_channel import DialogChannel
from activities.dialogmelding import Party
from activities.nhn import HelseIdTokens, Meldingstjener
from rop_domain.routing import Channel, RoutingTable
from rop_runtime.settings import RopSettings


def build_delivery(
    settings: RopSettings, pool: asyncpg.Pool, http: httpx.AsyncClient
) -> DeliveryActivities:
    """Channels as configured; with no SMTP host, e-mail addresses are not e-mailed; with
    Meldingstjener, HER addresses get Dialogmelding."""
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
    dialog = _dialog(settings, http)
    routing = (
        RoutingTable.from_file(settings.routing_file)
        if settings.routing_file
        else RoutingTable(email_unrouted_addresses=email is not None)
    )
    routing = routing.model_copy(update={"dialog_unrouted_her_addresses": dialog is not None})
    # A webhook route signs with its own secret (its `secret_file`) or the shared one.
    routes_webhooks = any(route.channel is Channel.WEBHOOK for route in routing.routes)
    webhook = (
        WebhookChannel(settings.webhook_secret, http)
        if settings.webhook_secret or routes_webhooks
        else None
    )
    return DeliveryActivities(
        pool,
        routing,
        email=email,
        webhook=webhook,
        dialog=dialog,
        task_link_base=settings.task_link_base,
    )


def _dialog(settings: RopSettings, http: httpx.AsyncClient) -> DialogChannel | None:
    """Dialogmelding through Meldingstjener, signed in with HelseID, if configured."""
    if settings.nhn_meldingstjener_url is None:
        return None
    needed = {
        "ROP_NHN_SENDER_HER_ADDRESS": settings.nhn_sender_her_address,
        "ROP_HELSEID_TOKEN_ENDPOINT": settings.helseid_token_endpoint,
        "ROP_HELSEID_CLIENT_ID": settings.helseid_client_id,
        "ROP_HELSEID_KEY_FILE": settings.helseid_key_file,
    }
    missing = [name for name, value in needed.items() if value is None]
    if missing:
        raise ValueError(f"ROP_NHN_MELDINGSTJENER_URL is set: set {', '.join(missing)} too")
    assert settings.helseid_key_file is not None
    assert settings.helseid_token_endpoint is not None
    assert settings.helseid_client_id is not None
    assert settings.nhn_sender_her_address is not None
    tokens = HelseIdTokens.from_key_file(
        http,
        key_file=settings.helseid_key_file,
        token_endpoint=settings.helseid_token_endpoint,
        client_id=settings.helseid_client_id,
        scope=settings.helseid_scope,
    )
    meldingstjener = Meldingstjener(
        http, settings.nhn_meldingstjener_url, tokens, settings.nhn_source_system
    )
    return DialogChannel(
        meldingstjener, Party.at(settings.nhn_sender_her_address, settings.nhn_sender_name)
    )
