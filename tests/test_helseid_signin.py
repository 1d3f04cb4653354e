"""People sign in with HelseID: the API takes HelseID access tokens as HelseID publishes them.

The HTTP API running for real (uvicorn, the Temporal dev server, a worker, PostgreSQL) with
`ROP_API_HELSEID`, and tokens signed by a local identity provider's key in HelseID's shape:
`typ: at+jwt`, the HPR number, the organisation the client acts for, the assurance level.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import rsa
from temporalio.testing import WorkflowEnvironment

from starter.api.auth import (
    HELSEID_ASSURANCE,
    HELSEID_HPR_NUMBER,
    HELSEID_ORGNR_CHILD,
    HELSEID_ORGNR_PARENT,
    HELSEID_PID,
    Role,
)
from tests import factories
from tests.api_harness import AUDIENCE, ISSUER, Api, running_api

HOSPITAL = "974557746"
"""Helse Bergen HF's organisation number: its TSB unit in the table below."""
OTHER_HOSPITAL = "983974732"


@pytest_asyncio.fixture(scope="module")
async def helseid_api(
    dev_server: WorkflowEnvironment,
    pool: asyncpg.Pool,
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Api]:
    async with running_api(
        dev_server,
        pool,
        database_url,
        tmp_path_factory.mktemp("helseid"),
        api_helseid=True,
        api_helseid_organisation_units={HOSPITAL: ["helse-bergen/TSB"]},
    ) as up:
        yield up


def _token(
    api: Api,
    claims: dict[str, Any] | None = None,
    *,
    header: dict[str, str] | None = None,
    key: rsa.RSAPrivateKey | None = None,
) -> str:
    """A HelseID-shaped access token for the factories' clinician at the hospital, with
    `claims` changed (None removes one)."""
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": f"helseid-{uuid.uuid4().hex[:8]}",
        "iat": now,
        "exp": now + 300,
        HELSEID_HPR_NUMBER: factories.CLINICIAN,
        HELSEID_ORGNR_PARENT: "983974899",
        HELSEID_ORGNR_CHILD: HOSPITAL,
        HELSEID_ASSURANCE: "high",
        **(claims or {}),
    }
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(
        payload,
        key or api.idp.key,
        algorithm="RS256",
        headers=header or {"kid": api.idp.kid, "typ": "at+jwt"},
    )


@pytest_asyncio.fixture(scope="module")
async def pathway(helseid_api: Api) -> str:
    async with helseid_api.client(Role.SYSTEM) as system:
        response = await system.post("/referrals", json=factories.referral_data(datetime.now(UTC)))
    assert response.status_code == 201, response.text
    workflow_id: str = response.json()["workflow_id"]
    return workflow_id


async def test_a_helseid_sign_in_reads_its_units_pathway_as_its_hpr_number(
    helseid_api: Api, pathway: str, owner_pool: asyncpg.Pool
) -> None:
    async with helseid_api.client(token=_token(helseid_api)) as clinician:
        response = await clinician.get(f"/pathways/{pathway}")
    assert response.status_code == 200, response.text
    logged = await owner_pool.fetchrow(
        "SELECT principal, roles, grounds FROM access_log WHERE workflow_id = $1 "
        "AND action = 'read status' ORDER BY id DESC LIMIT 1",
        pathway,
    )
    assert logged is not None
    assert logged["principal"].startswith("jwt:helseid-")
    assert (logged["roles"], logged["grounds"]) == ("clinician", "unit")


@pytest.mark.parametrize(
    ("why", "changes"),
    [
        ("wrong issuer", {"iss": "https://helseid-sts.example.invalid"}),
        ("wrong audience", {"aud": "another-api"}),
        ("expired", {"exp": int(time.time()) - 60}),
        ("no HPR number", {HELSEID_HPR_NUMBER: None}),
    ],
)
async def test_a_token_helseid_would_not_give_us_is_401(
    helseid_api: Api, pathway: str, why: str, changes: dict[str, Any]
) -> None:
    async with helseid_api.client(token=_token(helseid_api, changes)) as caller:
        response = await caller.get(f"/pathways/{pathway}")
    assert response.status_code == 401, why


