"""The codec server: decodes payloads for the Temporal UI and CLI, for those with a token.

The Temporal UI (and `temporal --codec-endpoint`) POSTs payloads to `/decode` and
`/encode`. Only requests with the bearer token get an answer; CORS allows the
configured UI origin only; every decode is logged (who asked, for which workflow, as
the UI says), never what was decoded.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from starter.codec import EncryptionCodec

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(codec: EncryptionCodec, *, token: str, ui_origin: str) -> web.Application:
    """The aiohttp application serving `/encode` and `/decode`."""

    def cors(response: web.StreamResponse, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Origin") == ui_origin:
            response.headers["Access-Control-Allow-Origin"] = ui_origin
            response.headers["Access-Control-Allow-Methods"] = "POST"
            response.headers["Access-Control-Allow-Headers"] = (
                "content-type,x-namespace,authorization"
            )
            response.headers["Access-Control-Allow-Credentials"] = "true"
        return response

    def authorised(request: web.Request) -> bool:
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    viewer = codec.for_display()

    def endpoint(decode: bool) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            if not authorised(request):
                log.warning("codec request refused", path=request.path, remote=request.remote)
                return cors(web.Response(status=401, text="bearer token required"), request)
            payloads = json_format.Parse(await request.read(), Payloads())
            if decode:
                log.info(
                    "payloads decoded",
                    remote=request.remote,
                    namespace=request.headers.get("X-Namespace"),
                    workflow=request.headers.get("X-Workflow-Id"),
                    count=len(payloads.payloads),
                )
                result = await viewer.decode(payloads.payloads)
            else:
                result = await codec.encode(payloads.payloads)
            body = json_format.MessageToJson(Payloads(payloads=result))
            return cors(web.Response(text=body, content_type="application/json"), request)

        return handle

    async def preflight(request: web.Request) -> web.StreamResponse:
        return cors(web.Response(), request)

    app = web.Application()
    app.router.add_post("/decode", endpoint(decode=True))
    app.router.add_post("/encode", endpoint(decode=False))
    app.router.add_route("OPTIONS", "/{tail:.*}", preflight)
    return app


async def start_codec_server(
    codec: EncryptionCodec, *, token: str, ui_origin: str, host: str, port: int
) -> web.AppRunner:
    """Serve until the returned runner is cleaned up."""
    runner = web.AppRunner(build_app(codec, token=token, ui_origin=ui_origin))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("codec server listening", url=f"http://{host}:{port}", ui_origin=ui_origin)
    return runner
