"""`python -m rop_runtime.healthcheck`: is this container's process healthy?

One image runs three commands (`rop worker`, `rop api`, `rop codec-server`), so the image's
HEALTHCHECK asks which one is PID 1 and checks it as it can be checked:

- the API and the codec server answer `GET /health` on their port;
- the worker writes a readiness file (`ROP_WORKER_READY_FILE`) once it polls its task
  queue and removes it when it stops (`worker.run_worker`): present means polling.

Kubernetes probes the same things directly (deploy/k8s): HTTP `/health`, and an exec probe
for the file. Exit status 0 is healthy, 1 is not, with one line saying why.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from rop_runtime.settings import RopSettings

ROLES = ("worker", "api", "codec-server")


def role_of(cmdline: list[str]) -> str | None:
    """Which of our commands a command line runs (`rop api --port 8000` is `api`)."""
    for argument in cmdline:
        if argument in ROLES:
            return argument
    return None


def port_of(cmdline: list[str]) -> int | None:
    """The port a command line names (`--port 47800` or `--port=47800`), or None."""
    for at, argument in enumerate(cmdline):
        value = None
        if argument == "--port" and at + 1 < len(cmdline):
            value = cmdline[at + 1]
        elif argument.startswith("--port="):
            value = argument.removeprefix("--port=")
        if value is not None and value.isdigit():
            return int(value)
    return None


def check(role: str, settings: RopSettings, port: int | None = None) -> str | None:
    """Why `role` is unhealthy, or None if it is healthy. `port`: where the process
    listens, if its command line says (it wins over the settings, as in `rop api`)."""
    if role == "worker":
        ready = settings.worker_ready_file
        if ready is None:
            return "ROP_WORKER_READY_FILE is not set: the worker's readiness cannot be seen"
        return None if ready.exists() else f"the worker is not polling (no {ready})"
    if port is None:
        port = settings.api_port if role == "api" else settings.codec_server_port
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/health", timeout=3)
    except httpx.HTTPError as error:
        return f"{role} does not answer on port {port}: {error}"
    return None if answer.status_code == 200 else f"{role} /health: {answer.status_code}"


def main() -> None:
    cmdline = Path("/proc/1/cmdline").read_bytes().decode(errors="replace").split("\0")
    role = sys.argv[1] if len(sys.argv) > 1 else role_of(cmdline)
    if role not in ROLES:
        print(f"unhealthy: PID 1 runs none of {', '.join(ROLES)}: {' '.join(cmdline)}")
        sys.exit(1)
    problem = check(role, RopSettings(), port_of(cmdline))
    print(f"unhealthy: {problem}" if problem else f"{role}: healthy")
    sys.exit(1 if problem else 0)


if __name__ == "__main__":
    main()
