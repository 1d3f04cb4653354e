"""Who may use the API, and the access log of every read and change of a pathway."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
import structlog.testing
from cryptography.hazmat.primitives.asymmetric import rsa

from activities.database import API_ROLE, create_pool
from starter.api.auth import Role
from starter.api.idempotency import IdempotencyStore
from tests import factories
from tests.api_harness import ISSUER, Api, IdentityProvider, problem_of
from tests.cli_harness import ROP, Cli

HPR_9000555 = f"jwt:hpr-9000555@{ISSUER}"
"""How the access log names the person of the JWTs with `sub: hpr-9000555`."""


@pytest_asyncio.fixture(scope="module")
async def pathway(api: Api) -> str:
    async with api.client(Role.SYSTEM) as system:
        response = await system.post("/referrals", json=factories.referral_data(datetime.now(UTC)))
        assert response.status_code == 201
        workflow_id: str = response.json()["workflow_id"]
        # Ready once the intake has written the record (the FHIR export reads it).
        for _ in range(100):
            if (await system.get(f"/pathways/{workflow_id}/fhir")).status_code == 200:
                return workflow_id
            await asyncio.sleep(0.1)
    raise AssertionError("the intake never wrote the pathway's record")


async def test_no_or_unknown_token_is_401_with_a_bearer_challenge(api: Api, pathway: str) -> None:
    async with api.client() as anonymous, api.client(token="not-a-known-key") as stranger:
        for client in (anonymous, stranger):
            response = await client.get(f"/pathways/{pathway}")
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Bearer")
            problem_of(response)
        # Authentication comes before validation: no hint about the body to a stranger.
        refused = await anonymous.post("/referrals", json={"what": "ever"})
        assert refused.status_code == 401


@pytest.mark.parametrize(
    ("role", "method", "path", "allowed"),
    [
        (Role.OPERATOR, "GET", "/pathways/{id}", False),
        (Role.OPERATOR, "GET", "/pathways/{id}/fhir", False),
        (Role.OPERATOR, "POST", "/pathways/{id}/objection", False),
        (Role.OPERATOR, "GET", "/pathways", True),
        (Role.OPERATOR, "GET", "/indicators", True),
        (Role.OPERATOR, "GET", "/pathways/{id}/access-log", True),
        (Role.CLINICIAN, "GET", "/pathways/{id}/access-log", False),
        (Role.CLINICIAN, "POST", "/referrals", False),
        (Role.CLINICIAN, "GET", "/pathways/{id}", True),
        (Role.SYSTEM, "GET", "/pathways/{id}/fhir", True),
        (Role.SYSTEM, "GET", "/tasks", True),
        (Role.OPERATOR, "GET", "/tasks", False),
    ],
)
async def test_roles_decide_what_a_caller_may_do(
    api: Api, pathway: str, role: Role, method: str, path: str, allowed: bool
) -> None:
    body = (
        {"recorded_by": factories.CLINICIAN}
        if path.endswith("objection")
        else factories.referral_data(datetime.now(UTC))
        if path == "/referrals"
        else None
    )
    async with api.client(role) as client:
        response = await client.request(method, path.format(id=pathway), json=body)
    if allowed:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 403
        assert role.value in problem_of(response)["detail"]


async def test_jwts_from_the_identity_provider_are_verified(api: Api, pathway: str) -> None:
    idp = api.idp
    good = idp.token("hpr-9000123", ["clinician"], hpr="9000123")
    expired = idp.token("hpr-9000123", ["clinician"], expires_in=-120, hpr="9000123")
    wrong_audience = idp.token("hpr-9000123", ["clinician"], aud="another-api", hpr="9000123")
    no_role = idp.token("hpr-9000123", [], hpr="9000123")
    no_actor = idp.token("hpr-9000123", ["clinician"])
    service = idp.token("svc-epj", ["system"])
    forger = IdentityProvider(
        rsa.generate_private_key(public_exponent=65537, key_size=2048), idp.kid, idp.jwks_url
    )
    forged = forger.token("hpr-9000123", ["clinician"], hpr="9000123")
    for token, expected in (
        (good, 200),
        (expired, 401),
        (wrong_audience, 401),
        (forged, 401),
        (no_role, 403),
        (no_actor, 401),  # a person's token must say who they are in the record
        (service, 200),  # a service acts for others: no actor claim needed
    ):
        async with api.client(token=token) as client:
            response = await client.get(f"/pathways/{pathway}")
        assert response.status_code == expected, (token, response.text)


async def test_every_read_and_change_is_in_the_access_log(api: Api, pathway: str) -> None:
    async with api.client(
        token=api.idp.token("hpr-9000555", ["clinician"], hpr="9000555")
    ) as clinician:
        assert (await clinician.get(f"/pathways/{pathway}")).status_code == 200
        assessed = await clinician.post(
            f"/pathways/{pathway}/assessment",
            json={"assessor": "9000555", "decision": "in-target-group", "reason": "ROP"},
        )
        assert assessed.status_code == 200
        in_another_name = await clinician.post(
            f"/pathways/{pathway}/objection", json={"recorded_by": "9000123"}
        )
        assert in_another_name.status_code == 403
        assert "only as yourself (9000555)" in problem_of(in_another_name)["detail"]
        meeting = factories.meeting_held(datetime.now(UTC)).model_copy(
            update={"recorded_by": "9000555"}
        )
        refused = await clinician.post(
            f"/pathways/{pathway}/meeting", json=meeting.model_dump(mode="json")
        )
        assert refused.status_code == 409
    async with api.client(Role.OPERATOR) as operator:
        assert (await operator.get(f"/pathways/{pathway}/fhir")).status_code == 403
        log = await operator.get(f"/pathways/{pathway}/access-log")
    entries = [(e["principal"], e["action"], e["outcome"]) for e in log.json()]
    assert ("key:test-system", "submit referral", "ok") in entries
    # Services act for others: every access of theirs is on the grounds of service.
    assert {e["grounds"] for e in log.json() if e["principal"] == "key:test-system"} == {"service"}
    tail = entries[-5:]
    assert tail == [
        (HPR_9000555, "read status", "ok"),
        (HPR_9000555, "assess", "ok"),
        (HPR_9000555, "record objection", "denied"),
        (HPR_9000555, "record meeting", "rejected"),
        ("key:test-operator", "read FHIR bundle", "denied"),
    ]
    # Reading the log is an access too: the next read shows it.
    async with api.client(Role.OPERATOR) as operator:
        again = await operator.get(f"/pathways/{pathway}/access-log")
    last = again.json()[-1]
    assert (last["principal"], last["action"], last["outcome"]) == (
        "key:test-operator",
        "read access log",
        "ok",
    )

    # The operator's command shows the same log.
    code, out, err = await Cli.on_database(api.database_url)("access-log", pathway)
    assert code == 0, err
    lines = out.splitlines()
    assert "jwt:hpr-9000555@https://idp.example.invalid (clinician)  assess  ok" in lines[-6]
    assert "key:test-operator (operator)  read FHIR bundle  denied" in lines[-3]
    assert "key:test-operator (operator)  read access log  ok" in lines[-1]


async def test_the_access_log_cannot_be_changed_and_the_api_cannot_read_national_ids(
    api: Api, pathway: str, owner_pool: asyncpg.Pool
) -> None:
    async with owner_pool.acquire() as connection:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="access_log is append-only"):
            await connection.execute("DELETE FROM access_log WHERE workflow_id = $1", pathway)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="access_log is append-only"):
            await connection.execute("UPDATE access_log SET principal = 'someone-else'")
    async with owner_pool.acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL ROLE rop_api")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.fetchval(
                "SELECT patient_national_id FROM pathways WHERE workflow_id = $1", pathway
            )


async def test_rop_api_refuses_to_start_when_nobody_could_get_in(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DATABASE_URL": "postgresql://nobody@/nowhere",
        "ROP_DATA_DIR": str(tmp_path),
    }
    process = await asyncio.create_subprocess_exec(
        ROP, "api", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await process.communicate()
    assert process.returncode == 1
    assert err.decode().strip() == (
        "error: the API would let nobody in: set ROP_API_TOKENS_FILE or a JWT key/JWKS"
    )


async def test_a_person_completes_a_task_only_in_their_own_name(api: Api) -> None:
    async with api.client(Role.SYSTEM) as system:
        submitted = await system.post("/referrals", json=factories.referral_data(datetime.now(UTC)))
        workflow_id = submitted.json()["workflow_id"]
        task = None
        for _ in range(100):
            listed = await system.get("/tasks", params={"workflow_id": workflow_id})
            task = next((t for t in listed.json() if t["kind"] == "assess-referral"), None)
            if task:
                break
            await asyncio.sleep(0.1)
    assert task is not None
    token = api.idp.token("hpr-9000555", ["clinician"], hpr="9000555")
    assessment = {"decision": "in-target-group", "reason": "ROP"}
    async with api.client(token=token) as clinician:
        other = await clinician.post(
            f"/tasks/{task['id']}/complete",
            json={"assessment": {**assessment, "assessor": "9000123"}},
        )
        assert other.status_code == 403
        own = await clinician.post(
            f"/tasks/{task['id']}/complete",
            json={"assessment": {**assessment, "assessor": "9000555"}},
        )
        assert own.status_code == 200, own.text
        assert own.json()["pathway"]["assessment"]["assessment"]["assessor"] == "9000555"


async def test_idempotency_answers_are_forgotten_after_their_time(
    database_url: str, owner_pool: asyncpg.Pool
) -> None:
    old, fresh = f"old-{uuid.uuid4().hex}", f"fresh-{uuid.uuid4().hex}"
    await owner_pool.executemany(
        "INSERT INTO api_idempotency (principal, key, fingerprint, created_at) "
        "VALUES ('someone', $1, 'f', now() - $2::interval)",
        [(old, timedelta(hours=73)), (fresh, timedelta(hours=1))],
    )
    api_pool = await create_pool(database_url, role=API_ROLE)  # the API's own grants suffice
    try:
        assert await IdempotencyStore(api_pool).purge(timedelta(hours=72)) >= 1
    finally:
        await api_pool.close()
    kept = await owner_pool.fetch(
        "SELECT key FROM api_idempotency WHERE key = ANY($1::text[])", [old, fresh]
    )
    assert [row["key"] for row in kept] == [fresh]


async def test_tokens_that_say_too_little_or_too_much_are_refused(api: Api, pathway: str) -> None:
    idp = api.idp
    a_day = 24 * 3600
    for token in (
        idp.token("", ["system"]),  # nobody
        idp.token("  ", ["system"]),
        idp.token("svc-epj", "system"),  # type: ignore[arg-type]  # roles as a string
        idp.token("svc-epj", ["system"], expires_in=100 * 365 * a_day),  # a century
        idp.token("svc-epj", ["system"], expires_in=13 * 3600),  # over the 12 h cap
        idp.token("svc-epj", ["system"], padding="x" * 60_000),  # 60 KB
    ):
        async with api.client(token=token) as client:
            response = await client.get(f"/pathways/{pathway}")
        assert response.status_code == 401, response.text
    async with api.client(token=idp.token("svc-epj", ["system"], expires_in=11 * 3600)) as client:
        assert (await client.get(f"/pathways/{pathway}")).status_code == 200


async def test_a_json_body_with_a_key_given_twice_is_refused_naming_the_key(
    api: Api, pathway: str
) -> None:
    referral = factories.referral_data(datetime.now(UTC))
    body = json.dumps(referral)
    # An invalid national id, then a valid one: the last would win in a plain JSON reader.
    twice = body.replace('"patient": {', '"patient": {"national_id": "12345678901", ', 1)
    assert twice != body
    async with api.client(Role.SYSTEM) as system:
        refused = await system.post(
            "/referrals", content=twice, headers={"Content-Type": "application/json"}
        )
        assert refused.status_code == 422
        assert problem_of(refused)["errors"] == [
            {"field": "national_id", "message": "given more than once in one JSON object"}
        ]
        assert (await system.get(f"/pathways/rop-{referral['referral_id']}")).status_code == 404
        step = await system.post(
            f"/pathways/{pathway}/objection",
            content='{"recorded_by": "9000123", "recorded_by": "9000999"}',
            headers={"Content-Type": "application/json"},
        )
        assert step.status_code == 422
        assert problem_of(step)["errors"][0]["field"] == "recorded_by"
    async with api.client() as stranger:
        # A stranger learns nothing about the body: authentication comes first.
        assert (await stranger.post("/referrals", content=twice)).status_code == 401


async def test_an_invalid_request_from_a_known_caller_is_logged_with_who_sent_it(
    api: Api, pathway: str
) -> None:
    with structlog.testing.capture_logs() as logged:
        async with api.client(Role.CLINICIAN) as clinician:
            missing = await clinician.post(f"/pathways/{pathway}/objection", json={"note": "x"})
            assert missing.status_code == 422
            twice = await clinician.post(
                f"/pathways/{pathway}/objection",
                content='{"recorded_by": "9000123", "recorded_by": "9000999"}',
                headers={"Content-Type": "application/json"},
            )
            assert twice.status_code == 422
    async with api.client(Role.OPERATOR) as operator:
        log = (await operator.get(f"/pathways/{pathway}/access-log")).json()
    assert [(e["principal"], e["action"], e["outcome"]) for e in log][-2:] == [
        ("key:test-clinician", "record objection", "rejected"),
        ("key:test-clinician", "record objection", "rejected"),
    ]
    requests = [entry for entry in logged if entry["event"] == "request"]
    assert [(r["status"], r["caller"]) for r in requests] == [
        (422, "key:test-clinician"),
        (422, "key:test-clinician"),
    ]


async def test_a_person_is_bound_to_themselves_whatever_else_their_token_says(
    api: Api, pathway: str
) -> None:
    both = api.idp.token("hpr-9000555", ["clinician", "system"], hpr="9000555")
    async with api.client(token=both) as person:
        refused = await person.post(
            f"/pathways/{pathway}/objection", json={"recorded_by": "9000123"}
        )
    assert refused.status_code == 403
    assert "only as yourself (9000555)" in problem_of(refused)["detail"]


async def test_a_token_whose_sub_is_an_api_keys_name_never_gets_its_answers(api: Api) -> None:
    """Identities are namespaced by source: a JWT with `sub: test-system` is not the API
    key named `test-system`, so it does not get that key's stored Idempotency-Key answer."""
    body = factories.referral_data(datetime.now(UTC))
    key = {"Idempotency-Key": f"collide-{uuid.uuid4().hex}"}
    async with api.client(Role.SYSTEM) as static:
        first = await static.post("/referrals", json=body, headers=key)
    assert first.status_code == 201
    namesake = api.idp.token("test-system", ["system"])
    async with api.client(token=namesake) as jwt_caller:
        second = await jwt_caller.post("/referrals", json=body, headers=key)
    assert second.status_code == 200  # the pathway exists: its own answer, not a replay
    assert "idempotent-replayed" not in second.headers
