"""The codec server: decodes payloads for the Temporal UI and CLI, for those who may read them.

The Temporal UI (and `temporal --codec-endpoint`) POSTs payloads to `/decode` and
`/encode`. A decode is an access to a patient's records like any other, so the codec
server asks what the API asks:

- **Who.** The same API keys and JWTs as the HTTP API (with its auth on, the Temporal UI
  passes the signed-in user's access token). In local mode (`make run`) only, a single
  static token is accepted, and a request with no token at all is the local Temporal UI,
  which the dev server cannot give a token: it gets the full view, so the server then
  listens on a loopback address only and says so when it starts.
- **What they may see.** A service (role system) sees payloads in full. A person sees
  them in full for a pathway they have a need of service for, which the request must
  name (`X-Workflow-Id`), or by breaking the glass (`X-Break-Glass: <reason>`).
  Everyone else, operators among them, gets the **summary view**: payloads that are a
  plain string (the summaries and details the workflow writes for the UI, which never
  carry personal data) and `[withheld]` in place of everything else.
- **Logged.** Each decode is a row in `access_log`: the caller, namespace, pathway (or
  `-`), the view and its grounds. Never what was decoded.
- `/encode` mints ciphertext the worker would accept, so it needs role system. A body
  that is not a Payloads message is 400; CORS allows the configured UI origin only.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

import asyncpg
import structlog
from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from rop_domain.models import WORKFLOW_ID_PATTERN
from rop_runtime.codec import EncryptionCodec
from rop_runtime.settings import RopSettings
from starter import access_log
from starter.access_log import NO_PATHWAY, Access, Grounds, Outcome
from starter.api import need_of_service
from starter.api.auth import AuthenticationFailed, Authenticator, Principal, Role

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_WORKFLOW_ID = re.compile(WORKFLOW_ID_PATTERN)
_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")

WITHHELD = Payload(metadata={"encoding": b"json/plain"}, data=b'"[withheld]"')
"""What the summary view shows in place of a payload that may carry clinical content."""

LOCAL_TOKEN_HOLDER = Principal(name="local-codec-token", roles=frozenset({Role.SYSTEM}))
"""Who the static token of local mode stands for."""

LOCAL_UI = Principal(name="local-ui", roles=frozenset({Role.SYSTEM}))
"""Who a request without a token stands for in local mode: the dev server's Temporal UI."""


class NotLoopback(ValueError):
    """Local mode asked to listen where other machines could reach it."""


class View(StrEnum):
    FULL = "full"
    SUMMARY = "summary"


@dataclass(frozen=True)
class CodecDoor:
    """Who may use the codec server, and where their decodes are written down."""

    pool: asyncpg.Pool
    """The records, as `rop_api`: the access log and need of service."""
    authenticator: Authenticator | None
    """API keys and JWTs, as the HTTP API verifies them."""
    local_token: str | None = None
    """A single static token: local mode only."""
    local_ui: bool = False
    """Local mode: a request without a token is the local Temporal UI (loopback only)."""

    async def caller(self, request: web.Request) -> Principal:
        given = request.headers.get("Authorization", "")
        if not given and self.local_ui:
            return LOCAL_UI
        if not given.startswith("Bearer "):
            raise AuthenticationFailed("send Authorization: Bearer <token>")
        token = given.removeprefix("Bearer ")
        if self.local_token is not None and hmac.compare_digest(
            token.encode(), self.local_token.encode()
        ):
            return LOCAL_TOKEN_HOLDER
        if self.authenticator is None:
            raise AuthenticationFailed("unknown token")
        return await self.authenticator.authenticate(token)


