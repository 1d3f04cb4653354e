"""`make run`: the whole local stack and a demo pathway, until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import httpx
import structlog
from pydantic import SecretStr

from activities.contact_directory import load_directory
from activities.database import API_ROLE, WORKER_ROLE, create_pool, migrate
from rop_domain.calendar import OSLO
from rop_domain.models import FINAL_PHASES, Phase, parse_referral
from rop_domain.view import PathwayStatus
from rop_runtime.client import LOCAL_KEY_FILE, codec_from_settings
from rop_runtime.codec import write_new_key_file
from rop_runtime.delivery_setup import build_delivery
from rop_runtime.settings import RopSettings, running_stack_file
from rop_runtime.tracing import provider_from_environment
from starter.api.auth import KeyHolder, Role, write_tokens_file
from starter.api.server import EmbeddedServer, app_from_settings, local_tokens, server_config
from starter.cli_support import LOCAL_DATABASE_URL
from starter.codec_server import door_from_settings, start_codec_server
from starter.local_nhn import NHN_PORT, with_local_norsk_helsenett
from starter.local_stack import embedded_postgres, ensure_database, temporal_dev_server
from starter.pathways import pathways_from_settings
from worker import build_worker, observed_client
from workflows import search_attributes

log = structlog.get_logger(__name__)

UI_PORT = 8233
WORKER_METRICS_PORT = 9464
"""Where the local stack's worker serves Prometheus metrics."""
FRONTEND_PORT = 7233
DEMO_CLINICIAN = "9000123"
"""The demo referral's receiving clinician: the local clinician key is theirs."""
DEMO_UNITS = ("helse-bergen/TSB",)
OTHER_CLINICIAN = KeyHolder(
    "local-clinician-helse-fonna", Role.CLINICIAN, "9000456", ("helse-fonna/PHV",)
)
"""A clinician of another unit: the worklist's second demo person, who sees none of the demo's
tasks (need of service)."""


async def run_stack(
    settings: RopSettings,
    *,
    demo_referral: Path,
    contacts: Path,
    local_nhn: Path | None = None,
) -> None:
    """Start PostgreSQL, Temporal and the worker; submit the demo referral; wait for Ctrl-C.
    With `local_nhn` (a source tree holding `nhn_local/`, as `make run` passes), the HelseID
    and Meldingstjener doubles too, and the demo's GP and municipality get Dialogmelding."""
    # Local mode: the codec server's static token, a person's API key in the demo.
    settings = settings.model_copy(update={"local_mode": True})
    if settings.worker_metrics_address is None:
        settings = settings.model_copy(
            update={"worker_metrics_address": f"127.0.0.1:{WORKER_METRICS_PORT}"}
        )
    if settings.codec_server_token is None:
        settings = settings.model_copy(
            update={"codec_server_token": SecretStr(_codec_token(settings.data_dir))}
        )
    if settings.webhook_secret is None:  # FHIR Subscriptions' notifications are signed by it
        secret = _local_secret(settings.data_dir, "webhook-secret")
        settings = settings.model_copy(update={"webhook_secret": SecretStr(secret)})
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    local_keys = data_dir / LOCAL_KEY_FILE
    if not (settings.payload_keys or settings.payload_keys_file or local_keys.exists()):
        write_new_key_file(local_keys)
        log.info("payload encryption key created", file=str(local_keys))
    async with contextlib.AsyncExitStack() as stack:
        server_url = settings.database_url or stack.enter_context(
            embedded_postgres(data_dir / "pgdata")
        )
        database_url = (
            settings.database_url
            if settings.database_url
            else await ensure_database(server_url, "rop")
        )
        if settings.api_tokens_file is None:
            _local_api_tokens(data_dir)
        if local_nhn is not None:
            settings = await stack.enter_async_context(
                with_local_norsk_helsenett(settings, local_nhn)
            )
        async with temporal_dev_server(
            database_file=data_dir / "temporal.db",
            port=FRONTEND_PORT,
            ui_port=UI_PORT,
            search_attributes=search_attributes.ALL,
            log_file=data_dir / "temporal.log",
            codec_endpoint=f"http://localhost:{settings.codec_server_port}",
        ) as address:
            settings = settings.model_copy(update={"temporal_address": address})
            await _serve(settings, database_url, demo_referral=demo_referral, contacts=contacts)


