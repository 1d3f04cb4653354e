"""Payload encryption: what Temporal stores is ciphertext, and keys rotate without breaking history."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import date
from typing import Any

import asyncpg
import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    WorkflowSerializationContext,
)
from temporalio.testing import WorkflowEnvironment

from rop_domain.followup import CrisisPlan
from rop_domain.steps import StepName
from rop_runtime.client import SharedPydanticPayloadConverter, data_converter
from rop_runtime.codec import (
    ENCODING,
    REFUSED_PLAIN,
    Binding,
    EncryptionCodec,
    KeyConfigurationError,
    Refusal,
    binding_of,
    parse_keys,
    refusal_of,
)
from starter.codec_server import CodecDoor, start_codec_server
from tests import factories
from tests.channel_servers import free_port
from tests.conftest import TEST_KEY, TEST_KEY_ID
from tests.pathway_harness import close_and_end, running_pathways, start

NATIONAL_ID = factories.national_id("150586951")


def _payloads(node: Any) -> list[dict[str, Any]]:
    """Every payload (a dict with metadata and data) anywhere in a history's JSON."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "metadata" in node and "encoding" in node.get("metadata", {}):
            found.append(node)
        for value in node.values():
            found += _payloads(value)
    elif isinstance(node, list):
        for value in node:
            found += _payloads(value)
    return found


