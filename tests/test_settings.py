"""Settings from the environment become the rules a new pathway starts with."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from pydantic import AliasChoices, ValidationError
from temporalio.common import WorkerDeploymentVersion

from rop_domain.calendar import WorkingDayRule
from rop_domain.deadlines import ObjectionMode
from rop_domain.routing import Channel
from rop_runtime.settings import RopSettings


def test_environment_sets_the_pathway_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROP_MEETING_WORKING_DAYS", "7")
    monkeypatch.setenv("ROP_COUNT_SATURDAYS", "true")
    monkeypatch.setenv("ROP_CRISIS_PLAN_WORKING_DAYS", "15")
    monkeypatch.setenv("ROP_OBJECTION_MODE", "suppress")
    monkeypatch.setenv("DATABASE_URL", "postgresql://example.invalid/rop")
    settings = RopSettings()
    rules = settings.pathway_settings()
    assert rules.meeting_working_days == 7
    assert rules.working_day_rule is WorkingDayRule.MONDAY_TO_SATURDAY
    assert rules.crisis_plan_working_days == 15
    assert rules.objection_mode is ObjectionMode.SUPPRESS
    assert settings.database_url == "postgresql://example.invalid/rop"


def test_a_malformed_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROP_MEETING_WORKING_DAYS", "ten")
    with pytest.raises(ValidationError, match="meeting_working_days"):
        RopSettings()


async def test_delivery_channels_follow_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from rop_runtime.delivery_setup import build_delivery

    async with httpx.AsyncClient() as http:
        bare = build_delivery(RopSettings(), pool=None, http=http)  # type: ignore[arg-type]
        assert bare.routing.route_for("lege@example.invalid").channel is Channel.TASK_LIST

        monkeypatch.setenv("ROP_SMTP_HOST", "smtp.example.invalid")
        with_smtp = build_delivery(RopSettings(), pool=None, http=http)  # type: ignore[arg-type]
        assert with_smtp.routing.route_for("lege@example.invalid").channel is Channel.EMAIL

        routes = tmp_path / "routing.json"
        routes.write_text(
            '{"routes": [{"recipient": "nav-bergen", "channel": "webhook",'
            ' "address": "https://nav.example/rop", "standard": "nn"}]}'
        )
        monkeypatch.setenv("ROP_ROUTING_FILE", str(routes))
        routed = build_delivery(RopSettings(), pool=None, http=http)  # type: ignore[arg-type]
        route = routed.routing.route_for("nav-bergen")
        assert (route.channel, route.standard.value) == (Channel.WEBHOOK, "nn")


def test_temporal_tls_settings_are_checked_and_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from rop_runtime.client import tls_config

    cert, key, ca = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    for path in (cert, key, ca):
        path.write_bytes(b"-----BEGIN TEST-----\n")
    monkeypatch.setenv("ROP_TEMPORAL_TLS_CERT", str(cert))
    with pytest.raises(ValidationError, match="TLS_CERT and ROP_TEMPORAL_TLS_KEY together"):
        RopSettings()
    monkeypatch.setenv("ROP_TEMPORAL_TLS_KEY", str(tmp_path / "missing.pem"))
    with pytest.raises(ValidationError, match="ROP_TEMPORAL_TLS_KEY: no file"):
        RopSettings()
    monkeypatch.setenv("ROP_TEMPORAL_TLS_KEY", str(key))
    monkeypatch.setenv("ROP_TEMPORAL_TLS_CA", str(ca))
    tls = tls_config(RopSettings())
    assert not isinstance(tls, bool)
    assert tls.client_cert == cert.read_bytes()
    assert tls.server_root_ca_cert == ca.read_bytes()


def test_an_api_key_means_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    from rop_runtime.client import tls_config

    assert tls_config(RopSettings()) is False
    monkeypatch.setenv("ROP_TEMPORAL_API_KEY", "secret-key")
    assert tls_config(RopSettings()) is True


def _env_names(field: str) -> set[str]:
    alias = RopSettings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return {str(choice) for choice in alias.choices}
    return {f"ROP_{field.upper()}"}


def test_the_readme_lists_every_setting_and_no_other() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Settings (environment)", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`((?:ROP|TEMPORAL)_[A-Z0-9_]+|DATABASE_URL)`", table))
    settings = {name for field in RopSettings.model_fields for name in _env_names(field)}
    undocumented = {
        field for field in RopSettings.model_fields if not _env_names(field) & documented
    }
    assert undocumented == set(), "settings missing from the README's table"
    assert documented - settings == set(), "the README's table names settings that do not exist"


def test_temporals_own_client_configuration_is_read_and_ours_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from rop_runtime.client import TemporalConfigError, connect_config

    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    config_file = tmp_path / "temporal.toml"
    config_file.write_text(
        '[profile.default]\naddress = "from-file.example:7233"\nnamespace = "file-ns"\n'
        '[profile.cloud]\naddress = "rop.a1b2c.tmprl.cloud:7233"\nnamespace = "rop.a1b2c"\n'
        'api_key = "cloud-key"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config_file))
    assert connect_config(RopSettings()) == {
        "target_host": "from-file.example:7233",
        "namespace": "file-ns",
    }
    monkeypatch.setenv("TEMPORAL_PROFILE", "cloud")
    cloud = connect_config(RopSettings())
    assert (cloud["target_host"], cloud["api_key"], cloud["tls"]) == (
        "rop.a1b2c.tmprl.cloud:7233",
        "cloud-key",
        True,
    )
    # The standard variables over the file, as the temporal CLI reads them...
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "env-ns")
    assert connect_config(RopSettings())["namespace"] == "env-ns"
    # ...and the project's own settings over both.
    monkeypatch.setenv("ROP_TEMPORAL_ADDRESS", "ours.example:7233")
    monkeypatch.setenv("ROP_TEMPORAL_NAMESPACE", "rop")
    ours = connect_config(RopSettings())
    assert (ours["target_host"], ours["namespace"]) == ("ours.example:7233", "rop")

    monkeypatch.setenv("TEMPORAL_PROFILE", "missing")
    with pytest.raises(TemporalConfigError, match="Profile 'missing' not found"):
        connect_config(RopSettings())


def test_without_any_configuration_the_local_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from rop_runtime.client import connect_config

    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "none.toml"))
    assert connect_config(RopSettings()) == {
        "target_host": "localhost:7233",
        "namespace": "default",
    }


def test_a_worker_deployment_version_is_a_name_and_a_build_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker import deployment_version

    assert deployment_version(RopSettings()) is None
    monkeypatch.setenv("ROP_WORKER_DEPLOYMENT_NAME", "rop-forlop")
    with pytest.raises(ValidationError, match="ROP_WORKER_BUILD_ID together"):
        RopSettings()
    monkeypatch.setenv("ROP_WORKER_BUILD_ID", "1.4.0")
    assert deployment_version(RopSettings()) == WorkerDeploymentVersion("rop-forlop", "1.4.0")
    monkeypatch.setenv("ROP_WORKER_BUILD_ID", "1.4.0; rm -rf")
    with pytest.raises(ValidationError, match="worker_build_id"):
        RopSettings()


def test_the_worker_refuses_invalid_settings_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker import main as worker_main

    monkeypatch.setenv("ROP_WORKER_DEPLOYMENT_NAME", "rop-forlop")
    with pytest.raises(SystemExit) as stopped:
        worker_main()
    message = str(stopped.value)
    assert message.startswith("error: invalid settings: ")
    assert "ROP_WORKER_BUILD_ID together" in message
    assert "\n" not in message


def test_rop_finds_the_running_local_stack_from_another_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starter.stack import name_the_running_stack

    stack = tmp_path / "project" / ".rop"
    stack.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("ROP_DATA_DIR", raising=False)
    monkeypatch.chdir(elsewhere)
    assert RopSettings().data_dir == Path(".rop")  # no stack runs
    pointer = name_the_running_stack(stack)
    assert RopSettings().data_dir == stack.resolve()
    monkeypatch.setenv("ROP_DATA_DIR", str(elsewhere))  # a folder named by the setting wins
    assert RopSettings().data_dir == elsewhere
    monkeypatch.delenv("ROP_DATA_DIR")
    pointer.unlink()  # the stack stopped: `rop` says where it looked
    from starter.cli_support import UsageError, require_database

    with pytest.raises(UsageError, match=r"names its folder in .*running-stack \(not there"):
        require_database(RopSettings(database_url=None))


def test_the_local_stack_accepts_synthetic_national_ids() -> None:
    assert not RopSettings(allow_synthetic_ids=False).validation_policy().allow_synthetic_ids
    local = RopSettings(allow_synthetic_ids=False, local_mode=True)
    assert local.validation_policy().allow_synthetic_ids


def test_a_health_trust_can_have_its_own_pathway_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROP_TRUST_POLICIES", '{"helse-fonna": {"meeting_working_days": 7}}')
    settings = RopSettings()
    assert settings.pathway_settings("helse-fonna").meeting_working_days == 7
    assert settings.pathway_settings("helse-bergen").meeting_working_days == 10
    assert settings.pathway_settings().meeting_working_days == 10
    assert set(settings.trust_pathway_settings()) == {"helse-fonna"}


@pytest.mark.parametrize(
    ("policies", "message"),
    [
        ('{"helse-fonna": {"meeting_days": 7}}', "helse-fonna: no such pathway rule: meeting_days"),
        ('{"helse-fonna": {"meeting_working_days": 0}}', "helse-fonna: .*greater than or equal"),
    ],
)
def test_a_trust_policy_with_a_wrong_rule_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, policies: str, message: str
) -> None:
    monkeypatch.setenv("ROP_TRUST_POLICIES", policies)
    with pytest.raises(ValidationError, match=message):
        RopSettings()