def build_app(codec: EncryptionCodec, door: CodecDoor, *, ui_origin: str) -> web.Application:
    """The aiohttp application serving `/encode` and `/decode`."""

    origins = _local_aliases(ui_origin) if door.local_ui else {ui_origin}

    def cors(response: web.StreamResponse, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin in origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = "POST"
            response.headers["Access-Control-Allow-Headers"] = (
                "content-type,x-namespace,authorization,x-workflow-id,x-break-glass"
            )
            response.headers["Access-Control-Allow-Credentials"] = "true"
        return response

    def problem(request: web.Request, status: int, detail: str) -> web.StreamResponse:
        return cors(web.Response(status=status, text=detail), request)

    viewer = codec.for_display()

    async def decode(request: web.Request, principal: Principal, payloads: Payloads) -> bytes:
        namespace = request.headers.get("X-Namespace")
        if namespace is not None and not _NAMESPACE.match(namespace):
            raise web.HTTPBadRequest(text="X-Namespace: not a namespace name")
        named = request.headers.get("X-Workflow-Id")
        workflow_id = named if named and _WORKFLOW_ID.match(named) else None
        view, admitted = await _view_for(door, request, principal, workflow_id)
        await access_log.record(
            door.pool,
            [
                Access(
                    principal=principal.identity,
                    roles=principal.roles_text,
                    workflow_id=workflow_id or NO_PATHWAY,
                    action=f"decode {len(payloads.payloads)} payloads ({view.value} view)",
                    outcome=Outcome.OK,
                    grounds=admitted.grounds,
                    reason=admitted.break_glass_reason,
                    namespace=namespace,
                )
            ],
        )
        decoded = await viewer.decode(payloads.payloads)
        if view is View.SUMMARY:
            decoded = _summary_view(decoded)
        return json_format.MessageToJson(Payloads(payloads=decoded)).encode()

    def endpoint(is_decode: bool) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                principal = await door.caller(request)
            except AuthenticationFailed as error:
                log.warning("codec request refused", path=request.path, reason=str(error))
                return cors(
                    web.Response(
                        status=401, text=str(error), headers={"WWW-Authenticate": "Bearer"}
                    ),
                    request,
                )
            if not is_decode and Role.SYSTEM not in principal.roles:
                return problem(request, 403, "encode needs role system")
            try:
                payloads = json_format.Parse(await request.read(), Payloads())
            except (json_format.ParseError, UnicodeDecodeError, ValueError) as error:
                return problem(request, 400, f"the body is not a Payloads message: {error}")
            try:
                if is_decode:
                    body = await decode(request, principal, payloads)
                else:
                    encoded = await codec.encode(list(payloads.payloads))
                    body = json_format.MessageToJson(Payloads(payloads=encoded)).encode()
            except web.HTTPException as error:
                return problem(request, error.status, error.text or error.reason)
            except need_of_service.InvalidReason as error:
                return problem(request, 400, str(error))
            log.info("codec request", path=request.path, caller=principal.identity)
            return cors(web.Response(body=body, content_type="application/json"), request)

        return handle

    async def preflight(request: web.Request) -> web.StreamResponse:
        return cors(web.Response(), request)

    async def health(_: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/decode", endpoint(is_decode=True))
    app.router.add_post("/encode", endpoint(is_decode=False))
    app.router.add_get("/health", health)
    app.router.add_route("OPTIONS", "/{tail:.*}", preflight)
    return app


async def _view_for(
    door: CodecDoor, request: web.Request, principal: Principal, workflow_id: str | None
) -> tuple[View, Principal]:
    """The view the caller gets, and the caller with the grounds the access log shows."""
    if not principal.may(frozenset({Role.SYSTEM, Role.CLINICIAN})):
        return View.SUMMARY, principal  # operators: no clinical content
    if not principal.is_person:
        return View.FULL, _with_grounds(principal, Grounds.SERVICE)
    reason = need_of_service.break_glass_reason(
        request.headers.get(need_of_service.BREAK_GLASS_HEADER)
    )
    if workflow_id is None:
        return View.SUMMARY, principal
    try:
        grounds = await need_of_service.grounds_for(door.pool, principal, workflow_id)
    except need_of_service.NoRecord:
        return View.SUMMARY, principal
    if grounds is not None:
        return View.FULL, _with_grounds(principal, grounds)
    if reason is not None:
        return View.FULL, _with_grounds(principal, Grounds.BREAK_GLASS, reason)
    return View.SUMMARY, principal


def _local_aliases(origin: str) -> set[str]:
    """The UI's origin under both local names: an operator may open either."""
    return {
        origin,
        origin.replace("//localhost", "//127.0.0.1"),
        origin.replace("//127.0.0.1", "//localhost"),
    }


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _with_grounds(principal: Principal, grounds: Grounds, reason: str | None = None) -> Principal:
    return replace(principal, grounds=grounds, break_glass_reason=reason)


def _summary_view(payloads: Sequence[Payload]) -> list[Payload]:
    """Plain strings (summaries, details) as they are; everything else withheld."""
    return [
        payload
        if payload.metadata.get("encoding") == b"json/plain" and payload.data.startswith(b'"')
        else WITHHELD
        for payload in payloads
    ]


async def start_codec_server(
    codec: EncryptionCodec, door: CodecDoor, *, ui_origin: str, host: str, port: int
) -> web.AppRunner:
    """Serve until the returned runner is cleaned up. In local mode only on loopback:
    `NotLoopback` otherwise, before anything listens."""
    if door.local_ui and not _is_loopback(host):
        raise NotLoopback(
            f"local mode decodes for anyone who sends no token, so the codec server listens "
            f"on a loopback address only (127.0.0.1, ::1), not on {host}"
        )
    runner = web.AppRunner(build_app(codec, door, ui_origin=ui_origin))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info(
        "codec server listening",
        url=f"http://{host}:{port}",
        ui_origin=ui_origin,
        local_token=door.local_token is not None,
    )
    if door.local_ui:
        log.warning(
            "codec server in local mode: the Temporal UI on this machine decodes without a "
            "token (full view, logged as key:local-ui); listening on loopback only",
            host=host,
        )
    return runner


def door_from_settings(settings: RopSettings, pool: asyncpg.Pool) -> CodecDoor:
    """The codec server's door as the settings configure the API's: its API keys and JWTs,
    and the static token only in local mode. Raises ValueError when nobody could enter."""
    from starter.api.server import authenticator_from_settings

    token = settings.codec_server_token
    if token is not None and not settings.local_mode:
        raise ValueError(
            "ROP_CODEC_SERVER_TOKEN is for local mode only (ROP_LOCAL_MODE): a shared token "
            "says nobody's name; let people in with the API's keys or JWTs (ROP_API_*)"
        )
    try:
        authenticator: Authenticator | None = authenticator_from_settings(settings)
    except ValueError:
        if token is None:
            raise
        authenticator = None
    return CodecDoor(
        pool=pool,
        authenticator=authenticator,
        local_token=token.get_secret_value() if token is not None else None,
        local_ui=settings.local_mode,
    )