async def test_histories_hold_only_ciphertext(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    api_pool: asyncpg.Pool,
    task_queue: str,
) -> None:
    client = time_skipping_env.client
    async with running_pathways(client, pool, task_queue) as api:
        now = await time_skipping_env.get_current_time()
        workflow_id, handle = await start(client, api, factories.referral_data(now))
        await api.send(StepName.ASSESS, workflow_id, factories.assessment())
        await close_and_end(api, handle)
        # With the key, the pathway reads back.
        assert (await api.status(workflow_id)).phase.value == "closed"
    # Read the history as someone with the Temporal database but no key would.
    plain = Client(client.service_client, namespace=client.namespace)
    history = await plain.get_workflow_handle(workflow_id).fetch_history()
    raw = history.to_json()
    parsed = json.loads(raw)
    for event in parsed["events"]:
        marker = event.get("markerRecordedEventAttributes")
        if marker and marker["markerName"] == "core_patch":
            # A `workflow.patched` marker: the patch's name, in plain text by design.
            [patch] = marker["details"].pop("patch-data")["payloads"]
            assert base64.b64decode(patch["data"]).startswith(b'{"id":"')
        elif marker:
            # The SDK's own bookkeeping of a local activity (ids, times), not our data;
            # the activity's result beside it is encrypted.
            bookkeeping = marker["details"].pop("data")["payloads"][0]["data"]
            assert b"activity_type" in base64.b64decode(bookkeeping)
    every = _payloads(parsed)
    # Search attributes are never encrypted (they carry a "type"); nothing personal is in them.
    payloads = [p for p in every if "type" not in p["metadata"]]
    assert len(payloads) > 10
    assert len(every) > len(payloads)
    encodings = {base64.b64decode(p["metadata"]["encoding"]) for p in payloads}
    assert encodings == {ENCODING}
    assert NATIONAL_ID not in raw
    assert factories.PATIENT_NAME not in raw
    for payload in payloads:
        assert NATIONAL_ID.encode() not in base64.b64decode(payload.get("data", ""))

    # The same stored payloads, through the codec server: decoded with the token only.
    started = history.events[0].workflow_execution_started_event_attributes.input
    body = json_format.MessageToJson(started)
    port = free_port()
    runner = await start_codec_server(
        EncryptionCodec({TEST_KEY_ID: TEST_KEY}, TEST_KEY_ID),
        CodecDoor(pool=api_pool, authenticator=None, local_token="t0ken"),
        ui_origin="http://localhost:8233",
        host="127.0.0.1",
        port=port,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            refused = await http.post("/decode", content=body)
            decoded = await http.post(
                "/decode", content=body, headers={"Authorization": "Bearer t0ken"}
            )
    finally:
        await runner.cleanup()
    assert refused.status_code == 401
    [referral_input] = json_format.Parse(decoded.content, Payloads()).payloads
    assert NATIONAL_ID.encode() in referral_input.data
    assert factories.PATIENT_NAME.encode() in referral_input.data

    # Nothing personal where encryption does not reach: ids, queues, search attributes, tasks.
    described = await plain.get_workflow_handle(workflow_id).describe()
    exposed = [
        workflow_id,
        described.task_queue,
        *(str(p.value) for p in described.typed_search_attributes),
    ]
    exposed += [
        r["subject"]
        for r in await pool.fetch("SELECT subject FROM tasks WHERE workflow_id = $1", workflow_id)
    ]
    for text in exposed:
        assert NATIONAL_ID not in text
        assert factories.PATIENT_NAME not in text
        assert "pseudo-123" not in text


async def test_keys_rotate_without_breaking_old_payloads() -> None:
    old, new = bytes(32), bytes(range(32))
    before = EncryptionCodec({"k1": old}, "k1")
    after = EncryptionCodec({"k1": old, "k2": new}, "k2")
    original = Payload(metadata={"encoding": b"json/plain"}, data=b'{"national_id": "x"}')
    [sealed_old] = await before.encode([original])
    [sealed_new] = await after.encode([original])
    assert sealed_old.metadata["encryption-key-id"] == b"k1"
    assert sealed_new.metadata["encryption-key-id"] == b"k2"
    assert await after.decode([sealed_old, sealed_new]) == [original, original]
    # A key this process lacks refuses the payload (it never fails the workflow task).
    [unknown] = await before.decode([sealed_new])
    assert refusal_of(unknown) == Refusal.UNKNOWN_KEY
    # A payload not encrypted is refused, unless plain payloads are let through (migration).
    [refused] = await after.decode([original])
    assert refused.metadata["encoding"] == REFUSED_PLAIN
    assert refused.data == b""
    assert refusal_of(refused) == Refusal.PLAIN
    migrating = EncryptionCodec({"k1": old}, "k1", accept_plain=True)
    assert await migrating.decode([original]) == [original]
    assert await after.for_display().decode([original, sealed_new]) == [original, original]


def test_key_configuration_errors_are_named() -> None:
    with pytest.raises(KeyConfigurationError, match="32 bytes"):
        EncryptionCodec({"k1": b"short"}, "k1")
    with pytest.raises(KeyConfigurationError, match="current key id"):
        EncryptionCodec({"k1": bytes(32)}, "k2")
    with pytest.raises(KeyConfigurationError, match="not valid base64"):
        parse_keys("k1:not base64!")
    assert parse_keys(f"k1:{base64.b64encode(bytes(32)).decode()}") == {"k1": bytes(32)}


async def test_every_data_converter_the_sdk_makes_shares_one_payload_converter() -> None:
    """The worker makes a data converter per activation: each finds the type adapters the
    first one built, and payloads still round-trip through the codec."""
    first = DataConverter(payload_converter_class=SharedPydanticPayloadConverter)
    shared = SharedPydanticPayloadConverter()
    assert SharedPydanticPayloadConverter() is shared
    plan = factories.crisis_plan(date(2027, 1, 4))
    [payload] = await first.encode([plan])
    assert await first.decode([payload], [CrisisPlan]) == [plan]
    cached = shared.converters[b"json/plain"]
    assert isinstance(cached, PydanticJSONPlainPayloadConverter)
    hits = cached._type_adapter.cache_info().hits
    again = dataclasses.replace(
        data_converter(EncryptionCodec({TEST_KEY_ID: TEST_KEY}, TEST_KEY_ID))
    )
    encrypted = await again.encode([plan])
    assert encrypted[0].metadata["encoding"] == ENCODING
    assert await again.decode(encrypted, [CrisisPlan]) == [plan]
    assert cached._type_adapter.cache_info().hits == hits + 1  # found, not built again


async def test_each_payload_is_bound_to_its_pathway() -> None:
    """The SDK's serialization context binds each payload to its namespace and workflow:
    the binding is readable, sealed into the ciphertext, and checked where it is opened."""
    codec = EncryptionCodec({"k1": bytes(32)}, "k1")
    original = Payload(metadata={"encoding": b"json/plain"}, data=b'{"national_id": "x"}')
    mine = WorkflowSerializationContext(namespace="default", workflow_id="rop-A")
    theirs = WorkflowSerializationContext(namespace="default", workflow_id="rop-B")
    [sealed] = await codec.with_context(mine).encode([original])
    assert binding_of(sealed) == Binding("default", "rop-A")
    # Its own pathway opens it (as workflow or as its activities), and so does a viewer.
    activity = ActivitySerializationContext(
        namespace="default", activity_id="1", activity_type="record", activity_task_queue="q",
        workflow_id="rop-A", workflow_type="RopPathway", is_local=True,
    )  # fmt: skip
    assert await codec.with_context(mine).decode([sealed]) == [original]
    assert await codec.with_context(activity).decode([sealed]) == [original]
    assert await codec.decode([sealed]) == [original]
    # Another pathway's worker refuses it, and so does another namespace's.
    [other] = await codec.with_context(theirs).decode([sealed])
    assert refusal_of(other) == Refusal.OTHER_PATHWAY
    elsewhere = WorkflowSerializationContext(namespace="prod", workflow_id="rop-A")
    assert refusal_of((await codec.with_context(elsewhere).decode([sealed]))[0])
    # The readable binding cannot be rewritten: the ciphertext no longer verifies.
    relabelled = Payload()
    relabelled.CopyFrom(sealed)
    relabelled.metadata["rop-workflow-id"] = b"rop-B"
    assert refusal_of((await codec.decode([relabelled]))[0]) == Refusal.TAMPERED
    assert refusal_of((await codec.with_context(theirs).decode([relabelled]))[0]) == (
        Refusal.TAMPERED
    )
    broken = Payload()
    broken.CopyFrom(sealed)
    broken.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    assert refusal_of((await codec.decode([broken]))[0]) == Refusal.TAMPERED
    # Payloads sealed before binding (the key id alone) still open, everywhere.
    [legacy] = await codec.encode([original])
    assert binding_of(legacy) is None
    assert await codec.with_context(theirs).decode([legacy]) == [original]
