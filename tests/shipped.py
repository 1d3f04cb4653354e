"""What ships, run as it ships: a whole pathway through an installed rop-forlop.

The same scenario runs against two installs of the same code: the built wheel installed
(non-editable) with the hashed lock into a fresh virtual environment
(`tests/test_shipped_wheel.py`), and the container image (`make image-check`,
`tests/image_check.py`). Each is a `Launcher`: it runs a `rop` command to its end, or starts
one as a service and stops it with SIGTERM. The scenario itself only speaks to the services
as their users do: `rop db migrate` and `rop db login` as the operator runs them, the HTTP
API as an EPJ drives it, the codec server as the Temporal UI asks it, and an SMTP server
that receives the task e-mails.

A file or a dependency that the package lacks shows here as a failed step, not in
production.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import asyncpg
import httpx
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.client import Client

from bench.pathways import bench_referral, bench_steps
from rop_domain.steps import STEP
from starter.api.auth import KeyHolder, Role, write_tokens_file
from starter.local_stack import ensure_database
from tests.channel_servers import Inbox, SmtpServer

SERVICE_COMMANDS = ("worker", "api", "codec-server")


class Service(Protocol):
    """A long-running `rop` command, as its launcher started it."""

    name: str

    async def stop(self) -> tuple[int, float]:
        """Send SIGTERM; return the exit code and the seconds it took to exit."""
        ...

    async def logs(self) -> str: ...


class Launcher(Protocol):
    """Runs `rop` commands of one install: a virtual environment, or the image."""

    async def run(
        self, arguments: Sequence[str], environment: Mapping[str, str]
    ) -> tuple[int, str]:
        """Run `rop ARGUMENTS` to its end: exit code and output."""
        ...

    async def start(
        self, name: str, arguments: Sequence[str], environment: Mapping[str, str]
    ) -> Service: ...

    async def healthy(self, service: Service) -> str:
        """What the image's health check says of `service` (one line; raises if unhealthy)."""
        ...


@dataclass(frozen=True)
class Secrets:
    """The files a deployment mounts: payload keys, API keys and one env file per login."""

    folder: Path
    system_token: str

    @property
    def payload_keys(self) -> Path:
        return self.folder / "payload-keys.json"

    @property
    def api_tokens(self) -> Path:
        return self.folder / "api-tokens.json"

    def env_file(self, login: str) -> Path:
        return self.folder / f"{login}.env"

    def database_url(self, login: str) -> str:
        line = self.env_file(login).read_text(encoding="utf-8").splitlines()[0]
        return line.removeprefix("DATABASE_URL=")


def write_secrets(folder: Path, database_url_of: Callable[[str, str], str]) -> Secrets:
    """Payload keys, a system API key, and an env file per login (`rop-owner`, `rop-worker`,
    `rop-api`) whose DATABASE_URL `database_url_of(login, password)` makes."""
    folder.mkdir(parents=True, exist_ok=True)
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    (folder / "payload-keys.json").write_text(json.dumps({"current": "k1", "keys": {"k1": key}}))
    token = secrets.token_urlsafe(24)
    write_tokens_file(folder / "api-tokens.json", {token: KeyHolder("epj", Role.SYSTEM)})
    suffix = uuid.uuid4().hex[:8]
    for name, login in (
        ("rop-owner", f"rop_owner_{suffix}"),
        ("rop-worker", f"rop_worker_{suffix}"),
        ("rop-api", f"rop_api_{suffix}"),
    ):
        url = database_url_of(login, secrets.token_urlsafe(18))
        (folder / f"{name}.env").write_text(f"DATABASE_URL={url}\n", encoding="utf-8")
    return Secrets(folder, token)


async def make_owner(server_url: str, owner_url: str) -> None:
    """What a database administrator does once (deploy/README, "Database logins"; compose's
    postgres-init.sh): the schema owner's login, and its database, owned by it."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(owner_url)
    login, password = unquote(parts.username or ""), unquote(parts.password or "")
    database = parts.path.lstrip("/")
    connection = await asyncpg.connect(server_url)
    try:
        await connection.execute(
            await connection.fetchval(
                "SELECT format('CREATE ROLE %I LOGIN CREATEROLE PASSWORD %L', $1::text, $2::text)",
                login,
                password,
            )
        )
        # The service roles are the cluster's: on a server where an earlier migration made
        # them, the new owner needs ADMIN on them to make logins (deploy/README).
        for role in await connection.fetch(
            "SELECT rolname FROM pg_roles WHERE rolname IN ('rop_worker', 'rop_api')"
        ):
            await connection.execute(f'GRANT "{role["rolname"]}" TO "{login}" WITH ADMIN TRUE')
        await connection.execute(f'CREATE DATABASE "{database}" OWNER "{login}"')
    finally:
        await connection.close()
    url = await ensure_database(server_url, database)
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f'ALTER SCHEMA public OWNER TO "{login}"')
    finally:
        await connection.close()


@dataclass
class Report:
    """What the scenario saw, for the check's own output."""

    lines: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)


@dataclass(frozen=True)
class Stack:
    """Where the shipped services find what they need: Temporal, the records, SMTP."""

    temporal_address: str
    secrets: Secrets
    smtp_port: int
    api_port: int
    codec_port: int
    task_queue: str

    def environment(self, login: str) -> dict[str, str]:
        """A service's environment, as the k8s ConfigMap and Secrets give it."""
        return {
            "DATABASE_URL": self.secrets.database_url(login),
            "ROP_TEMPORAL_ADDRESS": self.temporal_address,
            "ROP_TASK_QUEUE": self.task_queue,
            "ROP_PAYLOAD_KEYS_FILE": str(self.secrets.payload_keys),
            "ROP_API_TOKENS_FILE": str(self.secrets.api_tokens),
            "ROP_ALLOW_SYNTHETIC_IDS": "true",
            "ROP_SMTP_HOST": "127.0.0.1",
            "ROP_SMTP_PORT": str(self.smtp_port),
            "ROP_LOG_FORMAT": "json",
            "ROP_UI_ORIGIN": "http://localhost:8233",
        }


