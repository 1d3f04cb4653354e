"""The delivery channels: e-mail over SMTP and signed webhooks.

E-mail is not a secure channel for health data, and neither is a webhook body we do
not control: what goes out is the rendered task (pathway reference, what to do, by
when, a link), never the patient's name, national id or clinical content.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
from pydantic import BaseModel, SecretStr

from activities.rendering import RenderedMessage

SIGNATURE_HEADER = "X-Rop-Signature"
TIMESTAMP_HEADER = "X-Rop-Timestamp"
DELIVERY_HEADER = "X-Rop-Delivery"


class SmtpSettings(BaseModel):
    """Where and how to send e-mail."""

    host: str = "localhost"
    port: int = 25
    sender: str = "rop-forlop@localhost"
    use_tls: bool = False  # TLS from the first byte (port 465)
    start_tls: bool = False  # STARTTLS after connecting (port 587)
    username: str | None = None
    password: SecretStr | None = None
    timeout_seconds: float = 20.0


class EmailChannel:
    """Sends one task as a multipart (text and HTML) e-mail with a stable Message-ID."""

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings

    async def send(self, to: str, message: RenderedMessage, message_id: str) -> None:
        email = EmailMessage()
        email["From"] = self._settings.sender
        email["To"] = to
        email["Subject"] = message.subject
        email["Message-ID"] = message_id
        email.set_content(message.text)
        email.add_alternative(message.html, subtype="html")
        settings = self._settings
        await aiosmtplib.send(
            email,
            hostname=settings.host,
            port=settings.port,
            use_tls=settings.use_tls,
            start_tls=settings.start_tls,
            username=settings.username,
            password=settings.password.get_secret_value() if settings.password else None,
            timeout=settings.timeout_seconds,
        )


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """HMAC-SHA256 over `<timestamp>.<body>`, as the signature header carries it."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: bytes,
    *,
    timestamp: str,
    body: bytes,
    signature: str,
    now: float | None = None,
    tolerance_seconds: int = 300,
) -> bool:
    """What a receiver checks: the signature matches and the timestamp is recent (so an
    old, captured request cannot be replayed). Receivers also remember delivery ids."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, sent_at, body), signature)


class WebhookChannel:
    """POSTs one task as JSON, signed with HMAC-SHA256 over timestamp and body.

    Each receiver may have a secret of its own (the route's `secret_file`), and the body
    names the recipient it is for, inside what is signed: a body meant for one receiver
    neither verifies at another nor passes for another recipient's there.
    """

    def __init__(self, secret: SecretStr | None, client: httpx.AsyncClient) -> None:
        self._secret = secret.get_secret_value().encode() if secret else None
        self._client = client
        self._secrets: dict[Path, bytes] = {}

    def secret_for(self, secret_file: Path | None) -> bytes:
        """The receiver's own secret (read once), else the shared one; raises if neither."""
        if secret_file is None:
            if self._secret is None:
                raise RuntimeError(
                    "this webhook route has no secret_file and no ROP_WEBHOOK_SECRET is set"
                )
            return self._secret
        if secret_file not in self._secrets:
            secret = secret_file.read_bytes().strip()
            if len(secret) < 16:
                raise RuntimeError(f"webhook secret in {secret_file} is shorter than 16 bytes")
            self._secrets[secret_file] = secret
        return self._secrets[secret_file]

    async def send(
        self,
        url: str,
        payload: dict[str, Any],
        delivery_id: str,
        secret_file: Path | None = None,
        *,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        """POST `payload`; `headers`: the receiver's own (a FHIR Subscription's channel
        headers), which never replace the signature's."""
        secret = self.secret_for(secret_file)
        body = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()
        timestamp = int(time.time())
        response = await self._client.post(
            url,
            content=body,
            headers={
                **(headers or {}),
                "Content-Type": content_type,
                TIMESTAMP_HEADER: str(timestamp),
                SIGNATURE_HEADER: sign(secret, timestamp, body),
                DELIVERY_HEADER: delivery_id,
            },
        )
        response.raise_for_status()
