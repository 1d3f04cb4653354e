"""The production artefacts are valid as their tools read them: every Kubernetes manifest
against the Kubernetes schemas (offline, `kubernetes-validate`), the Dockerfile's stages
and rules, the dependency lock, and the health checks the image and the probes run."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import subprocess
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from compose_spec import PyCompose
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from temporalio.testing import WorkflowEnvironment

from rop_runtime.codec import read_key_file
from rop_runtime.healthcheck import check, port_of, role_of
from rop_runtime.settings import RopSettings
from starter.cli import build_parser
from starter.cli_operations import login_of_env_file
from tests.api_harness import Api
from tests.channel_servers import free_port
from worker import run_worker

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"
IMAGE = "registry.example.hospital.no/rop-forlop:1.0.0"


def _documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                yield path.name, document


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in _documents() if d["kind"] == kind}


def _containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for _, document in _documents():
        if document["kind"] in ("Deployment", "Job"):
            pod = document["spec"]["template"]["spec"]
            for container in pod["containers"]:
                yield document["metadata"]["name"], pod, container


def test_every_manifest_validates_against_the_kubernetes_schemas() -> None:
    documents = list(_documents())
    assert len(documents) >= 20
    for name, document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        assert document["metadata"].get("namespace", "rop-forlop") == "rop-forlop", name


def test_a_schema_violation_is_caught() -> None:
    [deployment] = [d for _, d in _documents() if d["metadata"]["name"] == "rop-api"][:1]
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_container_is_locked_down_sized_and_probed() -> None:
    parser = build_parser()
    for name, pod, container in _containers():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["allowPrivilegeEscalation"] is False, name
        assert container["resources"]["requests"]["cpu"], name
        assert container["resources"]["limits"]["memory"], name
        assert container["image"] == IMAGE, name
        parser.parse_args(container["args"])  # a command `rop` has, with its options
        if name != "rop-migrate":
            assert "readinessProbe" in container, name
            assert "livenessProbe" in container, name


def test_only_the_api_and_the_codec_server_are_reachable_from_outside() -> None:
    backends = {
        path["backend"]["service"]["name"]
        for ingress in _by_kind("Ingress").values()
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert backends == {"rop-api", "rop-codec-server"}
    for ingress in _by_kind("Ingress").values():
        assert ingress["spec"]["tls"], ingress["metadata"]["name"]
    policies = _by_kind("NetworkPolicy")
    assert policies["default-deny"]["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
    }
    outside = policies["api-and-codec-from-ingress"]["spec"]["podSelector"]
    assert outside["matchExpressions"][0]["values"] == ["rop-api", "rop-codec-server"]
    # Workers reach out only to Temporal, PostgreSQL, DNS and their delivery channels.
    worker_egress = [
        p["metadata"]["name"]
        for p in policies.values()
        if "Egress" in p["spec"]["policyTypes"] and _selects(p, "rop-worker")
    ]
    assert sorted(worker_egress) == [
        "default-deny",
        "dns",
        "temporal-and-postgres",
        "worker-deliveries",
    ]


def _selects(policy: dict[str, Any], app: str) -> bool:
    selector = policy["spec"]["podSelector"]
    if not selector:
        return True
    labels = selector.get("matchLabels", {})
    expressions = selector.get("matchExpressions", [])
    return labels.get("app.kubernetes.io/name") == app or any(
        app in e["values"] for e in expressions
    )


def test_workers_have_a_disruption_budget_an_autoscaler_and_the_migration_a_job() -> None:
    assert _by_kind("PodDisruptionBudget")["rop-worker"]["spec"]["minAvailable"] >= 1
    scaler = _by_kind("HorizontalPodAutoscaler")["rop-worker"]["spec"]
    assert scaler["scaleTargetRef"]["name"] == "rop-worker"
    assert scaler["minReplicas"] >= 2
    job = _by_kind("Job")["rop-migrate"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "migrate"]
    # Each process has its own database login: the owner's only for the migration.
    secrets = _by_kind("Secret")
    logins = {
        name: [ref["secretRef"]["name"] for ref in c.get("envFrom", []) if "secretRef" in ref]
        for name, _, c in _containers()
    }
    assert "rop-owner-db" in logins["rop-migrate"]
    for name, refs in logins.items():
        assert set(refs) <= set(secrets), name
        if name != "rop-migrate":
            assert "rop-owner-db" not in refs, name


def test_the_dockerfile_builds_from_the_lock_without_compilers_and_runs_unprivileged() -> None:
    dockerfile = DockerfileParser(path=str(REPO / "Dockerfile"))
    instructions = dockerfile.structure
    stages = [i for i in instructions if i["instruction"] == "FROM"]
    assert [s["value"].split()[-1] for s in stages] == ["build", "runtime"]
    final = [i for i in instructions if i["startline"] > stages[-1]["startline"]]

    def values(instruction: str, among: Sequence[Mapping[str, Any]]) -> list[str]:
        return [i["value"] for i in among if i["instruction"] == instruction]

    runs = " ".join(values("RUN", instructions))
    assert not re.search(r"\b(gcc|g\+\+|build-essential|clang|apt-get install)\b", runs)
    assert "--require-hashes" in runs
    assert "--only-binary=:all:" in runs
    [user] = values("USER", final)
    assert user.split(":")[0].isdigit()
    assert int(user.split(":")[0]) >= 10000
    [healthcheck] = values("HEALTHCHECK", final)
    assert "rop_runtime.healthcheck" in healthcheck
    assert values("ENTRYPOINT", final) == ['["rop"]']
    ignored = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for copy in values("COPY", instructions):
        if copy.startswith("--from"):
            continue
        for source in copy.split()[:-1]:
            assert (REPO / source).exists(), source
            assert not any(source == i or source.startswith(f"{i}/") for i in ignored), source
    assert "deploy/secrets" in ignored  # never sent to a build


def test_the_lock_pins_every_dependency_with_hashes() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    lock = (REPO / "deploy" / "requirements.lock").read_text()
    pins: dict[str, str] = {}
    for entry in re.split(r"\n(?=[a-z0-9])", lock):
        head = entry.split("\\")[0].strip()
        if "==" not in head or head.startswith("#"):
            continue
        name, version = head.split("==")
        assert "--hash=sha256:" in entry, name
        pins[_normal(name)] = version.strip()
    for dependency in pyproject["project"]["dependencies"]:
        requirement = Requirement(dependency)
        name = _normal(requirement.name)
        assert name in pins, f"{name} is not in deploy/requirements.lock"
        assert requirement.specifier.contains(pins[name]), (name, pins[name])
    assert "setuptools" in pins  # the image builds the project without an index


def _normal(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_health_check_knows_which_process_it_checks() -> None:
    assert role_of(["/opt/rop/bin/python", "/opt/rop/bin/rop", "api", "--port", "8000"]) == "api"
    assert role_of(["rop", "codec-server", "--host", "0.0.0.0"]) == "codec-server"  # noqa: S104
    assert role_of(["rop", "worker"]) == "worker"
    assert role_of(["python", "-m", "http.server"]) is None
    # ... and the port it listens on, where its command line says (`rop api --port 47800`).
    assert port_of(["/opt/rop/bin/rop", "api", "--host", "0.0.0.0", "--port", "47800"]) == 47800  # noqa: S104
    assert port_of(["rop", "codec-server", "--port=8235"]) == 8235
    assert port_of(["rop", "worker"]) is None


async def test_the_health_check_of_the_api(api: Api) -> None:
    port = int(api.url.rsplit(":", 1)[1])
    # In a thread: the API serves on this test's event loop.
    assert await asyncio.to_thread(check, "api", RopSettings(api_port=port)) is None
    problem = await asyncio.to_thread(check, "api", RopSettings(api_port=free_port()))
    assert problem is not None
    assert "does not answer" in problem
    # The port of the process's command line wins over the setting.
    settings = RopSettings(api_port=free_port())
    assert await asyncio.to_thread(check, "api", settings, port) is None


async def test_the_worker_says_it_polls_while_it_does(
    dev_server: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> None:
    ready = tmp_path / "ready" / "rop-worker-ready"
    settings = RopSettings(
        temporal_address=dev_server.client.service_client.config.target_host,
        task_queue=f"rop-ready-{free_port()}",
        worker_ready_file=ready,
        data_dir=tmp_path,
        payload_keys_file=None,
    )
    assert check("worker", settings) == f"the worker is not polling (no {ready})"
    stop = asyncio.Event()
    running = asyncio.create_task(run_worker(settings, database_url, stop))
    for _ in range(200):
        if ready.exists() or running.done():
            break
        await asyncio.sleep(0.05)
    assert check("worker", settings) is None
    stop.set()
    await running
    assert not ready.exists()
    assert "not polling" in (check("worker", settings) or "")


COMPOSE = REPO / "deploy" / "compose.yaml"


def _compose() -> dict[str, Any]:
    """The compose file as Compose reads it with no variables set: `${NAME:-default}` as its
    default, YAML merge keys resolved (compose-spec's parser reads plain documents)."""
    text = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", COMPOSE.read_text(encoding="utf-8"))
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def test_the_compose_file_is_a_valid_compose_specification() -> None:
    parsed = PyCompose.from_json(json.dumps(_compose()))
    assert set(parsed.service_names()) >= {
        "postgres",
        "temporal-schema",
        "temporal",
        "temporal-ui",
        "rop-migrate",
        "rop-worker",
        "rop-api",
        "rop-codec-server",
    }
    broken = _compose()
    broken["services"]["rop-api"]["restart"] = "sometimes"
    with pytest.raises(ValueError, match="unknown variant `sometimes`"):
        PyCompose.from_json(json.dumps(broken))


def test_the_compose_stack_hangs_together() -> None:
    compose = _compose()
    services: dict[str, dict[str, Any]] = compose["services"]
    parser = build_parser()
    for name, service in services.items():
        for needed in service.get("depends_on", {}):
            assert needed in services, (name, needed)
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"], (name, secret)
        for env_file in service.get("env_file", []):
            assert env_file.startswith("./secrets/"), (name, env_file)
        image = service["image"]
        assert ":" in image, name
        assert not image.endswith(":latest"), name
        environment = service.get("environment", {})
        assert "ROP_LOCAL_MODE" not in environment, name
        assert "ROP_CODEC_SERVER_TOKEN" not in environment, name
        if name.startswith("rop-"):
            parser.parse_args(service["command"])
            assert service["read_only"] is True, name
    published = {name for name, s in services.items() if s.get("ports")}
    assert published == {"temporal-ui", "rop-api", "rop-codec-server"}
    for name in published:  # on loopback unless ROP_PUBLISH_ADDRESS says otherwise
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"]), name
    assert "${ROP_PUBLISH_ADDRESS:-127.0.0.1}:8000:8000" in COMPOSE.read_text()
    assert services["temporal-ui"]["ports"] == ["127.0.0.1:8080:8080"]
    assert services["rop-worker"]["deploy"]["replicas"] == 2
    # The migration, then the services' logins (made from their own env files), then them.
    done = {"condition": "service_completed_successfully"}
    assert services["rop-logins"]["depends_on"]["rop-migrate"] == done
    for name in ("rop-worker", "rop-api", "rop-codec-server"):
        assert services[name]["depends_on"]["rop-logins"] == done, name
    logins = parser.parse_args(services["rop-logins"]["command"]).logins
    files = {s: compose["secrets"][s]["file"] for s in services["rop-logins"]["secrets"]}
    assert sorted(logins) == [
        f"rop_api=/run/secrets/{next(s for s, f in files.items() if f.endswith('rop-api.env'))}",
        f"rop_worker=/run/secrets/{next(s for s, f in files.items() if f.endswith('rop-worker.env'))}",
    ]
    assert services["rop-logins"]["env_file"] == ["./secrets/rop-owner.env"]
    init = services["postgres"]["volumes"][1].split(":")[0]
    assert "CREATE DATABASE rop OWNER rop_owner" in (COMPOSE.parent / init).read_text()
    assert services["temporal"]["depends_on"]["temporal-schema"] == {
        "condition": "service_completed_successfully"
    }
    assert "temporal-sql-tool" in " ".join(services["temporal-schema"]["command"])
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./secrets/")
    assert "deploy/secrets/" in (REPO / ".gitignore").read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="make-secrets.sh gives files to other users: root")
