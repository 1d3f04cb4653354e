"""Every line of the README's demo works as shown.

`rop stack` (what `make run` runs) starts in a folder of its own, as on a fresh clone, and the
README's shell blocks run there against it, line by line, with the values the stack's welcome
fills in (the demo's meeting time and revision day): the demo pathway from assessment to
closure, the operator's reads, the HTTP API with curl, and the decoded history through the
codec server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DEMO_ID = "rop-DEMO-0001"
READY = "Press Ctrl-C to stop everything."
STACK_PORTS = (7233, 8233, 8000, 8234, 8235)
MAKE_RUN = ("stack", "--local-nhn", ".")
"""What `make run` runs (the Makefile's `rop stack --local-nhn .`)."""


def shell_blocks(section: str) -> list[str]:
    """The ```sh blocks of the README's section headed `section`."""
    start = README.index(f"\n## {section}\n")
    end = README.find("\n## ", start + 1)
    text = README[start : end if end != -1 else None]
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def lines_of(block: str) -> list[str]:
    """A block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = block.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        command = re.sub(r"\s+#\s.*$", "", line).strip()
        if command and not command.startswith("#"):
            commands.append(command)
    return commands


def filled(command: str, welcome: str) -> str:
    """A README line with the values the welcome printed for this run."""
    at = re.search(r"--at (\S+)", welcome)
    revision = re.search(r"--next-revision (\S+)", welcome)
    assert at is not None, welcome
    assert revision is not None, welcome
    command = re.sub(r"--at \S+", f"--at {at.group(1)}", command)
    return re.sub(r"--next-revision \S+", f"--next-revision {revision.group(1)}", command)


@contextlib.asynccontextmanager
async def running_stack(folder: Path, environment: dict[str, str]) -> AsyncIterator[str]:
    """`rop stack` in `folder` until the block ends (Ctrl-C); its welcome."""
    stack = await asyncio.create_subprocess_exec(
        str(folder / ".venv" / "bin" / "rop"),
        *MAKE_RUN,
        cwd=folder,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert stack.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(180):
            while READY not in "".join(seen):
                line = await stack.stdout.readline()
                if not line:
                    raise AssertionError("the stack stopped:\n" + "".join(seen[-40:]))
                seen.append(line.decode())
        drain = asyncio.create_task(stack.stdout.read())
        yield "".join(seen)
    finally:
        if stack.returncode is None:
            stack.send_signal(signal.SIGINT)
            async with asyncio.timeout(60):
                await stack.wait()
    await drain
    assert stack.returncode == 0


async def shell(script: str, folder: Path, environment: dict[str, str]) -> tuple[int, str]:
    """Run `script` with bash in `folder`, as a user pastes it; its exit status and output."""
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        script,
        cwd=folder,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


def _free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


async def test_the_readmes_demo_runs_as_shown(tmp_path: Path) -> None:
    busy = [port for port in STACK_PORTS if not _free(port)]
    if busy:
        pytest.fail(f"ports {busy} are taken (is `make run` running?): the stack needs them")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert f"$(BIN)/rop {' '.join(MAKE_RUN)}\n" in makefile, "the test runs what make run runs"
    folder = tmp_path / "clone"  # a fresh clone: the project's venv and seed files, no .rop/
    folder.mkdir()
    for shared in (".venv", "deploy", "nhn_local"):
        (folder / shared).symlink_to(ROOT / shared)
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ROP_", "TEMPORAL_")) and name != "DATABASE_URL"
    }
    environment["XDG_STATE_HOME"] = str(tmp_path / "state")
    (demo,) = shell_blocks("Driving the demo pathway")
    # The API's block sets TOKEN, which the codec server's block uses: one script, as pasted.
    api_and_codec = "\n".join(
        [*shell_blocks("HTTP API"), *shell_blocks("Health data in Temporal: encrypted payloads")]
    )
    async with running_stack(folder, environment) as welcome:
        assert DEMO_ID in welcome
        for command in lines_of(demo):
            code, out = await shell(filled(command, welcome), folder, environment)
            assert code == 0, f"{command}\n{out}"
            assert "Traceback" not in out, command
        status_code, status = await shell(f".venv/bin/rop status {DEMO_ID}", folder, environment)
        assert status_code == 0
        assert "closed" in status
        code, messages = await shell(
            "curl -s http://127.0.0.1:8235/_local/messages", folder, environment
        )
        received = json.loads(messages)
        # The GP office's and the municipal service's tasks (invitation, closure) went as
        # Dialogmelding, each once and each answered Ok.
        assert {m["receiverHerId"] for m in received} == {8094866, 8143099}, messages
        documents = [m["businessDocumentId"] for m in received]
        assert len(documents) == len(set(documents)) == 4, messages
        assert {m["appRecStatus"] for m in received} == {"Ok"}
        code, out = await shell(api_and_codec, folder, environment)
        assert code == 0, f"{api_and_codec}\n{out}"
        assert '"workflow_id"' in out, out  # the referral's pathway, started over HTTP
        assert out.count("WorkflowExecutionStarted") == 2, out  # the history, twice
