"""Who is calling: bearer tokens, as configured static keys or as verified JWTs, and roles.

Roles:
- `system`: backend services (referral system, patient record, municipal systems); they
  submit referrals and drive pathways.
- `clinician`: people who carry out the steps and complete tasks.
- `operator`: people who watch the system; they list pathways, read indicators and the
  access log, but read no clinical content and change nothing.

Static keys are stored as SHA-256 digests only, so a leaked tokens file opens nothing.
JWTs must be signed with an asymmetric algorithm by the configured key or a key of the
configured JWKS, and carry the configured issuer and audience; their roles come from a
claim (`roles` by default) and their name from `sub`. With an actor claim configured (e.g.
`hpr`), a person's token also says who they are in the record, and the steps they send
must name them (a service's token, role `system`, acts for others and is not bound).

A person (role `clinician`, or a token with the actor claim) also carries their units
(`<health trust>/<TSB|PHV>`, claim `rop_units`) and may see only the pathways of those
units or those that name them: need of service (`need_of_service.py`). A static key for a
person names the person and their units; one that does not is accepted only in local mode.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import jwt
from pydantic import Field, StringConstraints, TypeAdapter

from rop_domain.models import IDENTIFIER_PATTERN, Identifier, StrictModel
from starter.access_log import Access, Grounds, Outcome

ASYMMETRIC_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "ES256", "ES384", "EdDSA"]
"""HS* is refused: a shared secret would let anyone who verifies tokens also mint them."""


class Role(StrEnum):
    SYSTEM = "system"
    CLINICIAN = "clinician"
    OPERATOR = "operator"
    PRIVACY_OFFICER = "privacy-officer"
    """Reads the access log as FHIR AuditEvents, by patient (personvernombud)."""
    PATIENT = "patient"
    """A patient signed in with HelseID: sees who accessed their own pathways (innsyn)."""


UNIT_PATTERN = IDENTIFIER_PATTERN.removesuffix("$") + "/(TSB|PHV)$"
"""A unit as tokens name it: `<health trust>/<receiving unit>`, e.g. `helse-bergen/TSB`."""

_UNIT = re.compile(UNIT_PATTERN)

Unit = Annotated[str, StringConstraints(pattern=UNIT_PATTERN)]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a name for the access log, and its roles."""

    name: str
    roles: frozenset[Role]
    actor: str | None = None
    """Whom a person's token says they are in the record (e.g. their HPR number): the steps
    they send must name them as the actor. None for services, which act for others."""
    source: str = "key"
    """Where the name comes from: `key` (a configured API key) or a JWT issuer."""
    units: frozenset[str] = frozenset()
    """A person's units (`helse-bergen/TSB`): the pathways they have a need of service for."""
    email: str | None = None
    """A person's e-mail address, as invitations to a meeting may name them."""
    unbound: bool = False
    """A person's static key that names no person (local mode only): not scoped, not bound."""
    grounds: Grounds | None = None
    """Set for one request once its pathway is known: why the caller may see it."""
    break_glass_reason: str | None = None
    """The reason the person stated for breaking the glass, when the grounds are that."""
    may_write: bool = True
    """False for a HelseID sign-in below the assurance level clinical writes need."""
    assurance: str | None = None
    """A HelseID sign-in's assurance level (`high`, `substantial`)."""
    organisation: str | None = None
    """The organisation number a HelseID sign-in acts for (`orgnr_child`, else parent)."""
    purpose: str | None = None
    """The purpose of use a HelseID sign-in's trust-framework grounds state."""
    decision_ref: str | None = None
    """The decision reference of those grounds (the care relationship's)."""
    patient_id: str | None = field(default=None, repr=False)
    """A patient's fødselsnummer, as HelseID says it (`pid`): only to find their pathways."""

    @property
    def is_person(self) -> bool:
        """A person is scoped to their need of service; a service acts for others."""
        return not self.unbound and (Role.CLINICIAN in self.roles or self.actor is not None)

    @property
    def identity(self) -> str:
        """The name with its source: a JWT's `sub` never meets an API key's name."""
        return f"key:{self.name}" if self.source == "key" else f"jwt:{self.name}@{self.source}"

    def access(
        self, workflow_id: str, action: str, outcome: Outcome, namespace: str | None = None
    ) -> Access:
        """This caller's access to one pathway, as the access log keeps it: who, by which
        roles, on which grounds, and for a person their HPR number, organisation and the
        trust framework's purpose."""
        return Access(
            principal=self.identity,
            roles=self.roles_text,
            workflow_id=workflow_id,
            action=action,
            outcome=outcome,
            grounds=self.grounds,
            reason=self.break_glass_reason,
            namespace=namespace,
            person=self.actor if self.is_person else None,
            organisation=self.organisation,
            purpose=self.purpose,
            decision_ref=self.decision_ref,
        )

    def may(self, allowed: frozenset[Role]) -> bool:
        return bool(self.roles & allowed)

    @property
    def roles_text(self) -> str:
        return ",".join(sorted(role.value for role in self.roles))


