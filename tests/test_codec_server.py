"""The codec server knows who decodes: the API's keys and JWTs, need of service for clinical
content, a summary view for everyone else, and every decode in the access log."""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import jwt
import pytest
import pytest_asyncio
from google.protobuf import json_format
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.testing import ActivityEnvironment

from activities.records import RecordActivities
from rop_domain.commands import NewPathway
from rop_runtime.codec import Binding, EncryptionCodec
from rop_runtime.settings import RopSettings
from starter.access_log import NO_PATHWAY
from starter.api.auth import (
    HELSEID_ASSURANCE,
    HELSEID_HPR_NUMBER,
    HELSEID_ORGNR_CHILD,
    Authenticator,
    HelseIdProfile,
    JwtSettings,
    JwtVerifier,
    Role,
    StaticToken,
    token_digest,
)
from starter.codec_server import (
    CodecDoor,
    NotLoopback,
    door_from_settings,
    start_codec_server,
)
from tests import factories
from tests.api_harness import AUDIENCE, ISSUER, IdentityProvider, identity_provider
from tests.channel_servers import free_port
from tests.cli_harness import Cli
from tests.conftest import TEST_KEY, TEST_KEY_ID

UI = "http://localhost:8233"
SUMMARY = Payload(metadata={"encoding": b"json/plain"}, data=b'"ROP pathway for referral R-1"')
NATIONAL_ID = factories.national_id("150586951")
REFERRAL = Payload(
    metadata={"encoding": b"json/plain"},
    data=f'{{"patient": {{"national_id": "{NATIONAL_ID}"}}}}'.encode(),
)
CODEC = EncryptionCodec({TEST_KEY_ID: TEST_KEY}, TEST_KEY_ID)


@dataclass(frozen=True)
class CodecServer:
    url: str
    idp: IdentityProvider
    service_key: str
    workflow_id: str
    """A pathway of the test unit, in the records."""

    async def post(
        self, path: str, body: bytes | str, token: str | None, **headers: str
    ) -> httpx.Response:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with httpx.AsyncClient(base_url=self.url) as http:
            return await http.post(path, content=body, headers=headers)


async def _sealed(*payloads: Payload, workflow_id: str | None = None) -> str:
    """Payloads as a worker stores them for `workflow_id` (bound to it), or as they were
    sealed before binding (None)."""
    codec = CODEC.bound_to(Binding("default", workflow_id) if workflow_id else None)
    return json_format.MessageToJson(Payloads(payloads=await codec.encode(list(payloads))))


def _payloads(response: httpx.Response) -> list[Payload]:
    assert response.status_code == 200, response.text
    return list(json_format.Parse(response.content, Payloads()).payloads)


async def _record_pathway(owner_pool: asyncpg.Pool, health_trust: str = "helse-bergen") -> str:
    """A pathway's record as the intake writes it (the record service's own activity), for
    need of service to find."""
    referral = factories.parse_referral_for_test(
        factories.referral_data(
            datetime.now(UTC), referral_id=f"C-{uuid.uuid4().hex[:10]}", health_trust=health_trust
        )
    )
    await ActivityEnvironment().run(
        RecordActivities(owner_pool).open_pathway,
        NewPathway(
            workflow_id=referral.workflow_id,
            referral=referral,
            meeting_deadline=datetime.now(UTC).date() + timedelta(days=14),
        ),
    )
    return referral.workflow_id


@contextlib.asynccontextmanager
async def _serving(
    api_pool: asyncpg.Pool, owner_pool: asyncpg.Pool, helseid: HelseIdProfile | None = None
) -> AsyncIterator[CodecServer]:
    """The codec server on a free port, with a service key and JWTs of a local identity
    provider (read as HelseID's with `helseid`), and a pathway recorded for it to decode."""
    service_key = secrets.token_urlsafe(16)
    async with identity_provider() as idp:
        authenticator = Authenticator(
            [StaticToken(name="svc", role=Role.SYSTEM, token_sha256=token_digest(service_key))],
            JwtVerifier(
                JwtSettings(
                    issuer=ISSUER,
                    audience=AUDIENCE,
                    jwks_url=idp.jwks_url,
                    actor_claim="hpr",
                    helseid=helseid,
                )
            ),
        )
        port = free_port()
        runner = await start_codec_server(
            CODEC,
            CodecDoor(pool=api_pool, authenticator=authenticator),
            ui_origin=UI,
            host="127.0.0.1",
            port=port,
        )
        try:
            yield CodecServer(
                f"http://127.0.0.1:{port}", idp, service_key, await _record_pathway(owner_pool)
            )
        finally:
            await runner.cleanup()


