"""The API's outer guard (`starter.api.guard`): no caching of answers, a body limit before
parsing, and refused tokens throttled per address. A module of its own: the throttle test
leaves its address blocked for the rest of the minute."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from starter.api.auth import Role
from tests import factories
from tests.api_harness import Api, problem_of


async def test_every_answer_says_no_store_and_nosniff(api: Api) -> None:
    async with api.client(Role.SYSTEM) as system:
        created = await system.post("/referrals", json=factories.referral_data(datetime.now(UTC)))
        answers = [
            created,
            await system.get(f"/pathways/{created.json()['workflow_id']}"),
            await system.get("/pathways/rop-no-such-pathway"),
            await system.get("/tasks"),
        ]
    for answer in answers:
        assert answer.headers["cache-control"] == "no-store", answer.url
        assert answer.headers["x-content-type-options"] == "nosniff", answer.url


async def test_a_body_over_the_limit_is_413_before_it_is_parsed(api: Api) -> None:
    huge = json.dumps({"referral_id": "x" * 1_100_000})

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        for _ in range(12):
            yield b" " * 100_000

    async with api.client(Role.SYSTEM) as system:
        declared = await system.post(
            "/referrals", content=huge, headers={"Content-Type": "application/json"}
        )
        streamed = await system.post(
            "/referrals", content=chunked(), headers={"Content-Type": "application/json"}
        )
        small = await system.post(
            "/referrals", content="{", headers={"Content-Type": "application/json"}
        )
    for answer in (declared, streamed):
        assert answer.status_code == 413, answer.text
        assert "at most 1000000 bytes" in problem_of(answer)["detail"]
    assert small.status_code in (400, 422)  # under the limit: parsed, and refused as JSON


async def test_refused_tokens_are_throttled_per_address_and_logged_without_them(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    guesses = [f"guess-{n}-secret" for n in range(31)]
    statuses = []
    for guess in guesses:
        async with api.client(token=guess) as caller:
            statuses.append((await caller.get("/tasks")).status_code)
    assert statuses[:30] == [401] * 30
    assert statuses[30] == 429
    async with api.client(Role.SYSTEM) as system:  # the address, not the token, is blocked
        blocked = await system.get("/tasks")
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) in range(1, 61)
    logged = capsys.readouterr().out
    assert "token refused" in logged
    assert not any(guess in logged for guess in guesses)