@contextlib.contextmanager
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server on loopback that receives the pathway's task e-mails."""
    server = SmtpServer(Inbox())
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def run_pathway(launcher: Launcher, stack: Stack, inbox: Inbox, report: Report) -> None:
    """Migrate, make the logins, start worker, API and codec server from the install, drive
    a whole pathway through the API, see its task e-mailed and its start input decoded, check
    each service's health, and stop each with SIGTERM (exit 0 within 5 s)."""
    owner = stack.environment("rop-owner")
    code, output = await launcher.run(["db", "migrate"], owner)
    _expect(code == 0, "rop db migrate", output)
    report.say(f"migrate: {output.strip().splitlines()[-1][:100]}")
    code, output = await launcher.run(
        [
            "db",
            "login",
            f"rop_worker={stack.secrets.env_file('rop-worker')}",
            f"rop_api={stack.secrets.env_file('rop-api')}",
        ],
        owner,
    )
    _expect(code == 0, "rop db login", output)
    report.say(f"logins: {'; '.join(output.strip().splitlines()[-2:])}")

    services = [
        await launcher.start("worker", ["worker"], stack.environment("rop-worker")),
        await launcher.start(
            "api",
            ["api", "--host", "127.0.0.1", "--port", str(stack.api_port)],
            stack.environment("rop-api"),
        ),
        await launcher.start(
            "codec-server",
            ["codec-server", "--host", "127.0.0.1", "--port", str(stack.codec_port)],
            stack.environment("rop-api"),
        ),
    ]
    try:
        for service in services:
            report.say(
                f"{service.name}: {await _until(functools.partial(launcher.healthy, service))}"
            )
        async with httpx.AsyncClient(
            headers={"Authorization": f"Bearer {stack.secrets.system_token}"}, timeout=30
        ) as http:
            workflow_id = await _drive(http, f"http://127.0.0.1:{stack.api_port}", report)
            await _until(lambda: _delivered(inbox))
            report.say(f"task delivered by e-mail: {inbox.messages[0]['Subject']!r}")
            decoded = await _decode_start(http, stack, workflow_id)
            report.say(f"codec server decoded the start input: {decoded}")
    except BaseException:
        for service in services:
            report.say(f"--- {service.name} log ---\n{(await service.logs())[-4000:]}")
        raise
    finally:
        for service in reversed(services):
            code, seconds = await service.stop()
            report.say(f"{service.name}: SIGTERM -> exit {code} in {seconds:.1f} s")
            _expect(code == 0 and seconds < 5, f"{service.name} stops on SIGTERM", str(code))


async def _drive(http: httpx.AsyncClient, api: str, report: Report) -> str:
    """Referral -> assessment -> invite -> meeting -> crisis plan -> review -> closure."""
    now = datetime.now(UTC)
    answer = await http.post(
        f"{api}/referrals", json=bench_referral(now), headers={"Idempotency-Key": str(uuid.uuid4())}
    )
    _expect(answer.status_code == 201, "POST /referrals", answer.text)
    workflow_id = str(answer.json()["workflow_id"])
    report.say(f"referral: 201, pathway {workflow_id}")
    for name, body in bench_steps(now):
        path = f"{api}/pathways/{workflow_id}/{STEP[name].http_path}"
        answer = await http.post(
            path, json=body.model_dump(mode="json"), headers={"Idempotency-Key": str(uuid.uuid4())}
        )
        _expect(answer.status_code == 200, f"POST {STEP[name].http_path}", answer.text)
        report.say(f"{STEP[name].http_path}: 200, phase {answer.json()['phase']}")
    status = (await http.get(f"{api}/pathways/{workflow_id}")).json()
    _expect(status["phase"] == "closed", "the pathway is closed", json.dumps(status)[:300])
    return workflow_id


async def _delivered(inbox: Inbox) -> str:
    if not inbox.messages:
        raise AssertionError("no task e-mail yet")
    return "delivered"


async def _decode_start(http: httpx.AsyncClient, stack: Stack, workflow_id: str) -> str:
    """The start input as Temporal stores it (ciphertext), decoded by the codec server."""
    client = await Client.connect(stack.temporal_address)  # no codec: the stored payloads
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    stored = history.events[0].workflow_execution_started_event_attributes.input
    _expect(b"referral_id" not in stored.SerializeToString(), "the stored input is encrypted", "")
    answer = await http.post(
        f"http://127.0.0.1:{stack.codec_port}/decode",
        content=json_format.MessageToJson(stored),
        headers={"Content-Type": "application/json", "X-Namespace": "default"},
    )
    _expect(answer.status_code == 200, "POST /decode", answer.text)
    decoded = json_format.Parse(answer.content, Payloads())
    text = decoded.payloads[0].data.decode()
    _expect(workflow_id.removeprefix("rop-") in text, "the decoded input names the referral", text)
    return f"{len(decoded.payloads)} payload(s), {len(text)} bytes of JSON naming the referral"


async def _until(
    check: Callable[[], Awaitable[str]], within: float = 60.0, every: float = 0.5
) -> str:
    """`check()`'s answer once it stops raising, within `within` seconds."""
    give_up = time.monotonic() + within
    while True:
        try:
            return await check()
        except Exception:
            if time.monotonic() > give_up:
                raise
            await asyncio.sleep(every)


def _expect(condition: bool, what: str, detail: str) -> None:
    if not condition:
        raise AssertionError(f"{what}: {detail[-2000:]}")