async def test_a_token_signed_by_another_key_or_not_an_access_token_is_401(
    helseid_api: Api, pathway: str
) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = _token(helseid_api, key=other_key)
    id_token = _token(helseid_api, header={"kid": helseid_api.idp.kid, "typ": "JWT"})
    for token in (forged, id_token):
        async with helseid_api.client(token=token) as caller:
            assert (await caller.get(f"/pathways/{pathway}")).status_code == 401


async def test_another_organisation_has_no_need_of_service(helseid_api: Api, pathway: str) -> None:
    token = _token(
        helseid_api, {HELSEID_ORGNR_CHILD: OTHER_HOSPITAL, HELSEID_HPR_NUMBER: "9000999"}
    )
    async with helseid_api.client(token=token) as caller:
        assert (await caller.get(f"/pathways/{pathway}")).status_code == 403


async def test_a_clinical_write_needs_assurance_level_high(helseid_api: Api, pathway: str) -> None:
    assessment = factories.assessment().model_dump(mode="json")
    substantial = _token(helseid_api, {HELSEID_ASSURANCE: "substantial"})
    async with helseid_api.client(token=substantial) as caller:
        assert (await caller.get(f"/pathways/{pathway}")).status_code == 200  # reads are fine
        refused = await caller.post(f"/pathways/{pathway}/assessment", json=assessment)
    assert refused.status_code == 403
    assert "assurance level high" in refused.json()["detail"]
    async with helseid_api.client(token=_token(helseid_api)) as caller:
        accepted = await caller.post(f"/pathways/{pathway}/assessment", json=assessment)
    assert accepted.status_code == 200, accepted.text


async def test_a_patient_sees_who_accessed_their_pathway_and_nothing_else(
    helseid_api: Api,
) -> None:
    national_id = factories.national_id("020385551")
    data = factories.referral_data(datetime.now(UTC))
    data["patient"]["national_id"] = national_id
    async with helseid_api.client(Role.SYSTEM) as system:
        submitted = await system.post("/referrals", json=data)
    assert submitted.status_code == 201, submitted.text
    workflow_id = submitted.json()["workflow_id"]
    async with helseid_api.client(token=_token(helseid_api)) as clinician:
        assert (await clinician.get(f"/pathways/{workflow_id}")).status_code == 200
        # A clinician is not a patient: no one else's access log through this route.
        assert (await clinician.get("/patient/access-log")).status_code == 403

    patient = _token(helseid_api, {HELSEID_HPR_NUMBER: None, HELSEID_PID: national_id})
    async with helseid_api.client(token=patient) as own:
        seen = await own.get("/patient/access-log")
    assert seen.status_code == 200, seen.text
    accesses = seen.json()
    assert [(a["roles"], a["action"], a["organisation"]) for a in accesses] == [
        ("system", "submit referral", None),
        ("clinician", "read status", HOSPITAL),
    ]
    assert all(
        set(a) == {"at", "roles", "organisation", "action", "outcome", "grounds"} for a in accesses
    )

    stranger = _token(
        helseid_api, {HELSEID_HPR_NUMBER: None, HELSEID_PID: factories.national_id("030385552")}
    )
    async with helseid_api.client(token=stranger) as other:
        assert (await other.get("/patient/access-log")).json() == []


async def test_the_trust_frameworks_grounds_are_kept_with_each_access(
    helseid_api: Api, pathway: str, owner_pool: asyncpg.Pool
) -> None:
    grounds = {
        "type": "nhn:tillitsrammeverk:parameters",
        "care_relationship": {
            "purpose_of_use": {"code": "TREAT", "system": "urn:oid:2.16.840.1.113883.1.11.20448"},
            "decision_ref": {"id": "vedtak-4711", "user_selected": False},
        },
    }
    token = _token(helseid_api, {"authorization_details": [grounds]})
    async with helseid_api.client(token=token) as clinician:
        assert (await clinician.get(f"/pathways/{pathway}")).status_code == 200
    logged = await owner_pool.fetchrow(
        "SELECT person, organisation, purpose, decision_ref FROM access_log "
        "WHERE workflow_id = $1 ORDER BY id DESC LIMIT 1",
        pathway,
    )
    assert logged is not None
    assert dict(logged) == {
        "person": factories.CLINICIAN,
        "organisation": HOSPITAL,
        "purpose": "TREAT",
        "decision_ref": "vedtak-4711",
    }
