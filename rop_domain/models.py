"""The pathway's data: what comes in at the edge, what the workflow keeps, what it reports.

Models are validated at the edge (CLI, starter API) with a `ValidationPolicy` in the
pydantic validation context. Inside the worker, payloads are re-validated by the
pydantic data converter without that context: there only the pure checks run
(formats, check digits), never checks that depend on today's date or settings.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rop_domain.calendar import FIRST_YEAR, LAST_YEAR
from rop_domain.identifiers import InvalidNationalId, classify_national_id, has_valid_check_digits

IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
WORKFLOW_ID_PATTERN = r"^rop-" + IDENTIFIER_PATTERN.removeprefix("^")
"""A pathway's workflow id: `pathway_workflow_id` of a referral id."""

_UNKEEPABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
"""C0 control characters but tab, newline and carriage return; unpaired UTF-16 surrogates."""


def keepable(value: object) -> object:
    """Refuse text the record cannot keep, before anything is started or written.

    PostgreSQL's `text` and `jsonb` refuse NUL, and an unpaired surrogate is no UTF-8 at
    all: accepted by the workflow, such a step could never be recorded. Other control
    characters are refused with them: no person types them, and they garble logs and
    messages. The error names the character and where it is, never the text around it.
    """
    if isinstance(value, str) and (found := _UNKEEPABLE.search(value)):
        character = f"U+{ord(found.group()):04X}"
        raise ValueError(
            f"contains {character} at position {found.start()}: control characters (other "
            "than tab, newline and carriage return) and unpaired surrogates are not accepted"
        )
    return value


Keepable = BeforeValidator(keepable)
"""Part of every text type below: what a sender writes must be storable as it is."""

Identifier = Annotated[
    str, StringConstraints(pattern=IDENTIFIER_PATTERN, strip_whitespace=True), Keepable
]
"""An id from another system (referral id, HPR number, unit id): no spaces, at most 64 chars."""

Kommunenummer = Annotated[str, StringConstraints(pattern=r"^\d{4}$"), Keepable]
ShortText = Annotated[
    str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True), Keepable
]
"""Free text a person writes (a reason, a note, a location): at most 2,000 characters."""

MAX_LIST = 100
"""The most items any list in a step may hold (participants, attendees, measures...)."""


_CLOCK_SKEW = timedelta(minutes=5)
"""How far ahead of our clock a sender's clock may run."""


def _iso_date(value: object) -> object:
    """A date, or its ISO text (YYYY-MM-DD) only: no timestamps, no other orders."""
    if isinstance(value, str):
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError("write a date as YYYY-MM-DD")
        return date.fromisoformat(value)
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date)]
"""A calendar date given as YYYY-MM-DD."""


class StrictModel(BaseModel):
    """Immutable and closed: an unknown field is a mistake the sender should hear about."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ValidationPolicy(BaseModel):
    """What the edge allows; passed as pydantic validation context."""

    allow_synthetic_ids: bool = False
    now: AwareDatetime | None = Field(
        default=None, description="The edge's clock (tests on a time-skipping server); default: now"
    )


class ReferralSource(StrEnum):
    """Who sent the referral (henvisning)."""

    FASTLEGE = "fastlege"
    NAV = "nav"
    SPESIALISTHELSETJENESTEN = "spesialisthelsetjenesten"
    KOMMUNE = "kommune"


class ReceivingUnit(StrEnum):
    """The specialist service that received the referral."""

    TSB = "TSB"
    PHV = "PHV"


class PathwayReason(StrEnum):
    """Why the patient needs a ROP pathway: the local pathway's start condition."""

    COOPERATION_NOT_WORKING = "cooperation-not-working"
    """The services' cooperation around the patient is not working (ikke tilfredsstillende
    samhandling): the condition the local ROP-forløp names."""
    NEEDS_SEVERAL_SERVICES = "needs-several-services"
    """Needs from mental health care, substance-use treatment and the municipality at once."""
    OTHER = "other"


class Residence(StrEnum):
    """Where the patient lives or stays when referred."""

    HOME = "home"
    SUPPORTED_HOUSING = "supported-housing"
    INSTITUTION = "institution"
    PRISON = "prison"
    NO_FIXED_ABODE = "no-fixed-abode"


