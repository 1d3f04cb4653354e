"""The built wheel, not the source tree: its files, its dependencies, and a whole pathway.

Every other test imports the editable install, where a template the wheel leaves out or a
dependency only the `test` extra brings is still there. Here the wheel is built as a
release builds it, installed without `-e` into a fresh virtual environment with the hashed
lock (`deploy/requirements.lock`) and nothing else, and the scenario of `tests/shipped.py`
runs its `rop` commands as separate processes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from starter.local_stack import ensure_database
from tests.channel_servers import free_port
from tests.conftest import REPO
from tests.shipped import (
    Report,
    Service,
    Stack,
    make_owner,
    run_pathway,
    smtp_server,
    write_secrets,
)

PACKAGES = ("rop_domain", "rop_runtime", "workflows", "activities", "starter")
LINT_CONFIGURATION = {"ruff.toml"}
"""Files in the package folders that configure our tools and are never read at run time."""


def _source_files() -> list[str]:
    """The files a clean checkout of this tree has (tracked, or new and not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [path for path in listed.split("\0") if path and (REPO / path).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built as a release is: from a clean copy of the tree (no build state such
    as an editable install's egg-info, which can hide a wrong package-data glob), isolated."""
    source = tmp_path_factory.mktemp("source")
    for path in _source_files():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / path, source / path)
    folder = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(folder)]
    subprocess.run([*build, str(source)], check=True, capture_output=True)
    [built] = folder.glob("rop_forlop-*.whl")
    return built


def test_the_wheel_holds_every_file_the_code_reads(wheel: Path) -> None:
    wanted = {
        path
        for path in _source_files()
        if (path.split("/")[0] in PACKAGES or path == "worker.py")
        and Path(path).name not in LINT_CONFIGURATION
    }
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    missing = sorted(wanted - shipped)
    assert missing == [], f"the wheel lacks {len(missing)} files: {missing[:10]}"
    assert any(name.startswith("activities/templates/nn/") for name in shipped)
    # The national services' doubles are for the tests and `make run`, never shipped.
    assert not any(name.startswith(("nhn_local/", "tests/")) for name in shipped)


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the lock's wheels and ours, nothing else."""
    venv = tmp_path_factory.mktemp("shipped") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    pip += ["--disable-pip-version-check", "--no-deps"]
    lock = REPO / "deploy" / "requirements.lock"
    subprocess.run([*pip, "--require-hashes", "--only-binary=:all:", "-r", str(lock)], check=True)
    subprocess.run([*pip, str(wheel)], check=True)
    return venv


def test_every_module_of_the_wheel_imports_with_the_lock_alone(installed: Path) -> None:
    """A dependency that only a development extra brings fails here (aiohttp did)."""
    script = (
        "import importlib, pkgutil, sys\n"
        f"for package in {PACKAGES!r}:\n"
        "    module = importlib.import_module(package)\n"
        "    assert 'site-packages' in module.__file__, module.__file__\n"
        "    for found in pkgutil.walk_packages(module.__path__, package + '.'):\n"
        "        importlib.import_module(found.name)\n"
        "import worker\n"
        "print('imported')\n"
    )
    # Not from the source tree: the working directory would shadow the installed packages.
    done = subprocess.run(
        [str(installed / "bin" / "python"), "-c", script],
        cwd=installed,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "HOME": str(installed)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "imported"
    pip = subprocess.run(
        [str(installed / "bin" / "python"), "-m", "pip", "check"], capture_output=True, text=True
    )
    assert pip.returncode == 0, pip.stdout


@dataclass
class Process:
    """A `rop` command of the installed wheel, running."""

    name: str
    process: asyncio.subprocess.Process
    log: Path
    environment: dict[str, str] = field(default_factory=dict)

    async def stop(self) -> tuple[int, float]:
        began = time.monotonic()
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout=30)
        except TimeoutError:
            self.process.kill()
            code = await self.process.wait()
        return code, time.monotonic() - began

    async def logs(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@dataclass
class VenvLauncher:
    """Runs the installed wheel's `rop`, outside the source tree."""

    venv: Path
    folder: Path

    def _environment(self, environment: Mapping[str, str]) -> dict[str, str]:
        return {
            "PATH": f"{self.venv / 'bin'}:{os.environ['PATH']}",
            "HOME": str(self.folder),
            "ROP_DATA_DIR": str(self.folder / "data"),
            **environment,
        }

    async def run(
        self, arguments: Sequence[str], environment: Mapping[str, str]
    ) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            str(self.venv / "bin" / "rop"),
            *arguments,
            cwd=self.folder,
            env=self._environment(environment),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        return process.returncode or 0, output.decode(errors="replace")

    async def start(
        self, name: str, arguments: Sequence[str], environment: Mapping[str, str]
    ) -> Process:
        log = self.folder / f"{name}.log"
        extra = {"ROP_WORKER_READY_FILE": str(self.folder / f"{name}-ready")}
        full = self._environment({**environment, **extra})
        with log.open("wb") as output:
            process = await asyncio.create_subprocess_exec(
                str(self.venv / "bin" / "rop"),
                *arguments,
                cwd=self.folder,
                env=full,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        port = arguments[arguments.index("--port") + 1] if "--port" in arguments else None
        if port is not None:  # the health check reads the port from the settings here
            full["ROP_API_PORT" if name == "api" else "ROP_CODEC_SERVER_PORT"] = port
        return Process(name, process, log, full)

    async def healthy(self, service: Service) -> str:
        assert isinstance(service, Process)
        if service.process.returncode is not None:
            raise RuntimeError(f"{service.name} exited: {(await service.logs())[-2000:]}")
        checked = await asyncio.create_subprocess_exec(
            str(self.venv / "bin" / "python"),
            "-m",
            "rop_runtime.healthcheck",
            service.name,
            cwd=self.folder,
            env=service.environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await checked.communicate()
        if checked.returncode != 0:
            raise AssertionError(output.decode())
        return output.decode().strip()


@pytest_asyncio.fixture
async def stack(
    dev_server: WorkflowEnvironment, database_server_url: str, tmp_path: Path
) -> AsyncIterator[Stack]:
    """A database of its own with an owner login, secrets as files, and free ports."""
    database = f"rop_shipped_{uuid.uuid4().hex[:8]}"
    server = await ensure_database(database_server_url, "postgres")

    def database_url(login: str, password: str) -> str:
        # The session's server: a Unix socket (embedded) or DATABASE_URL's host.
        scheme, rest = server.split("://", 1)
        host_and_query = rest.rsplit("@", 1)[-1]
        host, _, query = host_and_query.partition("/")
        query = query.partition("?")[2]
        return f"{scheme}://{login}:{password}@{host}/{database}" + (f"?{query}" if query else "")

    secrets = write_secrets(tmp_path / "secrets", database_url)
    await make_owner(server, secrets.database_url("rop-owner"))
    yield Stack(
        temporal_address=dev_server.client.service_client.config.target_host,
        secrets=secrets,
        smtp_port=0,
        api_port=free_port(),
        codec_port=free_port(),
        task_queue=f"rop-shipped-{uuid.uuid4().hex[:8]}",
    )


async def test_a_whole_pathway_runs_on_the_installed_wheel(
    installed: Path, stack: Stack, tmp_path: Path
) -> None:
    with smtp_server() as smtp:
        stack = Stack(**{**stack.__dict__, "smtp_port": smtp.port})
        report = Report()
        launcher = VenvLauncher(installed, tmp_path)
        await run_pathway(launcher, stack, smtp.inbox, report)
    said = "\n".join(report.lines)
    for step in ("assessment", "meeting-invite", "meeting", "crisis-plan", "review", "closure"):
        assert f"{step}: 200" in said, said
    assert "task delivered by e-mail" in said
    assert "codec server decoded the start input" in said