def test_the_secrets_script_makes_files_each_container_can_read(tmp_path: Path) -> None:
    """Compose bind-mounts file secrets with the host's owner and mode: the files
    make-secrets.sh writes are readable by the user of the container that reads them (10001
    for ours, 999 for the postgres image), by nobody else, and what they hold parses."""
    script = COMPOSE.parent / "compose" / "make-secrets.sh"
    subprocess.run(["sh", str(script), str(tmp_path)], check=True, capture_output=True)
    compose = _compose()
    secret_files = {name: Path(s["file"]).name for name, s in compose["secrets"].items()}
    readers = {"postgres": 999, **{n: 10001 for n in compose["services"] if n.startswith("rop-")}}
    for service, gid in readers.items():
        definition = compose["services"][service]
        files = [secret_files[s] for s in definition.get("secrets", [])]
        files += [Path(f).name for f in definition.get("env_file", [])]
        for name in files:
            status = (tmp_path / name).stat()
            assert (status.st_uid, status.st_gid) == (0, gid), (service, name)
            assert stat.S_IMODE(status.st_mode) == 0o440, (service, name)
    keys, current = read_key_file(tmp_path / "payload-keys.json")
    assert len(keys[current]) == 32
    assert login_of_env_file(tmp_path / "rop-worker.env")[0] == "rop_worker_login"
    assert login_of_env_file(tmp_path / "rop-api.env")[0] == "rop_api_login"
    owner, password = login_of_env_file(tmp_path / "rop-owner.env")
    assert (owner, password) == ("rop_owner", (tmp_path / "rop-owner-password").read_text())
    # A second run keeps every password a database may already have.
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    subprocess.run(["sh", str(script), str(tmp_path)], check=True, capture_output=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_secret_volumes_are_readable_by_the_containers_user() -> None:
    """Kubernetes writes Secret files as root; with `fsGroup` their group is the pod's, so a
    mode with group read lets uid 10001 read them (without it every pod exits at start)."""
    for name, pod, _ in _containers():
        secret_volumes = [v["secret"] for v in pod.get("volumes", []) if "secret" in v]
        for volume in secret_volumes:
            assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"], name
            assert volume["defaultMode"] & 0o040, (name, volume["secretName"])
            assert not volume["defaultMode"] & 0o007, (name, volume["secretName"])


def test_workers_are_a_worker_deployment_version_named_by_their_image_tag() -> None:
    """Worker versioning (deploy/README, "Rolling out new workflow code"): the build id is
    the tag of the image the worker runs, in Kubernetes and in compose alike."""
    [(_, _, container)] = [c for c in _containers() if c[0] == "rop-worker"]
    k8s = {e["name"]: e["value"] for e in container["env"]}
    compose = _compose()["services"]["rop-worker"]
    for environment, image in (
        (k8s, container["image"]),
        (compose["environment"], compose["image"]),
    ):
        settings = RopSettings(
            worker_deployment_name=environment["ROP_WORKER_DEPLOYMENT_NAME"],
            worker_build_id=environment["ROP_WORKER_BUILD_ID"],
        )
        assert settings.worker_build_id == image.rsplit(":", 1)[1]
        assert settings.worker_deployment_name == "rop-forlop"


TEMPORAL_VALUES = REPO / "deploy" / "temporal" / "values.postgresql.yaml"
CHART_VALUES = REPO / "tests" / "data" / "temporal-chart-1.6.0-values.yaml"


def _key_paths(node: object, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every key path of a YAML mapping (lists' items are not entered)."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield (*prefix, str(key))
            yield from _key_paths(value, (*prefix, str(key)))


def _keys_the_chart_lacks(ours: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """The key paths of `ours` that Temporal's chart does not know. What the chart leaves
    `{}` (resources, annotations) takes any keys; a datastore's keys are documented in the
    chart's comments only."""
    chart_text = CHART_VALUES.read_text(encoding="utf-8")
    chart = yaml.safe_load(chart_text)
    known = set(_key_paths(chart))
    open_maps = {path for path in known if _at(chart, path) == {}}
    documented = set(re.findall(r"^\s*#\s+(\w+):", chart_text, re.MULTILINE))
    datastores = ("server", "config", "persistence", "datastores")
    return [
        path
        for path in _key_paths(ours)
        if path not in known
        and not any(path[:n] in open_maps for n in range(1, len(path)))
        and not (path[:4] == datastores and len(path) > 5 and path[-1] in documented)
    ]


def test_the_temporal_chart_values_use_only_keys_the_chart_knows() -> None:
    """Our values for Temporal's chart name no key the chart lacks: Helm would silently
    ignore a misspelt one."""
    ours = yaml.safe_load(TEMPORAL_VALUES.read_text(encoding="utf-8"))
    assert _keys_the_chart_lacks(ours) == []
    store = ours["server"]["config"]["persistence"]["datastores"]["default"]["sql"]
    store["databseName"] = store.pop("databaseName")
    ours["server"]["replicas"] = ours["server"].pop("replicaCount")
    assert set(_keys_the_chart_lacks(ours)) == {
        ("server", "replicas"),
        ("server", "config", "persistence", "datastores", "default", "sql", "databseName"),
    }


def test_temporal_keeps_its_data_in_postgresql_with_secrets_apart() -> None:
    values = yaml.safe_load(TEMPORAL_VALUES.read_text(encoding="utf-8"))
    persistence = values["server"]["config"]["persistence"]
    assert persistence["numHistoryShards"] == 512
    for name in (persistence["defaultStore"], persistence["visibilityStore"]):
        sql = persistence["datastores"][name]["sql"]
        assert sql["pluginName"] == "postgres12"
        assert "password" not in sql
        assert sql["existingSecret"]
        assert sql["tls"]["enabled"] is True
    [namespace] = values["server"]["config"]["namespaces"]["namespace"]
    assert namespace["name"] == _by_kind("ConfigMap")["rop-config"]["data"]["TEMPORAL_NAMESPACE"]
    ui = {e["name"]: e["value"] for e in values["web"]["additionalEnv"]}
    assert ui["TEMPORAL_CODEC_ENDPOINT"].startswith("https://")
    assert ui["TEMPORAL_CODEC_PASS_ACCESS_TOKEN"] == "true"


def _at(node: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        node = node[key]
    return node


@pytest.mark.parametrize("profile", ["cloud-api-key", "cloud-mtls"])
def test_the_temporal_cloud_profiles_connect_as_documented(
    profile: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from rop_runtime.client import connect_config

    monkeypatch.setenv(
        "TEMPORAL_CONFIG_FILE", str(REPO / "deploy" / "temporal" / "temporal-cloud.toml")
    )
    monkeypatch.setenv("TEMPORAL_PROFILE", profile)
    for name in ("ROP_TEMPORAL_ADDRESS", "ROP_TEMPORAL_NAMESPACE", "TEMPORAL_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    if profile == "cloud-api-key":
        monkeypatch.setenv("TEMPORAL_API_KEY", "key-from-a-secret")
    else:
        # The profile names where the Secret is mounted; here, files of our own there.
        mounted = _by_kind("Secret")["rop-temporal-client"]["stringData"]
        profile_tls = tomllib.loads(
            (REPO / "deploy" / "temporal" / "temporal-cloud.toml").read_text(encoding="utf-8")
        )["profile"][profile]["tls"]
        assert profile_tls["client_cert_path"] == mounted["TEMPORAL_TLS_CLIENT_CERT_PATH"]
        assert profile_tls["client_key_path"] == mounted["TEMPORAL_TLS_CLIENT_KEY_PATH"]
        for name, content in (("CERT", b"cert"), ("KEY", b"key")):
            (tmp_path / name).write_bytes(content)
            monkeypatch.setenv(f"TEMPORAL_TLS_CLIENT_{name}_PATH", str(tmp_path / name))
    config = connect_config(RopSettings())
    assert config["namespace"] == "rop-forlop.a1b2c"
    if profile == "cloud-api-key":
        assert config["target_host"].endswith(".api.temporal.io:7233")
        assert config["api_key"] == "key-from-a-secret"
    else:
        assert config["target_host"] == "rop-forlop.a1b2c.tmprl.cloud:7233"
        tls = config["tls"]
        assert not isinstance(tls, bool)
        assert tls.client_cert == b"cert"
        assert tls.client_private_key == b"key"