class Patient(StrictModel):
    """The patient: a pseudonymous reference, and optionally a national identity number.

    The reference is what logs, ids and tasks may show; the national id never leaves
    the record service and encrypted payloads.
    """

    reference: Identifier
    national_id: Annotated[str, StringConstraints(max_length=20), Keepable] | None = Field(
        default=None, description="fødselsnummer or D-nummer, 11 digits", repr=False
    )
    name: ShortText | None = Field(
        default=None, description="The patient's name: only in the encrypted referral", repr=False
    )

    @field_validator("national_id")
    @classmethod
    def _check_national_id(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        value = value.replace(" ", "")
        policy = info.context.get("policy") if isinstance(info.context, dict) else None
        if isinstance(policy, ValidationPolicy):
            try:
                classify_national_id(value, allow_synthetic=policy.allow_synthetic_ids)
            except InvalidNationalId as error:
                raise ValueError(str(error)) from None
        elif not has_valid_check_digits(value):
            raise ValueError("check digits do not match (not a valid fødselsnummer)")
        return value


class Referral(StrictModel):
    """A referral (henvisning) to the ROP pathway, as the sending system describes it."""

    referral_id: Identifier = Field(
        description="The sending system's id; the workflow id is rop-<referral_id>"
    )
    received_at: AwareDatetime
    source: ReferralSource
    referrer: Identifier = Field(description="Who referred: HPR number, NAV office or unit id")
    receiving_unit: ReceivingUnit
    health_trust: Identifier = Field(description="Health trust (helseforetak), e.g. helse-bergen")
    municipality: Kommunenummer = Field(
        description="The patient's municipality, 4-digit kommunenummer"
    )
    responsible_clinician: Identifier = Field(
        description="Clinician who received it, e.g. HPR number"
    )
    general_practitioner: Identifier | None = Field(
        default=None, description="The patient's fastlege (HPR number), for the meeting"
    )
    patient: Patient
    pathway_reason: PathwayReason | None = Field(
        default=None, description="Why a ROP pathway (e.g. cooperation not working)"
    )
    birth_year: int | None = Field(
        default=None, ge=1900, le=2100, description="For the indicators' age groups"
    )
    residence: Residence | None = Field(
        default=None, description="Home, supported housing, an institution, prison..."
    )

    @field_validator("received_at")
    @classmethod
    def _received_in_calendar(cls, value: datetime, info: ValidationInfo) -> datetime:
        # Deadlines are counted in the holiday calendar; leave a year for the last ones.
        if not FIRST_YEAR <= value.year < LAST_YEAR:
            raise ValueError(f"must lie in {FIRST_YEAR}-{LAST_YEAR - 1} (the working-day calendar)")
        policy = info.context.get("policy") if isinstance(info.context, dict) else None
        # Only at the edge, which passes a policy; the workflow never does, nor reads a clock.
        if isinstance(policy, ValidationPolicy):
            now = policy.now or datetime.now(UTC)  # noqa: TID251 - the edge's clock
            if value > now + _CLOCK_SKEW:
                raise ValueError("lies in the future")
        return value

    @field_validator("referral_id")
    @classmethod
    def _not_a_personal_id(cls, value: str) -> str:
        # The referral id becomes the workflow id, which Temporal never encrypts.
        if has_valid_check_digits(value):
            raise ValueError("looks like a fødselsnummer; use the sending system's referral id")
        return value

    @property
    def workflow_id(self) -> str:
        return pathway_workflow_id(self.referral_id)


def pathway_workflow_id(referral_id: str) -> str:
    """The workflow id of a referral's pathway: never a personal identifier."""
    return f"rop-{referral_id}"


def parse_referral(data: str | bytes | dict[str, Any], policy: ValidationPolicy) -> Referral:
    """Validate a referral at the edge, with the full identifier checks `policy` allows."""
    context = {"policy": policy}
    if isinstance(data, dict):
        return Referral.model_validate(data, context=context)
    return Referral.model_validate_json(data, context=context)


class WrittenStandard(StrEnum):
    """The two written standards of Norwegian, for texts people read."""

    BOKMAL = "nb"
    NYNORSK = "nn"


class Phase(StrEnum):
    """Where the pathway stands; also the `RopPhase` search attribute."""

    AWAITING_ASSESSMENT = "awaiting-assessment"
    AWAITING_INVITE = "awaiting-invite"
    MEETING_INVITED = "meeting-invited"
    FOLLOW_UP = "follow-up"
    CLOSED = "closed"
    NOT_IN_TARGET_GROUP = "not-in-target-group"


FINAL_PHASES = frozenset({Phase.CLOSED, Phase.NOT_IN_TARGET_GROUP})


class AssessmentDecision(StrEnum):
    """Whether the patient belongs in the ROP pathway."""

    IN_TARGET_GROUP = "in-target-group"
    NOT_IN_TARGET_GROUP = "not-in-target-group"


class Assessment(StrictModel):
    """The specialist service's assessment of the referral (Update `assess`)."""

    assessor: Identifier
    decision: AssessmentDecision
    reason: ShortText


class ParticipantRole(StrEnum):
    """Which party a meeting participant represents."""

    PHV = "phv"
    TSB = "tsb"
    FASTLEGE = "fastlege"
    KOMMUNE = "kommune"
    NAV = "nav"
    PATIENT = "patient"
    RELATIVE = "parorende"
    """Pårørende: the patient's relatives or others close to them."""
    OTHER = "other"


NO_ADDRESS = "no address in the contact directory: reach the party otherwise"
"""The address of a recommended party the contact directory lacks."""


class Participant(StrictModel):
    """A party invited to the clarification meeting, by role: the services' contact points,
    and the patient and relatives where they take part."""

    role: ParticipantRole
    name: ShortText
    address: ShortText = Field(description="Where the invitation goes (e-mail or unit address)")
    organisation: ShortText | None = Field(
        default=None, description="The unit or organisation the party comes from"
    )
    person: Identifier | None = Field(
        default=None, description="The person who comes, where known (e.g. HPR number)"
    )
    reached_by: ShortText | None = Field(
        default=None,
        description="How the party was reached where no invitation can be sent to an address "
        "(e.g. `telefon`): recorded with the invite; no invitation task is sent",
    )


class MeetingInvite(StrictModel):
    """The invitation to the first clarification meeting (Update `invite_to_meeting`)."""

    invited_by: Identifier
    meeting_at: AwareDatetime
    location: ShortText | None = None
    video_link: HttpUrl | None = None
    participants: list[Participant] = Field(min_length=1, max_length=MAX_LIST)
    far_ahead_reason: ShortText | None = Field(
        default=None, description="Why the meeting lies more than 180 days ahead (then required)"
    )
    absent_reasons: dict[ParticipantRole, ShortText] = Field(
        default_factory=dict,
        max_length=MAX_LIST,
        description="For each recommended party (the pathway's recommended_participants) not "
        "invited: why not",
    )
    consented_after_objection: list[ParticipantRole] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        description="After the patient objected to sharing (helsepersonelloven § 25): the "
        "invited parties outside the receiving unit the patient consents to be invited; the "
        "others get no invitation, and the inviter a task to reach them otherwise",
    )

    @model_validator(mode="after")
    def _somewhere_to_meet(self) -> Self:
        if self.location is None and self.video_link is None:
            raise ValueError("give a location or a video_link for the meeting")
        return self