class AuthenticationFailed(Exception):
    """The token is missing, unknown, expired or not signed as configured."""


class StaticToken(StrictModel):
    """One configured API key: who holds it, their role, and the key's SHA-256 (hex).

    A key for a person (role clinician) names them as JWTs do: `person` (their HPR number,
    whom their steps must name) and `units`.
    """

    name: Identifier
    role: Role
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    person: Identifier | None = None
    units: list[Unit] = Field(default_factory=list, max_length=50)

    def principal(self) -> Principal:
        return Principal(
            name=self.name,
            roles=frozenset({self.role}),
            actor=self.person,
            units=frozenset(self.units),
            unbound=self.role is Role.CLINICIAN and self.person is None,
        )


STATIC_TOKENS = TypeAdapter(list[StaticToken])


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def read_tokens_file(path: Path) -> list[StaticToken]:
    """The API keys of a JSON file: `[{"name", "role", "token_sha256"}, ...]`."""
    return STATIC_TOKENS.validate_json(path.read_bytes())


HELSEID_HPR_NUMBER = "helseid://claims/hpr/hpr_number"
HELSEID_ORGNR_CHILD = "helseid://claims/client/claims/orgnr_child"
HELSEID_ORGNR_PARENT = "helseid://claims/client/claims/orgnr_parent"
HELSEID_ASSURANCE = "helseid://claims/identity/assurance_level"
HELSEID_PID = "helseid://claims/identity/pid"
TRUST_FRAMEWORK = "nhn:tillitsrammeverk:parameters"
HELSEID_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a JWT type, not a secret


@dataclass(frozen=True)
class HelseIdProfile:
    """Tokens are HelseID access tokens for people (`typ: at+jwt`), read as HelseID publishes
    its claims: the person by their HPR number, their units by the organisation the client
    acts for (`orgnr_child`, else `orgnr_parent`) through a configured table, and clinical
    writes only at assurance level `high` (where configured)."""

    units_by_organisation: dict[str, tuple[str, ...]]
    writes_need_high_assurance: bool = True


@dataclass(frozen=True)
class JwtSettings:
    """How JWTs are verified: one public key (PEM) or a JWKS URL, issuer and audience."""

    issuer: str
    audience: str
    public_key_pem: str | None = None
    jwks_url: str | None = None
    roles_claim: str = "roles"
    actor_claim: str | None = None
    units_claim: str = "rop_units"
    email_claim: str = "email"
    trust_email: bool = False
    """Whether a verified e-mail address (`email_verified: true`) may ground need of
    service: an address is only as good as the identity provider that checked it."""
    max_lifetime: timedelta = timedelta(hours=12)
    """A token may be valid for at most this long (exp - iat; exp - now without iat)."""
    helseid: HelseIdProfile | None = None
    """Read tokens as HelseID's (roles, actor and units claims then do not apply)."""


MAX_TOKEN_LENGTH = 8192
"""Longer bearer tokens are refused before any parsing (a JWT with roles is ~1 KB)."""


