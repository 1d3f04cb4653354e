"""The HTTP API running for real: uvicorn on a port, the Temporal dev server, a worker,
PostgreSQL, API keys for the three roles, and an identity provider's JWKS endpoint."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from opentelemetry.sdk.trace import TracerProvider
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.channels import WebhookChannel
from activities.subscriptions import SubscriptionActivities
from rop_runtime.settings import RopSettings
from rop_runtime.tracing import client_interceptors
from starter.api.auth import KeyHolder, Role, write_tokens_file
from starter.api.context import ApiContext
from starter.api.server import EmbeddedServer, app_from_settings, server_config
from tests import factories
from tests.channel_servers import SECRET, free_port
from worker import build_worker

ISSUER = "https://idp.example.invalid"
AUDIENCE = "rop-forlop-api"
UNIT = "helse-bergen/TSB"
"""The unit of the factories' referrals: the test clinicians' keys and tokens are for it."""


@dataclass(frozen=True)
class IdentityProvider:
    """Signs JWTs with a key its JWKS endpoint publishes."""

    key: rsa.RSAPrivateKey
    kid: str
    jwks_url: str

    def token(
        self,
        subject: str,
        roles: list[str],
        *,
        expires_in: int = 300,
        hpr: str | None = None,
        units: list[str] | None = None,
        **claims: Any,
    ) -> str:
        """A signed token; a clinician's names the factories' unit unless `units` says."""
        if units is None and "clinician" in roles:
            units = [UNIT]
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "roles": roles,
            "iat": now,
            "exp": now + expires_in,
            **({"hpr": hpr} if hpr else {}),
            **({"rop_units": units} if units is not None else {}),
            **claims,
        }
        return jwt.encode(payload, self.key, algorithm="RS256", headers={"kid": self.kid})


@dataclass(frozen=True)
class Api:
    """A running API and a way in for each role."""

    url: str
    tokens: dict[Role, str]
    idp: IdentityProvider
    database_url: str
    task_queue: str
    tokens_file: Path
    """The API keys' digests the API reads (the codec server can read them too)."""

    def client(self, role: Role | None = None, token: str | None = None) -> httpx.AsyncClient:
        headers = {}
        bearer = token or (self.tokens[role] if role else None)
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)

    async def events(self, workflow_id: str, kind: str) -> int:
        """How many events of `kind` the record holds for the pathway (a step applied once
        leaves one)."""
        connection = await asyncpg.connect(self.database_url)
        try:
            count: int = await connection.fetchval(
                "SELECT count(*) FROM pathway_events WHERE workflow_id = $1 AND kind = $2",
                workflow_id,
                kind,
            )
        finally:
            await connection.close()
        return count


def key_holder(role: Role) -> KeyHolder:
    """The test API key of a role; the clinician's names the factories' clinician."""
    if role is Role.CLINICIAN:
        return KeyHolder(f"test-{role.value}", role, person=factories.CLINICIAN, units=(UNIT,))
    return KeyHolder(f"test-{role.value}", role)


@asynccontextmanager
async def identity_provider() -> AsyncIterator[IdentityProvider]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = uuid.uuid4().hex[:8]
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks = {"keys": [{**public, "kid": kid, "use": "sig", "alg": "RS256"}]}

    async def serve_jwks(_: web.Request) -> web.Response:
        return web.json_response(jwks)

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", serve_jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield IdentityProvider(key, kid, f"http://127.0.0.1:{port}/.well-known/jwks.json")
    finally:
        await runner.cleanup()


@asynccontextmanager
async def running_api(
    dev_server: WorkflowEnvironment,
    pool: asyncpg.Pool,
    database_url: str,
    folder: Path,
    tracing: TracerProvider | None = None,
    more_holders: tuple[KeyHolder, ...] = (),
    **more_settings: Any,
) -> AsyncIterator[Api]:
    """Worker and API on their own task queue; the API wired from settings, as `rop api`
    (`more_settings` added or put in their place); both traced by `tracing` if given.
    `more_holders`: API keys for more people (the worklist's demo people)."""
    task_queue = f"rop-api-{uuid.uuid4().hex[:8]}"
    tokens = {role: secrets.token_urlsafe(24) for role in Role}
    tokens_file = folder / "api-tokens.json"
    holders = {t: key_holder(role) for role, t in tokens.items()}
    holders.update({secrets.token_urlsafe(24): holder for holder in more_holders})
    write_tokens_file(tokens_file, holders)
    async with identity_provider() as idp:
        settings = RopSettings(
            **{
                "temporal_address": dev_server.client.service_client.config.target_host,
                "task_queue": task_queue,
                "database_url": database_url,
                "allow_synthetic_ids": True,
                "api_tokens_file": tokens_file,
                "api_jwt_jwks_url": idp.jwks_url,
                "api_jwt_issuer": ISSUER,
                "api_jwt_audience": AUDIENCE,
                "api_jwt_actor_claim": "hpr",
                # verified addresses only (tests/test_need_of_service.py)
                "api_jwt_trust_email": True,
                "answer_timeout_seconds": 3,
                **more_settings,
            }
        )
        port = free_port()
        server = EmbeddedServer(
            server_config(
                app_from_settings(settings, database_url, tracing=tracing), "127.0.0.1", port
            )
        )
        worker_client = dev_server.client
        if tracing is not None:
            worker_client = await Client.connect(
                dev_server.client.service_client.config.target_host,
                data_converter=dev_server.client.data_converter,
                interceptors=client_interceptors(tracing),
            )
        async with (
            httpx.AsyncClient(timeout=10) as http,
            build_worker(
                worker_client,
                pool,
                task_queue,
                subscriptions=SubscriptionActivities(
                    pool,
                    WebhookChannel(SecretStr(SECRET), http),
                    f"http://127.0.0.1:{port}/fhir",
                    wait=timedelta(seconds=1),
                ),
            ),
        ):
            serving = await server.start()
            try:
                yield Api(
                    f"http://127.0.0.1:{port}", tokens, idp, database_url, task_queue, tokens_file
                )
            finally:
                await server.stop(serving)


def problem_of(response: httpx.Response) -> dict[str, Any]:
    """The problem document of an error response; fails if it is not one."""
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    problem: dict[str, Any] = response.json()
    assert problem["status"] == response.status_code
    return problem


@asynccontextmanager
async def without_connections() -> AsyncIterator[ApiContext]:
    """For `create_app` where a test needs no Temporal and no records (the docs, /metrics):
    the app's lifespan never runs under httpx's ASGI transport, and fails loudly if it does."""
    raise AssertionError("this test's app needs no connections")
    yield  # pragma: no cover
