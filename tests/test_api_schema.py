"""The served OpenAPI schema is complete, and property-based tests (schemathesis) against
the running API find no server error and no answer that breaks the schema."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio

from starter.api.auth import Role
from tests.api_harness import Api, running_api
from tests.conftest import start_dev_server

SCHEMATHESIS = str(Path(sys.executable).parent / "st")
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "ignored_auth",
]


@pytest_asyncio.fixture(scope="module")
async def api(
    pool: asyncpg.Pool, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Api]:
    # A Temporal server of its own: schemathesis reuses the ids it sees in answers, and
    # must not reach pathways whose workers (other tests' modules) have stopped.
    dev_server = await start_dev_server()
    try:
        # Schemathesis sends a bad token to every operation on purpose: the throttle that
        # refuses an address sending many (tests/test_api_guard.py) must not answer for them.
        async with running_api(
            dev_server,
            pool,
            database_url,
            tmp_path_factory.mktemp("api-schema"),
            api_auth_failures_per_minute=10_000,
        ) as running:
            yield running
    finally:
        await dev_server.shutdown()


PUBLIC = {"/health", "/fhir/metadata", "/fhir/SearchParameter/task-due"}
"""Routes anyone may call: liveness, and what the FHIR server can do (no patient data)."""


async def test_the_schema_documents_every_route_its_errors_and_its_auth(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url) as anonymous:
        schema = (await anonymous.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    operations = {
        (method.upper(), path): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    }
    expected_steps = {
        "assessment",
        "meeting-invite",
        "meeting-move",
        "meeting",
        "crisis-plan",
        "measures/start",
        "measures/complete",
        "measures/cancel",
        "plan",
        "review",
        "closure",
        "objection",
    }
    assert {
        path.removeprefix("/pathways/{workflow_id}/")
        for method, path in operations
        if method == "POST" and path.startswith("/pathways/")
    } == expected_steps
    for (method, path), operation in operations.items():
        if path in PUBLIC:
            continue
        assert operation.get("security"), f"{method} {path} documents no auth"
        responses = operation["responses"]
        assert {"401", "403"} <= responses.keys(), f"{method} {path}"
        for status, response in responses.items():
            if status.startswith("4"):
                assert list(response["content"]) == ["application/problem+json"], (path, status)
        if method == "POST":
            names = {p["name"] for p in operation.get("parameters", [])}
            assert "Idempotency-Key" in names, f"{method} {path} takes no Idempotency-Key"
    referral_body = operations[("POST", "/referrals")]["requestBody"]["content"]
    assert set(referral_body) == {"application/json", "application/fhir+json"}
    assert "Referral" in schema["components"]["schemas"]


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    api: Api, tmp_path: Path
) -> None:
    process = await asyncio.create_subprocess_exec(
        SCHEMATHESIS,
        "run",
        f"{api.url}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--header",
        f"Authorization: Bearer {api.tokens[Role.SYSTEM]}",
        "--phases",
        "examples,coverage,fuzzing",
        # CI runs a fixed, quick sample; set ROP_SCHEMATHESIS_EXAMPLES and _SEED to dig deeper.
        "--max-examples",
        os.environ.get("ROP_SCHEMATHESIS_EXAMPLES", "12"),
        "--seed",
        os.environ.get("ROP_SCHEMATHESIS_SEED", "20261123"),
        # One worker: hypothesis parses lambdas' source with `ast`, which is not
        # thread-safe on CPython 3.11 ("AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--no-color",
        "--suppress-health-check",
        "too_slow,filter_too_much",
        "--generation-database",
        ":memory:",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    report = output.decode()
    assert process.returncode == 0, report[-6000:]
    assert "No issues found" in report or "passed" in report, report[-3000:]