class JwtVerifier:
    """Verifies a JWT's signature, expiry, issuer and audience; reads its roles."""

    def __init__(self, settings: JwtSettings) -> None:
        if (settings.public_key_pem is None) == (settings.jwks_url is None):
            raise ValueError("give a JWT public key or a JWKS URL, not both or neither")
        self._settings = settings
        self._jwks = (
            jwt.PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=300)
            if settings.jwks_url
            else None
        )

    async def verify(self, token: str) -> Principal:
        settings = self._settings
        try:
            if settings.helseid is not None:
                kind = jwt.get_unverified_header(token).get("typ")
                if kind != HELSEID_TOKEN_TYPE:
                    raise ValueError(f"not a HelseID access token (typ {kind!r})")
            if self._jwks is not None:
                # PyJWKClient fetches with urllib; keep the event loop free meanwhile.
                signing_key: Any = (
                    await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
                ).key
            else:
                signing_key = settings.public_key_pem
            claims = jwt.decode(
                token,
                signing_key,
                algorithms=ASYMMETRIC_ALGORITHMS,
                audience=settings.audience,
                issuer=settings.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except (jwt.PyJWTError, ValueError) as error:
            raise AuthenticationFailed(f"invalid token: {error}") from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject.strip():
            raise AuthenticationFailed("invalid token: empty sub")
        issued = claims.get("iat", time.time())
        if not isinstance(issued, int | float) or (
            claims["exp"] - issued > settings.max_lifetime.total_seconds()
        ):
            raise AuthenticationFailed(
                f"invalid token: valid for longer than {settings.max_lifetime} (exp - iat)"
            )
        if settings.helseid is not None:
            return _helseid_person(claims, subject, settings.issuer, settings.helseid)
        names = claims.get(settings.roles_claim, [])
        if not isinstance(names, list):
            raise AuthenticationFailed(
                f"invalid token: the {settings.roles_claim} claim is not a list"
            )
        roles = frozenset(Role(n) for n in names if n in Role.__members__.values())
        actor = None
        # A person is bound to themselves, whatever other roles their token carries; a
        # service (no person role, no actor claim) acts for others.
        person = Role.CLINICIAN in roles or (
            settings.actor_claim is not None and settings.actor_claim in claims
        )
        if settings.actor_claim is not None and person:
            actor = claims.get(settings.actor_claim)
            if not isinstance(actor, str) or not actor:
                raise AuthenticationFailed(f"invalid token: no {settings.actor_claim} claim")
        units = claims.get(settings.units_claim, [])
        if not isinstance(units, list) or not all(
            isinstance(unit, str) and _UNIT.match(unit) for unit in units
        ):
            raise AuthenticationFailed(
                f"invalid token: {settings.units_claim} must be a list of "
                "'<health trust>/<TSB|PHV>'"
            )
        email = claims.get(settings.email_claim)
        if not (settings.trust_email and claims.get("email_verified") is True):
            email = None  # an address nobody verified names nobody (need of service)
        return Principal(
            name=subject,
            roles=roles,
            actor=actor,
            source=settings.issuer,
            units=frozenset(units),
            email=email if isinstance(email, str) and email else None,
        )


def _helseid_person(
    claims: dict[str, Any], subject: str, issuer: str, profile: HelseIdProfile
) -> Principal:
    """A person signed in with HelseID: a clinician bound to their HPR number, or a patient
    (no HPR number, their fødselsnummer as `pid`) who may see who accessed their pathways."""
    hpr = claims.get(HELSEID_HPR_NUMBER)
    pid = claims.get(HELSEID_PID)
    if hpr is None and isinstance(pid, str) and pid.isdigit() and len(pid) == 11:
        return Principal(
            name=subject, roles=frozenset({Role.PATIENT}), source=issuer, patient_id=pid
        )
    if not isinstance(hpr, str) or not hpr.isdigit():
        raise AuthenticationFailed(f"invalid token: no HPR number ({HELSEID_HPR_NUMBER})")
    organisation = claims.get(HELSEID_ORGNR_CHILD) or claims.get(HELSEID_ORGNR_PARENT)
    units = profile.units_by_organisation.get(str(organisation), ())
    assurance = claims.get(HELSEID_ASSURANCE)
    purpose, decision_ref = _trust_framework_grounds(claims.get("authorization_details"))
    return Principal(
        name=subject,
        roles=frozenset({Role.CLINICIAN}),
        actor=hpr,
        source=issuer,
        units=frozenset(units),
        assurance=assurance if isinstance(assurance, str) else None,
        organisation=str(organisation) if organisation else None,
        purpose=purpose,
        decision_ref=decision_ref,
        may_write=not profile.writes_need_high_assurance or assurance == "high",
    )


def _trust_framework_grounds(details: object) -> tuple[str | None, str | None]:
    """The purpose of use and decision reference of the token's trust-framework grounds
    (`authorization_details` of type `nhn:tillitsrammeverk:parameters`), where present."""
    if isinstance(details, dict):
        details = [details]
    if not isinstance(details, list):
        return None, None
    for detail in details:
        if isinstance(detail, dict) and detail.get("type") == TRUST_FRAMEWORK:
            relationship = detail.get("care_relationship") or {}
            purpose = (relationship.get("purpose_of_use") or {}).get("code")
            decision = (relationship.get("decision_ref") or {}).get("id")
            return (
                str(purpose)[:50] if purpose else None,
                str(decision)[:100] if decision else None,
            )
    return None, None


class Authenticator:
    """Turns a bearer token into a principal, by static key first, then as a JWT."""

    def __init__(
        self,
        tokens: Sequence[StaticToken],
        jwt_verifier: JwtVerifier | None,
        *,
        local_mode: bool = False,
    ) -> None:
        if not tokens and jwt_verifier is None:
            raise ValueError(
                "the API would let nobody in: set ROP_API_TOKENS_FILE or a JWT key/JWKS"
            )
        unnamed = [t.name for t in tokens if t.role is Role.CLINICIAN and t.person is None]
        if unnamed and not local_mode:
            raise ValueError(
                f"API keys for persons must name their person and units (person, units): "
                f"{', '.join(unnamed)} do not; such keys are for ROP_LOCAL_MODE only"
            )
        self._tokens = list(tokens)
        self._jwt = jwt_verifier
        self.local_mode = local_mode

    def local_people(self) -> list[StaticToken]:
        """In local mode, the people whose keys the tokens file names (the worklist's demo
        people); elsewhere none: nobody signs in by choosing a name."""
        if not self.local_mode:
            return []
        return [t for t in self._tokens if t.role is Role.CLINICIAN and t.person is not None]

    def local_person(self, name: str) -> Principal | None:
        """One of `local_people` by its key's name, as a principal."""
        for entry in self.local_people():
            if entry.name == name:
                return entry.principal()
        return None

    async def authenticate(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthenticationFailed(f"token longer than {MAX_TOKEN_LENGTH} characters")
        digest = token_digest(token)
        for entry in self._tokens:
            if hmac.compare_digest(entry.token_sha256, digest):
                return entry.principal()
        if self._jwt is not None and token.count(".") == 2:
            return await self._jwt.verify(token)
        raise AuthenticationFailed("unknown token")


@dataclass(frozen=True)
class KeyHolder:
    """Who an API key is for: a name and role; for a person also their HPR number and units."""

    name: str
    role: Role
    person: str | None = None
    units: tuple[str, ...] = ()


def write_tokens_file(path: Path, tokens: dict[str, KeyHolder]) -> None:
    """Write the digests of `{token: holder}` as a tokens file (local stack, tests)."""
    entries = [
        StaticToken(
            name=holder.name,
            role=holder.role,
            token_sha256=token_digest(token),
            person=holder.person,
            units=list(holder.units),
        ).model_dump(mode="json", exclude_defaults=True)
        for token, holder in tokens.items()
    ]
    path.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
