"""The codec server decodes real encrypted payloads for those with the token, and no one else."""

from __future__ import annotations

import httpx
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from starter.codec import EncryptionCodec
from starter.codec_server import start_codec_server
from tests import factories
from tests.channel_servers import free_port
from tests.conftest import TEST_KEY, TEST_KEY_ID

UI = "http://localhost:8233"
TOKEN = "operator-token"


async def test_decode_needs_the_token_and_answers_the_ui_origin_only() -> None:
    codec = EncryptionCodec({TEST_KEY_ID: TEST_KEY}, TEST_KEY_ID)
    national_id = factories.national_id("150586951")
    plain = Payload(metadata={"encoding": b"json/plain"}, data=f'"{national_id}"'.encode())
    sealed = await codec.encode([plain])
    body = json_format.MessageToJson(Payloads(payloads=sealed))
    port = free_port()
    runner = await start_codec_server(codec, token=TOKEN, ui_origin=UI, host="127.0.0.1", port=port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            refused = await http.post("/decode", content=body, headers={"Origin": UI})
            wrong = await http.post(
                "/decode", content=body, headers={"Authorization": "Bearer guess"}
            )
            decoded = await http.post(
                "/decode",
                content=body,
                headers={
                    "Authorization": f"Bearer {TOKEN}",
                    "Origin": UI,
                    "X-Namespace": "default",
                },
            )
            elsewhere = await http.post(
                "/decode",
                content=body,
                headers={"Authorization": f"Bearer {TOKEN}", "Origin": "https://evil.example"},
            )
            encoded = await http.post(
                "/encode",
                content=json_format.MessageToJson(Payloads(payloads=[plain])),
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
    finally:
        await runner.cleanup()
    assert (refused.status_code, wrong.status_code) == (401, 401)
    assert national_id not in refused.text
    assert decoded.status_code == 200
    assert decoded.headers["Access-Control-Allow-Origin"] == UI
    [back] = json_format.Parse(decoded.content, Payloads()).payloads
    assert back == plain
    assert "Access-Control-Allow-Origin" not in elsewhere.headers
    [reencoded] = json_format.Parse(encoded.content, Payloads()).payloads
    assert reencoded.metadata["encoding"] == b"binary/encrypted"
    assert await codec.decode([reencoded]) == [plain]
