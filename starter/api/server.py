"""Running the API: its connections from the settings, and uvicorn, alone or in the stack."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from activities.database import API_ROLE, open_records
from rop_runtime.settings import RopSettings
from rop_runtime.stopping import STOP_SIGNALS
from rop_runtime.tracing import client_interceptors, instrument_api, provider_from_environment
from starter.api.app import create_app
from starter.api.auth import (
    Authenticator,
    HelseIdProfile,
    JwtSettings,
    JwtVerifier,
    read_tokens_file,
)
from starter.api.context import ApiContext
from starter.api.idempotency import IdempotencyStore
from starter.pathways import pathways_from_settings
from starter.worklist.signin import OidcClient


def authenticator_from_settings(settings: RopSettings) -> Authenticator:
    """API keys from the tokens file, and JWT verification if a key or JWKS is configured."""
    tokens_file = settings.api_tokens_file
    if tokens_file is None and local_tokens(settings.data_dir).exists():
        tokens_file = local_tokens(settings.data_dir)  # what `make run` made
    tokens = read_tokens_file(tokens_file) if tokens_file else []
    verifier = None
    if settings.api_jwt_public_key_file or settings.api_jwt_jwks_url:
        if not (settings.api_jwt_issuer and settings.api_jwt_audience):
            raise ValueError("JWTs need ROP_API_JWT_ISSUER and ROP_API_JWT_AUDIENCE")
        verifier = JwtVerifier(
            JwtSettings(
                issuer=settings.api_jwt_issuer,
                audience=settings.api_jwt_audience,
                public_key_pem=(
                    settings.api_jwt_public_key_file.read_text(encoding="utf-8")
                    if settings.api_jwt_public_key_file
                    else None
                ),
                jwks_url=settings.api_jwt_jwks_url,
                roles_claim=settings.api_jwt_roles_claim,
                max_lifetime=timedelta(minutes=settings.api_jwt_max_lifetime_minutes),
                actor_claim=settings.api_jwt_actor_claim,
                units_claim=settings.api_jwt_units_claim,
                email_claim=settings.api_jwt_email_claim,
                trust_email=settings.api_jwt_trust_email,
                helseid=(
                    HelseIdProfile(
                        units_by_organisation={
                            organisation: tuple(units)
                            for organisation, units in settings.api_helseid_organisation_units.items()
                        },
                        writes_need_high_assurance=settings.api_helseid_writes_need_high_assurance,
                    )
                    if settings.api_helseid
                    else None
                ),
            )
        )
    return Authenticator(tokens, verifier, local_mode=settings.local_mode)


def worklist_oidc(settings: RopSettings) -> OidcClient | None:
    """The worklist page's OIDC client: the provider the API trusts, the page's client id."""
    if settings.worklist_oidc_client_id is None:
        return None
    if settings.api_jwt_issuer is None:
        raise ValueError("ROP_WORKLIST_OIDC_CLIENT_ID needs ROP_API_JWT_ISSUER (the provider)")
    secret = settings.worklist_oidc_client_secret
    return OidcClient(
        issuer=settings.api_jwt_issuer,
        client_id=settings.worklist_oidc_client_id,
        client_secret=secret.get_secret_value() if secret else None,
        scope=settings.worklist_oidc_scope,
    )


def app_from_settings(
    settings: RopSettings, database_url: str, *, tracing: TracerProvider | None = None
) -> FastAPI:
    """The API connected as the settings say: Temporal, the records (as `rop_api`), auth;
    traced by `tracing` (else as the `OTEL_*` variables say: `rop_runtime.tracing`)."""
    authenticator = authenticator_from_settings(settings)  # fail before serving
    tracing = tracing or provider_from_environment("rop-api")

    @contextlib.asynccontextmanager
    async def open_context() -> AsyncIterator[ApiContext]:
        from rop_runtime.client import connect

        pool = await open_records(database_url, API_ROLE, migrate_first=settings.migrate_on_start)
        purging = asyncio.create_task(
            IdempotencyStore(pool).purge_regularly(
                timedelta(hours=settings.api_idempotency_hours), every=timedelta(hours=1)
            )
        )
        try:
            client = await connect(settings, interceptors=client_interceptors(tracing))
            yield ApiContext(
                pathways=pathways_from_settings(client, settings),
                pool=pool,
                authenticator=authenticator,
                policy=settings.validation_policy(),
                break_glass_per_hour=settings.break_glass_per_hour,
                indicator_small_cell=settings.indicator_small_cell,
                worklist_oidc=worklist_oidc(settings),
            )
        finally:
            purging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purging
            await pool.close()

    app = create_app(
        open_context,
        max_body_bytes=settings.api_max_body_bytes,
        auth_failures_per_minute=settings.api_auth_failures_per_minute,
    )
    instrument_api(app, tracing)
    return app


class EmbeddedServer(uvicorn.Server):
    """uvicorn inside a process that handles its own signals (the local stack, tests)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def start(self) -> asyncio.Task[None]:
        """Serve in the background; return once listening, or raise why it could not."""
        serving = asyncio.create_task(self.serve())
        # uvicorn offers a flag, not an event, for "listening".
        while not self.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if serving.done():
            serving.result()
            raise RuntimeError("the API server stopped while starting")
        return serving

    async def stop(self, serving: asyncio.Task[None]) -> None:
        self.should_exit = True
        await serving


def server_config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    # Our middleware writes a structured request log; uvicorn's own access log is off.
    return uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False)


async def serve(settings: RopSettings, database_url: str, host: str, port: int) -> None:
    """`rop api`: serve until SIGTERM or SIGINT, then finish the requests in flight."""
    await _StoppedBySignal(
        server_config(app_from_settings(settings, database_url), host, port)
    ).serve()


class _StoppedBySignal(uvicorn.Server):
    """uvicorn, whose graceful stop on SIGTERM ends in exit status 0.

    uvicorn shuts down gracefully on SIGTERM and then raises the signal again, so the
    process dies of it (status 143) and a container runtime or Kubernetes reports an error
    for every rollout. Here SIGTERM and SIGINT only ask the server to stop (`handle_exit`),
    as `rop worker` and `rop codec-server` do (`rop_runtime.stopping`).
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for number in STOP_SIGNALS:
            loop.add_signal_handler(number, self.handle_exit, number, None)
        try:
            yield
        finally:
            for number in STOP_SIGNALS:
                loop.remove_signal_handler(number)


def local_tokens(data_dir: Path) -> Path:
    """Where the local stack keeps its API keys' digests."""
    return data_dir / "api-tokens.json"
