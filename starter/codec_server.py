"""The codec server: decodes payloads for the Temporal UI and CLI, for those who may read them.

The Temporal UI (and `temporal --codec-endpoint`) POSTs payloads to `/decode` and
`/encode`. A decode is an access to a patient's records like any other, so the codec
server asks what the API asks:

- **Who.** The same API keys and JWTs as the HTTP API (with its auth on, the Temporal UI
  passes the signed-in user's access token). In local mode (`make run`) only, a single
  static token is accepted, and a request with no token at all is the local Temporal UI,
  which the dev server cannot give a token: it gets the full view, so the server then
  listens on a loopback address only and says so when it starts.
- **What they may see.** Every payload names, verifiably, the pathway it belongs to (its
  binding, `rop_runtime.codec`), so the decision is made per payload from that binding,
  never from what the request claims (`X-Workflow-Id` is not read). A service (role
  system) sees payloads in full. A person sees a pathway's payloads in full when they have
  a need of service for it, or by breaking the glass (`X-Break-Glass: <reason>`); payloads
  sealed before binding, of another namespace, or of a pathway they have no grounds for
  get the **summary view**, as operators always do: payloads that are a plain string (the
  summaries and details the workflow writes for the UI, which never carry personal data)
  and `[withheld]` in place of everything else.
- **Logged.** Each decode is written to `access_log` after it was tried, against the
  pathway whose payloads were shown: the caller, the configured namespace, the view and
  its grounds (never what was decoded); one row per caller, pathway, view and minute, as
  the UI decodes a page's payloads in many requests. `rop access-log <id>` shows them.
- A payload that does not open (a key this server lacks, a ciphertext or binding that does
  not verify) is a 400, logged. `/encode` mints ciphertext the worker would accept, so it
  needs role system. A body that is not a Payloads message is 400; CORS allows the
  configured UI origin only.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import asyncpg
import structlog
from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from rop_runtime.codec import Binding, EncryptionCodec, binding_of, refusal_of
from rop_runtime.settings import RopSettings
from starter import access_log
from starter.access_log import NO_PATHWAY, Grounds, Outcome
from starter.api import need_of_service
from starter.api.auth import AuthenticationFailed, Authenticator, Principal, Role

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

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
    namespace: str = "default"
    """The Temporal namespace whose payloads this server shows (from configuration)."""
    break_glass_per_hour: int = 10
    """How often one person may break the glass in an hour (`ROP_BREAK_GLASS_PER_HOUR`)."""
    logged: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """(caller, pathway, view) -> the minute it was last logged: one row per minute."""

    def first_this_minute(self, caller: str, workflow_id: str, view: str) -> bool:
        """Whether this caller's decode of this pathway in this view is new this minute."""
        minute = int(time.time() // 60)
        key = (caller, workflow_id, view)
        if self.logged.get(key) == minute:
            return False
        if len(self.logged) > 100_000:  # forget old minutes; a bound on memory
            for stale in [k for k, m in self.logged.items() if m != minute]:
                del self.logged[stale]
        self.logged[key] = minute
        return True

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
        sealed = list(payloads.payloads)
        opened = [viewer.open(payload) for payload in sealed]
        reason = need_of_service.break_glass_reason(
            request.headers.get(need_of_service.BREAK_GLASS_HEADER)
        )
        bindings = [binding_of(payload) for payload in sealed]
        await _refuse_a_contradicted_claim(door, request, principal, bindings)
        views: dict[Binding | None, tuple[View, Principal]] = {}
        for binding in dict.fromkeys(bindings):
            views[binding] = await _view_for(door, principal, binding, reason)
        broken = [why for payload in opened if (why := refusal_of(payload)) is not None]
        await _log_decodes(door, principal, bindings, views, failed=bool(broken))
        if broken:
            raise web.HTTPBadRequest(text=f"a payload does not open: {broken[0]}")
        shown = [
            payload if views[binding][0] is View.FULL else _summary_view([payload])[0]
            for payload, binding in zip(opened, bindings, strict=True)
        ]
        return json_format.MessageToJson(Payloads(payloads=shown)).encode()

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
                payloads = _payloads_of(await request.read())
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


def _payloads_of(body: bytes) -> Payloads:
    """A Payloads message from a JSON body: an object with a list of payloads, nothing else."""
    content = json.loads(body)
    if not isinstance(content, dict) or not isinstance(content.get("payloads"), list):
        raise ValueError('expected {"payloads": [...]}')
    return json_format.ParseDict(content, Payloads())


async def _view_for(
    door: CodecDoor, principal: Principal, binding: Binding | None, reason: str | None
) -> tuple[View, Principal]:
    """The view the caller gets of one pathway's payloads (`binding`: the pathway they are
    bound to, None for payloads from before binding), and the grounds the log shows."""
    if not principal.may(frozenset({Role.SYSTEM, Role.CLINICIAN})):
        return View.SUMMARY, principal  # operators: no clinical content
    if not principal.is_person:
        return View.FULL, _with_grounds(principal, Grounds.SERVICE)
    if binding is None or binding.namespace != door.namespace:
        return View.SUMMARY, principal  # no verifiable pathway: nothing to have grounds for
    try:
        grounds = await need_of_service.grounds_for(door.pool, principal, binding.workflow_id)
    except need_of_service.NoRecord:
        return View.SUMMARY, principal
    if grounds is not None:
        return View.FULL, _with_grounds(principal, grounds)
    if reason is not None:
        try:
            await need_of_service.check_break_glass_rate(
                door.pool, principal, door.break_glass_per_hour
            )
        except need_of_service.TooManyBreakGlass as error:
            raise web.HTTPTooManyRequests(text=str(error)) from None
        return View.FULL, _with_grounds(principal, Grounds.BREAK_GLASS, reason)
    return View.SUMMARY, principal


async def _refuse_a_contradicted_claim(
    door: CodecDoor,
    request: web.Request,
    principal: Principal,
    bindings: Sequence[Binding | None],
) -> None:
    """A person who names a pathway (`X-Workflow-Id`, as the CLI lets them) and sends another
    pathway's payloads gets 403, logged against the pathway whose payloads they sent: the
    claim never decides, and a contradicted one is an attempt worth following up."""
    claimed = request.headers.get("X-Workflow-Id")
    if not claimed or not principal.is_person:
        return
    others = sorted({b.workflow_id for b in bindings if b is not None and b.workflow_id != claimed})
    if not others:
        return
    await access_log.record(
        door.pool,
        [
            principal.access(
                workflow_id,
                "decode (payloads of another pathway than the one named)",
                Outcome.DENIED,
                door.namespace,
            )
            for workflow_id in others
        ],
    )
    raise web.HTTPForbidden(text="the payloads belong to another pathway than X-Workflow-Id names")


async def _log_decodes(
    door: CodecDoor,
    principal: Principal,
    bindings: Sequence[Binding | None],
    views: dict[Binding | None, tuple[View, Principal]],
    *,
    failed: bool,
) -> None:
    """One access row per pathway the request showed (per caller, view and minute), after
    the decode was tried: its outcome is known."""
    counts: dict[Binding | None, int] = {}
    for binding in bindings:
        counts[binding] = counts.get(binding, 0) + 1
    rows = []
    for binding, count in counts.items():
        view, admitted = views[binding]
        workflow_id = binding.workflow_id if binding else NO_PATHWAY
        if not failed and not door.first_this_minute(
            principal.identity, workflow_id, f"{view.value}/{admitted.grounds}"
        ):
            continue
        rows.append(
            admitted.access(
                workflow_id,
                f"decode {count} payloads ({view.value} view)",
                Outcome.FAILED if failed else Outcome.OK,
                door.namespace,
            )
        )
    if rows:
        await access_log.record(door.pool, rows)


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
    from rop_runtime.client import DEFAULT_NAMESPACE, connect_config

    return CodecDoor(
        pool=pool,
        authenticator=authenticator,
        local_token=token.get_secret_value() if token is not None else None,
        local_ui=settings.local_mode,
        namespace=connect_config(settings).get("namespace") or DEFAULT_NAMESPACE,
        break_glass_per_hour=settings.break_glass_per_hour,
    )