async def _serve(
    settings: RopSettings, database_url: str, *, demo_referral: Path, contacts: Path
) -> None:
    owner = await create_pool(database_url)
    try:
        await migrate(owner)
        loaded = await load_directory(owner, contacts)
        log.info(
            "directory loaded",
            contact_points=loaded.contact_points,
            fact_teams=loaded.fact_teams,
            cooperation_arenas=loaded.cooperation_arenas,
            file=str(contacts),
        )
    finally:
        await owner.close()
    # The worker's activities act as the least-privilege role, as in production.
    pool = await create_pool(database_url, role=WORKER_ROLE)
    api_pool = await create_pool(database_url, role=API_ROLE)
    codec_runner = await start_codec_server(
        codec_from_settings(settings),
        door_from_settings(settings, api_pool),
        ui_origin=settings.ui_origin,
        host="127.0.0.1",
        port=settings.codec_server_port,
    )
    # One tracer provider for the whole stack: the API's requests and the worker's spans.
    tracing = provider_from_environment("rop-local-stack")
    api = EmbeddedServer(
        server_config(
            app_from_settings(settings, database_url, tracing=tracing),
            settings.api_host,
            settings.api_port,
        )
    )
    try:
        async with (
            observed_client(settings, tracing) as client,
            httpx.AsyncClient(timeout=20.0) as http,
            # Delivery as `rop worker` builds it: with no SMTP host configured, e-mail
            # addresses stay on the task list; with the local Norsk helsenett, Dialogmelding.
            build_worker(client, pool, settings.task_queue, build_delivery(settings, pool, http)),
        ):
            serving = await api.start()
            pathways = pathways_from_settings(client, settings)
            raw = demo_referral.read_text(encoding="utf-8")
            referral = parse_referral(raw, settings.validation_policy())
            # A fresh demo starts its clock now, so its deadline lies ahead.
            referral = referral.model_copy(update={"received_at": datetime.now(UTC)})
            submitted = await pathways.submit(referral)
            status = await pathways.status(submitted.workflow_id)
            found_by_the_cli = write_local_database_url(settings.data_dir, database_url)
            named = name_the_running_stack(settings.data_dir)
            print(welcome(status, submitted.created, database_url, settings), flush=True)
            await _until_interrupted()
            found_by_the_cli.unlink(missing_ok=True)
            named.unlink(missing_ok=True)
            await api.stop(serving)
    finally:
        if tracing is not None:
            tracing.shutdown()  # the spans still batched go out
        await codec_runner.cleanup()
        await api_pool.close()
        await pool.close()


def write_local_database_url(data_dir: Path, database_url: str) -> Path:
    """Leave the running stack's database URL where the `rop` commands look for it
    (`cli_support.require_database`), readable by this user only; removed at Ctrl-C."""
    path = data_dir / LOCAL_DATABASE_URL
    path.touch(mode=0o600)
    path.write_text(database_url, encoding="utf-8")
    return path


def name_the_running_stack(data_dir: Path) -> Path:
    """Name the stack's folder where `rop` run from another folder looks
    (`settings.running_stack_file`); removed at Ctrl-C."""
    pointer = running_stack_file()
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.write_text(str(data_dir.resolve()), encoding="utf-8")
    return pointer


def welcome(status: PathwayStatus, created: bool, database_url: str, settings: RopSettings) -> str:
    """What `make run` prints: where everything is, and the demo's next steps from where the
    demo pathway stands (after a restart it may be further on, or ended)."""
    workflow_id = status.workflow_id
    data = settings.data_dir
    state = "started" if created else f"kept in {data}/ from an earlier run, {status.phase.value}"
    api = f"http://{settings.api_host}:{settings.api_port}"
    return f"""
rop-forlop is running.
  Temporal Web UI:   http://localhost:{UI_PORT}/namespaces/default/workflows
                     (payloads decoded by the codec server, local mode: loopback only)
  Temporal frontend: {settings.temporal_address}
  PostgreSQL:        {database_url}  (the rop commands find it while this runs)
  HTTP API:          {api}/docs  (keys in {data}/api-demo-tokens)
  Worklist:          {api}/worklist  (sign in as a demo person)
{_norsk_helsenett(settings)}  Demo pathway:      {workflow_id} ({state})

{_next_steps(status)}
Read it as an operator:
  .venv/bin/rop tasks {workflow_id}
  .venv/bin/rop indicators
  .venv/bin/rop access-log {workflow_id}
  curl -H "Authorization: Bearer $(sed -n 's/^clinician=//p' {data}/api-demo-tokens)" \\
      {api}/pathways/{workflow_id}
  .venv/bin/temporal workflow show -w {workflow_id} --detailed \\
      --codec-endpoint http://localhost:{settings.codec_server_port}
  curl -s http://{settings.worker_metrics_address}/metrics | grep '^rop_'   (the worker's metrics)
Filter in the UI:  RopPhase = "follow-up"   or   RopOverdue = true
Press Ctrl-C to stop everything."""