@pytest_asyncio.fixture
async def codec_server(
    api_pool: asyncpg.Pool, owner_pool: asyncpg.Pool
) -> AsyncIterator[CodecServer]:
    async with _serving(api_pool, owner_pool) as server:
        yield server


async def _logged(owner_pool: asyncpg.Pool, principal: str) -> list[asyncpg.Record]:
    return await owner_pool.fetch(
        "SELECT workflow_id, action, outcome, grounds, reason, namespace FROM access_log "
        "WHERE principal = $1 ORDER BY id",
        principal,
    )


async def test_a_clinician_of_the_unit_decodes_the_pathway_and_it_is_logged(
    codec_server: CodecServer, owner_pool: asyncpg.Pool
) -> None:
    sub = f"dr-{uuid.uuid4().hex[:6]}"
    token = codec_server.idp.token(sub, ["clinician"], hpr="9000444")
    body = await _sealed(SUMMARY, REFERRAL, workflow_id=codec_server.workflow_id)
    # As the Temporal UI asks: no X-Workflow-Id; the payloads say whose they are.
    decoded = await codec_server.post(
        "/decode", body, token, **{"X-Namespace": "default", "Origin": UI}
    )
    again = await codec_server.post("/decode", body, token, Origin=UI)
    assert _payloads(decoded) == _payloads(again) == [SUMMARY, REFERRAL]
    assert decoded.headers["Access-Control-Allow-Origin"] == UI
    [row] = await _logged(owner_pool, f"jwt:{sub}@{ISSUER}")  # one row a pathway and minute
    assert dict(row) == {
        "workflow_id": codec_server.workflow_id,
        "action": "decode 2 payloads (full view)",
        "outcome": "ok",
        "grounds": "unit",
        "reason": None,
        "namespace": "default",
    }


async def test_without_a_need_of_service_a_clinician_gets_the_summary_view(
    codec_server: CodecServer, owner_pool: asyncpg.Pool
) -> None:
    sub = f"stranger-{uuid.uuid4().hex[:6]}"
    token = codec_server.idp.token(sub, ["clinician"], hpr="9000999", units=["helse-bergen/PHV"])
    bound = await _sealed(SUMMARY, REFERRAL, workflow_id=codec_server.workflow_id)
    legacy = await _sealed(SUMMARY, REFERRAL)  # sealed before payloads were bound
    refused = await codec_server.post("/decode", bound, token)
    unbound = await codec_server.post("/decode", legacy, token)
    glass = await codec_server.post(
        "/decode", bound, token, **{"X-Break-Glass": "emergency: Akutt innleggelse, trenger planen"}
    )
    for summary in (refused, unbound):
        assert [p.data for p in _payloads(summary)] == [SUMMARY.data, b'"[withheld]"']
        assert NATIONAL_ID not in summary.text
    assert _payloads(glass) == [SUMMARY, REFERRAL]
    rows = [
        (r["workflow_id"], r["action"], r["grounds"])
        for r in await _logged(owner_pool, f"jwt:{sub}@{ISSUER}")
    ]
    assert rows == [
        (codec_server.workflow_id, "decode 2 payloads (summary view)", None),
        (NO_PATHWAY, "decode 2 payloads (summary view)", None),
        (codec_server.workflow_id, "decode 2 payloads (full view)", "break-glass"),
    ]
    # Payloads from before binding: in full for a service, never for a person.
    assert _payloads(await codec_server.post("/decode", legacy, codec_server.service_key)) == [
        SUMMARY,
        REFERRAL,
    ]


