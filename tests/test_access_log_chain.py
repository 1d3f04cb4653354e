"""The access log's hash chain: a row changed or removed behind the API's back is found.

Each test tampers as someone who got past the append-only trigger (the schema owner),
on a database of its own, and runs `rop access-log verify` as an operator would.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from activities.database import API_ROLE, create_pool, migrate, migration_files
from starter import access_log
from starter.access_log import Access, Grounds, Outcome
from starter.local_stack import ensure_database
from tests.cli_harness import Cli


@pytest_asyncio.fixture
async def chain_database(database_server_url: str) -> AsyncIterator[str]:
    """A migrated database with ten accesses written by the API's role."""
    url = await ensure_database(database_server_url, f"rop_chain_{uuid.uuid4().hex[:10]}")
    owner = await create_pool(url)
    try:
        await migrate(owner)
    finally:
        await owner.close()
    api = await create_pool(url, role=API_ROLE)
    try:
        for number in range(10):
            await access_log.record(
                api,
                [
                    Access(
                        principal=f"hpr-90001{number:02d}",
                        roles="clinician",
                        workflow_id=f"rop-T-{number % 3}",
                        action="read status",
                        outcome=Outcome.OK,
                    )
                ],
            )
        # The API's role writes rows, and cannot move the chain's head itself.
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await api.execute("UPDATE access_log_head SET chain_seq = 0")
    finally:
        await api.close()
    yield url


async def _verify(database_url: str) -> tuple[int, str]:
    """`rop access-log verify`: its exit code and its last line."""
    code, out, err = await Cli.on_database(database_url)("access-log", "verify")
    return code, (out or err).strip().splitlines()[-1]


async def _as_owner_past_the_trigger(database_url: str, sql: str) -> None:
    owner = await asyncpg.connect(database_url)
    try:
        await owner.execute("ALTER TABLE access_log DISABLE TRIGGER access_log_append_only")
        await owner.execute(sql)
        await owner.execute("ALTER TABLE access_log ENABLE TRIGGER access_log_append_only")
    finally:
        await owner.close()


async def test_an_untouched_log_verifies(chain_database: str) -> None:
    assert await _verify(chain_database) == (
        0,
        "access log intact: 10 rows, each chained to the one before",
    )


async def test_a_changed_row_is_found(chain_database: str) -> None:
    await _as_owner_past_the_trigger(
        chain_database,
        "UPDATE access_log SET principal = 'someone-else' WHERE chain_seq = 4",
    )
    code, line = await _verify(chain_database)
    assert code == 1
    assert line.endswith("changed: row id 4 (position 4)")


async def test_a_changed_break_glass_reason_or_namespace_is_found(chain_database: str) -> None:
    api = await create_pool(chain_database, role=API_ROLE)
    try:
        await access_log.record(
            api,
            [
                Access(
                    principal="jwt:someone@https://idp.example.invalid",
                    roles="clinician",
                    workflow_id="rop-T-1",
                    action="read status",
                    outcome=Outcome.OK,
                    grounds=Grounds.BREAK_GLASS,
                    reason="Akutt innlagt, trenger kriseplanen nå",
                    namespace="default",
                )
            ],
        )
    finally:
        await api.close()
    assert (await _verify(chain_database))[0] == 0
    for tampering in ("reason = 'routine check'", "namespace = 'other'", "grounds = 'unit'"):
        await _as_owner_past_the_trigger(
            chain_database,
            f"UPDATE access_log SET {tampering} WHERE chain_seq = 11",  # noqa: S608
        )
        code, line = await _verify(chain_database)
        assert code == 1
        assert line.endswith("broken: changed: row id 11 (position 11)"), tampering
        await _as_owner_past_the_trigger(  # put it back for the next field
            chain_database,
            "UPDATE access_log SET reason = 'Akutt innlagt, trenger kriseplanen nå', "
            "namespace = 'default', grounds = 'break-glass' WHERE chain_seq = 11",
        )


async def test_removed_rows_are_found_in_the_middle_and_at_the_end(chain_database: str) -> None:
    await _as_owner_past_the_trigger(
        chain_database, "DELETE FROM access_log WHERE chain_seq IN (5, 6) OR chain_seq = 10"
    )
    code, line = await _verify(chain_database)
    assert code == 1
    assert "removed: positions 5-6 (before row id 7)" in line
    assert line.endswith("removed: the newest rows after position 9 (the head says 10)")


async def test_the_check_names_a_bounded_number_of_problems(
    chain_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the rows that break the chain leave the database, and at most `MOST_PROBLEMS`
    of them are named (memory stays bounded over a long log)."""
    await _as_owner_past_the_trigger(
        chain_database, "UPDATE access_log SET principal = 'x' WHERE chain_seq IN (2, 4, 6)"
    )
    monkeypatch.setattr(access_log, "MOST_PROBLEMS", 2)
    connection = await asyncpg.connect(chain_database)
    try:
        rows, problems = await access_log.verify_chain(connection)
    finally:
        await connection.close()
    assert rows == 10
    assert problems == [
        "changed: row id 2 (position 2)",
        "changed: row id 4 (position 4)",
        "... and 1 more",
    ]


async def test_rows_written_after_a_check_extend_the_chain(chain_database: str) -> None:
    owner = await create_pool(chain_database)
    try:
        await access_log.record(
            owner,
            [
                Access(
                    principal="test-operator",
                    roles="operator",
                    workflow_id=f"rop-T-{n}",
                    action="list pathways",
                    outcome=Outcome.OK,
                )
                for n in range(3)
            ],
        )
        async with owner.acquire() as connection:
            rows, problems = await access_log.verify_chain(connection)
    finally:
        await owner.close()
    assert (rows, problems) == (13, [])


async def test_rows_from_before_the_chain_join_it_when_the_migration_runs(
    database_server_url: str,
) -> None:
    url = await ensure_database(database_server_url, f"rop_chain_{uuid.uuid4().hex[:10]}")
    before_the_chain = [m for m in migration_files() if m[1] < "0007"]
    owner = await create_pool(url)
    try:
        await migrate(owner, before_the_chain)
        await owner.executemany(
            "INSERT INTO access_log (principal, roles, workflow_id, action, outcome) "
            "VALUES ($1, 'system', 'rop-T-1', 'read status', 'ok')",
            [("svc-a",), ("svc-b",), ("svc-c",)],
        )
    finally:
        await owner.close()
    pool = await create_pool(url)
    try:
        assert (await migrate(pool))[0] == "0007_access_log_chain.sql"
        await access_log.record(
            pool,
            [Access(principal="svc-d", roles="system", workflow_id="rop-T-1",
                    action="read status", outcome=Outcome.OK)],
        )  # fmt: skip
    finally:
        await pool.close()
    assert await _verify(url) == (0, "access log intact: 4 rows, each chained to the one before")