def _norsk_helsenett(settings: RopSettings) -> str:
    """The welcome's line for the local Meldingstjener, when the stack runs it."""
    if settings.nhn_meldingstjener_url is None:
        return ""
    return (
        f"  Norsk helsenett:   {settings.nhn_meldingstjener_url} (local HelseID and Meldingstjener; "
        "the demo's GP and municipality get Dialogmelding)\n"
        f"                     curl -s http://127.0.0.1:{NHN_PORT}/_local/messages\n"
    )


def _next_steps(status: PathwayStatus) -> str:
    """The `rop` commands that take the demo from its phase to its end."""
    workflow_id, phase = status.workflow_id, status.phase
    if phase in FINAL_PHASES:
        return (
            f"The demo pathway has ended ({phase.value}). For a fresh one: Ctrl-C, "
            "`rm -rf .rop`, `make run`.\n"
        )
    rop = ".venv/bin/rop"
    # Planned for tomorrow at 10:00; recorded as held now (`--held-at` defaults to now), so
    # each step can be taken at once.
    tomorrow = datetime.now(OSLO).date() + timedelta(days=1)
    meeting_at = datetime.combine(tomorrow, time(10, 0), tzinfo=OSLO)
    meeting = meeting_at.isoformat()
    revision = (meeting_at + timedelta(days=90)).date().isoformat()
    by_phase: list[tuple[Phase, str]] = [
        (
            Phase.AWAITING_ASSESSMENT,
            f'{rop} assess {workflow_id} --assessor 9000123 --decision in-target-group --reason "ROP-problematikk"',
        ),
        (
            Phase.AWAITING_INVITE,
            f'{rop} invite {workflow_id} --by 9000123 --at {meeting} --location "DPS, møterom 2" --recommended',
        ),
        (
            Phase.MEETING_INVITED,
            f"{rop} meeting {workflow_id} --by 9000123 --attendee PHV --attendee TSB \\\n"
            "      --koordinator 9000777 --individual-plan accepted --crisis-plan-responsible 9000555 \\\n"
            "      --measures deploy/seed/measures.example.json",
        ),
    ]
    # Phase lists its members in the pathway's order.
    steps = [
        command for at, command in by_phase if list(Phase).index(at) >= list(Phase).index(phase)
    ]
    if status.crisis_plan.current is None:
        steps.append(
            f"{rop} crisis-plan {workflow_id} --by 9000555 --version 1 --made-with-patient "
            f"--next-revision {revision}"
        )
    steps += [
        f"{rop} measure start {workflow_id} poliklinikk --by 9000123",
        f"{rop} review {workflow_id} --by 9000777 --outcome continue",
        f"{rop} close {workflow_id} --by 9000123 --reason completed",
    ]
    listed = "\n".join(f"  {step}" for step in [f"{rop} status {workflow_id}", *steps])
    return f"Drive the demo from another terminal ({phase.value} now):\n{listed}\n"


def _local_api_tokens(data_dir: Path) -> None:
    """API keys for the three roles, made once for the local stack: the API reads only their
    digests (`api-tokens.json`); the keys themselves are in `api-demo-tokens` for curl."""
    digests, keys = local_tokens(data_dir), data_dir / "api-demo-tokens"
    if digests.exists() and keys.exists() and OTHER_CLINICIAN.name in digests.read_text():
        return
    tokens = {
        secrets.token_urlsafe(24): (
            KeyHolder(f"local-{role.value}", role, DEMO_CLINICIAN, DEMO_UNITS)
            if role is Role.CLINICIAN
            else KeyHolder(f"local-{role.value}", role)
        )
        for role in Role
    }
    tokens[secrets.token_urlsafe(24)] = OTHER_CLINICIAN
    write_tokens_file(digests, tokens)
    keys.write_text(
        "".join(
            f"{holder.name.removeprefix('local-')}={token}\n" for token, holder in tokens.items()
        ),
        encoding="utf-8",
    )
    keys.chmod(0o600)


def _codec_token(data_dir: Path) -> str:
    """The codec server's bearer token for the local stack, made once."""
    return _local_secret(data_dir, "codec-token")


def _local_secret(data_dir: Path, name: str) -> str:
    """A secret of the local stack's, made once in `data_dir/name`, readable by this user."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


async def _until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("stopping the local stack")