async def test_another_pathways_payloads_are_judged_by_their_own_binding(
    codec_server: CodecServer, owner_pool: asyncpg.Pool, database_url: str
) -> None:
    """A clinician who names their own pathway cannot read another's payloads through it,
    and the log names the pathway whose payloads were asked for."""
    theirs = await _record_pathway(owner_pool, health_trust="helse-stavanger")
    sub = f"dr-{uuid.uuid4().hex[:6]}"
    token = codec_server.idp.token(sub, ["clinician"], hpr="9000444")  # helse-bergen/TSB
    body = await _sealed(SUMMARY, REFERRAL, workflow_id=theirs)
    claimed = await codec_server.post(
        "/decode", body, token, **{"X-Workflow-Id": codec_server.workflow_id}
    )
    assert claimed.status_code == 403
    assert NATIONAL_ID not in claimed.text
    as_the_ui = await codec_server.post("/decode", body, token)  # the UI names no pathway
    assert [p.data for p in _payloads(as_the_ui)] == [SUMMARY.data, b'"[withheld]"']
    assert NATIONAL_ID not in as_the_ui.text
    rows = [
        (r["workflow_id"], r["outcome"], r["action"])
        for r in await _logged(owner_pool, f"jwt:{sub}@{ISSUER}")
    ]
    assert rows == [
        (theirs, "denied", "decode (payloads of another pathway than the one named)"),
        (theirs, "ok", "decode 2 payloads (summary view)"),
    ]
    # What the UI showed is in the pathway's own access log, as `rop access-log` prints it.
    code, out, _ = await Cli.on_database(database_url)("access-log", theirs)
    assert code == 0
    assert f"jwt:{sub}@{ISSUER}" in out


async def test_a_payload_that_does_not_open_is_a_400_and_logged(
    codec_server: CodecServer, owner_pool: asyncpg.Pool
) -> None:
    [sealed] = await CODEC.bound_to(Binding("default", codec_server.workflow_id)).encode([REFERRAL])
    tampered = Payload()
    tampered.CopyFrom(sealed)
    tampered.metadata["rop-workflow-id"] = b"rop-C-someone-else"
    unknown = Payload()
    unknown.CopyFrom(sealed)
    unknown.metadata["encryption-key-id"] = b"nokey"
    for payload, why in ((tampered, "does not verify"), (unknown, "key this process")):
        body = json_format.MessageToJson(Payloads(payloads=[payload]))
        answer = await codec_server.post("/decode", body, codec_server.service_key)
        assert answer.status_code == 400, answer.text
        assert why in answer.text
    failed = [r for r in await _logged(owner_pool, "key:svc") if r["outcome"] == "failed"]
    assert len(failed) >= 2


async def test_operators_get_the_summary_view_and_services_the_full_one(
    codec_server: CodecServer, owner_pool: asyncpg.Pool
) -> None:
    body = await _sealed(SUMMARY, REFERRAL)
    operator = codec_server.idp.token(f"op-{uuid.uuid4().hex[:6]}", ["operator"])
    assert [p.data for p in _payloads(await codec_server.post("/decode", body, operator))] == [
        SUMMARY.data,
        b'"[withheld]"',
    ]
    service = await codec_server.post("/decode", body, codec_server.service_key)
    assert _payloads(service) == [SUMMARY, REFERRAL]
    [*_, row] = await _logged(owner_pool, "key:svc")
    assert (row["action"], row["grounds"]) == ("decode 2 payloads (full view)", "service")


async def test_no_token_a_bad_body_and_an_encode_by_a_person_are_refused(
    codec_server: CodecServer,
) -> None:
    body = await _sealed(REFERRAL)
    clinician = codec_server.idp.token("dr-encode", ["clinician"], hpr="9000444")
    anonymous = await codec_server.post("/decode", body, None)
    guessed = await codec_server.post("/decode", body, "guess")
    elsewhere = await codec_server.post(
        "/decode", body, codec_server.service_key, Origin="https://evil.example"
    )
    assert (anonymous.status_code, guessed.status_code) == (401, 401)
    assert NATIONAL_ID not in anonymous.text + guessed.text
    assert "Access-Control-Allow-Origin" not in elsewhere.headers
    for bad in ("{not json", '{"payloads": "many"}', b"\xff\xfe", "[]", "{}"):
        answer = await codec_server.post("/decode", bad, codec_server.service_key)
        assert answer.status_code == 400, answer.text
        assert "not a Payloads message" in answer.text
    plain = json_format.MessageToJson(Payloads(payloads=[REFERRAL]))
    by_person = await codec_server.post("/encode", plain, clinician)
    assert by_person.status_code == 403
    assert "encode needs role system" in by_person.text
    [sealed] = _payloads(await codec_server.post("/encode", plain, codec_server.service_key))
    assert sealed.metadata["encoding"] == b"binary/encrypted"
    assert await CODEC.decode([sealed]) == [REFERRAL]