class MeetingMove(StrictModel):
    """The clarification meeting moved to another time (Update `move_meeting`)."""

    moved_by: Identifier
    meeting_at: AwareDatetime
    reason: ShortText = Field(description="Why the meeting moved, as the parties will be told")
    location: ShortText | None = Field(default=None, description="Unchanged if not given")
    video_link: HttpUrl | None = None
    participants: list[Participant] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_LIST,
        description="The parties invited now; unchanged if not given",
    )
    far_ahead_reason: ShortText | None = Field(
        default=None, description="Why the meeting lies more than 180 days ahead (then required)"
    )


class RecordedAssessment(StrictModel):
    """An assessment as the workflow accepted it."""

    assessment: Assessment
    assessed_at: datetime


class RecordedInvite(StrictModel):
    """An invitation as the workflow sent it, and whether it was on time."""

    invite: MeetingInvite
    sent_at: datetime
    on_time: bool
    working_days_used: int


class DueItem(StrictModel):
    """Something the pathway waits for, and by when."""

    what: str
    by: datetime


_WHEN_SENT = {"received_at"}
"""A resubmission may be stamped anew (FHIR without authoredOn is dated on receipt)."""


def referral_differences(ours: Referral, theirs: Referral) -> list[str]:
    """The fields (`patient.national_id`, `municipality`...) in which two referrals differ,
    apart from when they were received."""
    mine = ours.model_dump(mode="python", exclude=_WHEN_SENT)
    other = theirs.model_dump(mode="python", exclude=_WHEN_SENT)
    differing: list[str] = []
    for name in mine.keys() | other.keys():
        if isinstance(mine.get(name), dict) or isinstance(other.get(name), dict):
            inner, theirs_inner = mine.get(name) or {}, other.get(name) or {}
            differing += [
                f"{name}.{key}"
                for key in inner.keys() | theirs_inner.keys()
                if inner.get(key) != theirs_inner.get(key)
            ]
        elif mine.get(name) != other.get(name):
            differing.append(name)
    return sorted(differing)
