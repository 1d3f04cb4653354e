"""Configuration from the environment, read once at the edge."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Self

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rop_domain import deadlines
from rop_domain.calendar import WorkingDayRule
from rop_domain.deadlines import ObjectionMode, PathwaySettings
from rop_domain.models import ValidationPolicy


class RopSettings(BaseSettings):
    """Settings for the worker, the CLI and the local stack (environment variables `ROP_*`)."""

    model_config = SettingsConfigDict(env_prefix="ROP_", extra="ignore")

    temporal_address: str | None = Field(
        default=None,
        description="host:port; else Temporal's own configuration (TEMPORAL_ADDRESS, a "
        "profile), else localhost:7233",
    )
    temporal_namespace: str | None = Field(
        default=None, description="else TEMPORAL_NAMESPACE or the profile's, else default"
    )
    temporal_tls_ca: Path | None = Field(default=None, description="server CA (PEM)")
    temporal_tls_cert: Path | None = Field(default=None, description="mTLS client cert (PEM)")
    temporal_tls_key: Path | None = Field(default=None, description="mTLS client key (PEM)")
    temporal_api_key: SecretStr | None = Field(default=None, description="e.g. Temporal Cloud")
    accept_plain_payloads: bool = Field(
        default=False,
        description=(
            "let payloads not encrypted with a known key through (only while data from "
            "before encryption is moved; anyone who reaches Temporal could then drive pathways)"
        ),
    )
    task_queue: str = "rop-forlop"
    worker_workflow_task_slots: int = Field(
        default=20, ge=1, le=1000, description="workflow tasks one worker runs at once"
    )
    worker_local_activity_slots: int = Field(
        default=20, ge=1, le=1000, description="record-service calls one worker runs at once"
    )
    worker_cached_workflows: int = Field(
        default=0, ge=0, description="pathways kept in the worker's memory; 0: sized to memory"
    )
    worker_sandbox: bool = Field(
        default=False,
        description="run workflow code in Temporal's sandbox (slower; tests check it either way)",
    )
    worker_deployment_name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,100}$",
        description="Temporal worker deployment this worker belongs to (with ROP_WORKER_BUILD_ID: "
        "worker versioning, pathways pinned to the version they start on)",
    )
    worker_build_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,99}$",
        description="this worker's code version within ROP_WORKER_DEPLOYMENT_NAME, e.g. the "
        "image tag",
    )
    worker_metrics_address: str | None = Field(
        default=None,
        pattern=r"^[^\s:]+:\d{1,5}$",
        description="host:port where the worker serves Prometheus metrics; unset: none",
    )
    worker_ready_file: Path | None = Field(
        default=None,
        description="written while the worker polls, removed when it stops (readiness probes)",
    )
    metrics_refresh_seconds: float = Field(
        default=30, gt=0, le=3600, description="how often the pathway gauges are counted"
    )
    workflow_task_timeout_seconds: int = Field(
        default=10, ge=1, le=60, description="a new pathway's workflow-task timeout"
    )
    migrate_on_start: bool = Field(
        default=False,
        description="the worker and the API migrate first (a login that owns the schema)",
    )
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("ROP_DATABASE_URL", "DATABASE_URL")
    )
    data_dir: Path = Path(".rop")
    meeting_working_days: int = Field(default=deadlines.MEETING_WORKING_DAYS, ge=1, le=60)
    assessment_working_days: int = Field(default=deadlines.ASSESSMENT_WORKING_DAYS, ge=1, le=60)
    count_saturdays: bool = False
    allow_synthetic_ids: bool = False
    crisis_plan_working_days: int = Field(default=deadlines.CRISIS_PLAN_WORKING_DAYS, ge=1, le=60)
    review_escalation_working_days: int = Field(
        default=deadlines.REVIEW_ESCALATION_WORKING_DAYS, ge=1, le=30
    )
    objection_mode: ObjectionMode = ObjectionMode.REDACT
    trust_policies: dict[str, dict[str, int | bool | str]] = Field(
        default_factory=dict,
        description="Per health trust, the pathway rules that differ from the settings above "
        '(JSON: {"helse-fonna": {"meeting_working_days": 7}}); keys are PathwaySettings fields',
    )
    log_format: str | None = Field(default=None, pattern="^(json|console)$")
    routing_file: Path | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_sender: str = "rop-forlop@localhost"
    smtp_tls: bool = False
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    nhn_meldingstjener_url: str | None = Field(
        default=None,
        description="Norsk helsenett's Meldingstjener (REST API v2): with it, tasks for HER "
        "addresses go as Dialogmelding",
    )
    nhn_sender_her_address: str | None = Field(
        default=None,
        pattern=r"^\d{1,9}(/\d{1,9})?$",
        description="Our HER address: <organisation HER-id>[/<service HER-id>]",
    )
    nhn_sender_name: str = "rop-forlop"
    nhn_source_system: str = "rop-forlop 0.1"
    helseid_token_endpoint: str | None = None
    helseid_client_id: str | None = None
    helseid_key_file: Path | None = Field(
        default=None, description="The HelseID client's private RSA key (PEM)"
    )
    helseid_scope: str = "nhn:msh/api"
    task_link_base: str | None = None
    payload_keys: SecretStr | None = Field(
        default=None, description="id:base64key,... (AES-256); the first is current unless set"
    )
    payload_key_id: str | None = None
    payload_keys_file: Path | None = None
    codec_server_token: SecretStr | None = None
    codec_server_port: int = 8234
    ui_origin: str = "http://localhost:8233"
    answer_timeout_seconds: float = Field(
        default=20, gt=0, le=300, description="How long to wait for a pathway's answer"
    )
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_idempotency_hours: float = Field(
        default=72, gt=0, description="How long the API keeps the first answer to a key"
    )
    api_tokens_file: Path | None = Field(
        default=None, description='API keys: [{"name", "role", "token_sha256"}, ...] (JSON)'
    )
    api_jwt_public_key_file: Path | None = Field(default=None, description="PEM public key")
    api_jwt_jwks_url: str | None = None
    api_jwt_issuer: str | None = None
    api_jwt_audience: str | None = None
    api_jwt_roles_claim: str = "roles"
    api_jwt_max_lifetime_minutes: int = Field(
        default=720, ge=1, le=7 * 24 * 60, description="longest a JWT may be valid (exp - iat)"
    )
    api_jwt_actor_claim: str | None = Field(
        default=None, description="e.g. hpr: a person's steps must name them as the actor"
    )
    api_jwt_units_claim: str = Field(
        default="rop_units", description="a person's units: ['helse-bergen/TSB', ...]"
    )
    api_max_body_bytes: int = Field(
        default=1_000_000, ge=1024, description="larger request bodies get 413 before parsing"
    )
    api_auth_failures_per_minute: int = Field(
        default=30, ge=1, description="refused tokens per source address a minute before 429"
    )
    indicator_small_cell: int = Field(
        default=5,
        ge=1,
        description="counts from 1 below this in the indicators' breakdowns read `<5` (1: none)",
    )
    break_glass_per_hour: int = Field(
        default=10, ge=1, description="break-glass accesses one person may make in an hour"
    )
    api_helseid: bool = Field(
        default=False,
        description="JWTs are HelseID access tokens for people (typ at+jwt; HPR number, "
        "organisation and assurance level from HelseID's claims)",
    )
    api_helseid_organisation_units: dict[str, list[str]] = Field(
        default_factory=dict,
        description='Organisation number -> units (JSON: {"974557746": ["helse-bergen/TSB"]})',
    )
    api_helseid_writes_need_high_assurance: bool = True
    worklist_oidc_client_id: str | None = Field(
        default=None,
        description="The worklist page's client id at the OIDC provider of ROP_API_JWT_ISSUER "
        "(authorization code with PKCE); without it, only local mode's demo people sign in",
    )
    worklist_oidc_client_secret: SecretStr | None = Field(
        default=None, description="Only for a confidential client"
    )
    worklist_oidc_scope: str = "openid"
    fhir_base_url: str = Field(
        default="http://127.0.0.1:8000/fhir",
        description="The API's FHIR base as others reach it: subscription notifications name "
        "Tasks and Subscriptions by it",
    )
    subscription_wait_seconds: int = Field(
        default=30,
        ge=1,
        le=90,
        description="How long one delivery round waits for a subscription's next events",
    )
    api_jwt_email_claim: str = "email"
    api_jwt_trust_email: bool = Field(
        default=False,
        description="let a token's e-mail address ground need of service (only with "
        "email_verified: true): for invitations that name a person by address",
    )
    local_mode: bool = Field(
        default=False,
        description="the local stack (make run): API keys for persons may name nobody, "
        "the codec server may use a static token, synthetic national ids are accepted",
    )

    @model_validator(mode="after")
    def _find_the_running_stack(self) -> Self:
        """Outside the project folder, `rop` finds the local stack that runs (`make run`
        names its folder in `running_stack_file()`), unless ROP_DATA_DIR says otherwise."""
        if "data_dir" in self.model_fields_set or self.data_dir.exists():
            return self
        pointer = running_stack_file()
        if pointer.is_file():
            named = Path(pointer.read_text(encoding="utf-8").strip())
            if named.is_dir():
                self.data_dir = named
        return self

    @model_validator(mode="after")
    def _trust_policies_name_rules(self) -> Self:
        """A trust's policy names PathwaySettings fields with valid values, or is refused here,
        at the edge, naming the trust and the field."""
        for trust, overrides in self.trust_policies.items():
            unknown = sorted(set(overrides) - set(PathwaySettings.model_fields))
            if unknown:
                raise ValueError(
                    f"ROP_TRUST_POLICIES: {trust}: no such pathway rule: {', '.join(unknown)}"
                )
            try:
                self.pathway_settings(trust)
            except ValidationError as error:
                found = "; ".join(
                    f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}"
                    for e in error.errors()
                )
                raise ValueError(f"ROP_TRUST_POLICIES: {trust}: {found}") from None
        return self

    @model_validator(mode="after")
    def _pairs_are_whole(self) -> Self:
        if (self.worker_deployment_name is None) != (self.worker_build_id is None):
            raise ValueError(
                "set ROP_WORKER_DEPLOYMENT_NAME and ROP_WORKER_BUILD_ID together "
                "(a worker deployment version is both)"
            )
        if (self.temporal_tls_cert is None) != (self.temporal_tls_key is None):
            raise ValueError(
                "set ROP_TEMPORAL_TLS_CERT and ROP_TEMPORAL_TLS_KEY together (mTLS needs both)"
            )
        for name in (
            "temporal_tls_ca",
            "temporal_tls_cert",
            "temporal_tls_key",
            "api_tokens_file",
            "api_jwt_public_key_file",
        ):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"ROP_{name.upper()}: no file at {path}")
        return self

    def pathway_settings(self, health_trust: str | None = None) -> PathwaySettings:
        """The rules a new pathway is started with: these settings, and the health trust's
        own where `trust_policies` gives it some."""
        base = self._base_pathway_settings()
        overrides = self.trust_policies.get(health_trust or "", {})
        return PathwaySettings.model_validate(base.model_dump() | overrides) if overrides else base

    def trust_pathway_settings(self) -> dict[str, PathwaySettings]:
        """Each health trust's own rules, where `trust_policies` gives it some."""
        return {trust: self.pathway_settings(trust) for trust in self.trust_policies}

    def _base_pathway_settings(self) -> PathwaySettings:
        rule = (
            WorkingDayRule.MONDAY_TO_SATURDAY
            if self.count_saturdays
            else WorkingDayRule.MONDAY_TO_FRIDAY
        )
        return PathwaySettings(
            meeting_working_days=self.meeting_working_days,
            assessment_working_days=self.assessment_working_days,
            working_day_rule=rule,
            crisis_plan_working_days=self.crisis_plan_working_days,
            review_escalation_working_days=self.review_escalation_working_days,
            objection_mode=self.objection_mode,
        )

    def validation_policy(self) -> ValidationPolicy:
        """What the edge accepts: synthetic national ids where allowed, and always in the local
        stack (its demo and README's examples use them; no real patient is there)."""
        return ValidationPolicy(allow_synthetic_ids=self.allow_synthetic_ids or self.local_mode)


def running_stack_file() -> Path:
    """Where the local stack names its folder while it runs, for `rop` run from elsewhere:
    in the user's state directory (`XDG_STATE_HOME`, or ~/.local/state)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "rop-forlop" / "running-stack"