async def test_a_static_token_only_in_local_mode(api_pool: asyncpg.Pool, tmp_path: Path) -> None:
    with_token = RopSettings(codec_server_token=SecretStr("t0ken"), data_dir=tmp_path)
    with pytest.raises(ValueError, match="ROP_CODEC_SERVER_TOKEN is for local mode only"):
        door_from_settings(with_token, api_pool)
    door = door_from_settings(with_token.model_copy(update={"local_mode": True}), api_pool)
    assert door.local_token == "t0ken"
    with pytest.raises(ValueError, match="would let nobody in"):
        door_from_settings(RopSettings(data_dir=tmp_path), api_pool)


async def test_local_mode_lets_the_local_ui_decode_without_a_token_on_loopback_only(
    api_pool: asyncpg.Pool, owner_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    local = RopSettings(data_dir=tmp_path, local_mode=True, codec_server_token=SecretStr("t"))
    door = door_from_settings(local, api_pool)
    with pytest.raises(NotLoopback, match="loopback address only"):
        await start_codec_server(CODEC, door, ui_origin=UI, host="0.0.0.0", port=free_port())  # noqa: S104 - refused
    port = free_port()
    runner = await start_codec_server(CODEC, door, ui_origin=UI, host="127.0.0.1", port=port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            # The dev server's UI sends no token, from either local name of its origin.
            answer = await http.post(
                "/decode",
                content=await _sealed(SUMMARY, REFERRAL),
                headers={"Origin": "http://127.0.0.1:8233", "X-Namespace": "default"},
            )
            refused = await http.post(
                "/encode",
                content=json_format.MessageToJson(Payloads(payloads=[REFERRAL])),
                headers={"Authorization": "Bearer not-the-token"},
            )
    finally:
        await runner.cleanup()
    assert _payloads(answer) == [SUMMARY, REFERRAL]
    assert answer.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:8233"
    assert refused.status_code == 401  # a wrong token is still wrong
    [*_, row] = await _logged(owner_pool, "key:local-ui")
    assert (row["action"], row["grounds"], row["namespace"]) == (
        "decode 2 payloads (full view)",
        "service",
        "default",
    )


async def test_a_helseid_sign_in_decodes_its_units_pathway_and_is_logged_by_hpr_number(
    api_pool: asyncpg.Pool, owner_pool: asyncpg.Pool
) -> None:
    """The codec server takes HelseID access tokens as the API does: typ at+jwt, the HPR
    number the person, the organisation their unit; an ID token (typ JWT) is refused."""
    profile = HelseIdProfile(units_by_organisation={"974557746": ("helse-bergen/TSB",)})
    async with _serving(api_pool, owner_pool, profile) as server:
        now = int(datetime.now(UTC).timestamp())
        sub = f"helseid-{uuid.uuid4().hex[:6]}"
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": sub,
            "iat": now,
            "exp": now + 300,
            HELSEID_HPR_NUMBER: "9000444",
            HELSEID_ORGNR_CHILD: "974557746",
            HELSEID_ASSURANCE: "high",
        }
        token = jwt.encode(
            claims,
            server.idp.key,
            algorithm="RS256",
            headers={"kid": server.idp.kid, "typ": "at+jwt"},
        )
        body = await _sealed(SUMMARY, REFERRAL, workflow_id=server.workflow_id)
        decoded = await server.post("/decode", body, token, Origin=UI)
        assert _payloads(decoded) == [SUMMARY, REFERRAL]
        id_token = jwt.encode(
            claims, server.idp.key, algorithm="RS256", headers={"kid": server.idp.kid, "typ": "JWT"}
        )
        refused = await server.post("/decode", body, id_token, Origin=UI)
        assert refused.status_code == 401
    logged = await owner_pool.fetchrow(
        "SELECT grounds, person, organisation FROM access_log WHERE principal = $1",
        f"jwt:{sub}@{ISSUER}",
    )
    assert logged is not None
    assert dict(logged) == {"grounds": "unit", "person": "9000444", "organisation": "974557746"}
