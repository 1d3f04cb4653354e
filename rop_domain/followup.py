"""What happens after the clarification meeting: outcome, crisis plan, measures, reviews, closure.

These are the payloads of the pathway's later Updates, validated at the edge and again
(for the pure rules) when the workflow deserialises them.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Self

from pydantic import AwareDatetime, Field, model_validator

from rop_domain.models import MAX_LIST, Identifier, ParticipantRole, ShortText, StrictModel


class IndividualPlanStatus(StrEnum):
    """Individuell plan: the patient's right to one; a koordinator is offered either way."""

    OFFERED = "offered"
    ACCEPTED = "accepted"
    DECLINED = "declined"


class MeasureKind(StrEnum):
    """The kinds of measures (tiltak) the regional plan names."""

    OUTPATIENT = "outpatient"
    AMBULANT_ACT_FACT = "ambulant-act-fact"
    INPATIENT = "inpatient"
    MUNICIPAL_HOUSING = "municipal-housing-follow-up"
    NAV = "nav"
    OTHER = "other"


class Provider(StrEnum):
    """Who provides a measure."""

    KOMMUNE = "kommune"
    TSB = "TSB"
    PHV = "PHV"
    FACT_TEAM = "fact-team"
    NAV = "nav"


class Measure(StrictModel):
    """One measure of the plan; `depends_on` lists measures that must complete first."""

    id: Identifier
    kind: MeasureKind
    provider: Provider
    responsible: Identifier = Field(description="Responsible person or unit (id)")
    description: ShortText | None = None
    indication: ShortText | None = Field(
        default=None, description="Why inpatient treatment is indicated (required for inpatient)"
    )
    depends_on: list[Identifier] = Field(default_factory=list, max_length=MAX_LIST)

    @model_validator(mode="after")
    def _inpatient_needs_indication(self) -> Self:
        if self.kind is MeasureKind.INPATIENT and not self.indication:
            raise ValueError(f"measure {self.id}: inpatient treatment needs a stated indication")
        if self.id in self.depends_on:
            raise ValueError(f"measure {self.id} depends on itself")
        return self


class MeetingOutcome(StrictModel):
    """The clarification meeting took place, and what it decided (Update `record_meeting`)."""

    recorded_by: Identifier
    held_at: AwareDatetime
    attendees: list[ShortText] = Field(min_length=1, max_length=MAX_LIST)
    attended: list[ParticipantRole] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        description="The parties that took part, by role (for the indicator on recommended "
        "parties); attendees whose text is a role count too",
    )
    koordinator: Identifier = Field(description="The appointed koordinator (always offered)")
    individual_plan: IndividualPlanStatus
    crisis_plan_responsible: Identifier
    review_interval_weeks: int = Field(default=12, ge=1, le=52)
    measures: list[Measure] = Field(default_factory=list, max_length=MAX_LIST)


class CrisisPlan(StrictModel):
    """A version of the crisis plan (Update `register_crisis_plan`)."""

    registered_by: Identifier
    version: int = Field(ge=1)
    made_with_patient: bool
    relatives_involved: bool
    next_revision: date
    without_patient_reason: ShortText | None = Field(
        default=None,
        description="Why the plan was made without the patient (required then): the plan is "
        "to be made together with the patient and relatives",
    )


class MeasureStep(StrictModel):
    """Start or complete a measure (Updates `start_measure`, `complete_measure`)."""

    measure_id: Identifier
    by: Identifier
    note: ShortText | None = None


class MeasureCancellation(StrictModel):
    """Cancel a measure (Update `cancel_measure`)."""

    measure_id: Identifier
    by: Identifier
    reason: ShortText


class PlanRevision(StrictModel):
    """Replace the plan of measures (Update `revise_plan`); the old plan stays in the record."""

    revised_by: Identifier
    reason: ShortText
    measures: list[Measure] = Field(max_length=MAX_LIST)
    replaces_version: int | None = Field(
        default=None,
        ge=1,
        description="The plan version this revision replaces (the status's plan_version): a "
        "late repeat of a revision already made is refused, however many steps came between",
    )


class ReviewOutcome(StrEnum):
    """What a periodic review (evaluering) decided."""

    CONTINUE = "continue"
    REVISE_PLAN = "revise-plan"
    END_PATHWAY = "end-pathway"


class Review(StrictModel):
    """A completed periodic review (Update `complete_review`)."""

    reviewed_by: Identifier
    outcome: ReviewOutcome
    review_number: int | None = Field(
        default=None,
        ge=1,
        description="The review this completes (the status's review.number): a late "
        "repeat for a review already completed is refused",
    )
    next_interval_weeks: int | None = Field(default=None, ge=1, le=52)
    revised_plan: list[Measure] | None = Field(default=None, max_length=MAX_LIST)
    note: ShortText | None = None

    @model_validator(mode="after")
    def _revision_has_a_plan(self) -> Self:
        if self.outcome is ReviewOutcome.REVISE_PLAN and self.revised_plan is None:
            raise ValueError("outcome revise-plan needs revised_plan")
        return self


class ClosureReason(StrEnum):
    """Why a pathway ends."""

    COMPLETED = "completed"
    TRANSFERRED = "transferred"
    MOVED = "moved"
    DECEASED = "deceased"
    DECLINED_BY_PATIENT = "declined-by-patient"
    OTHER = "other"


class Closure(StrictModel):
    """End the pathway (Update `close_pathway`), from any phase."""

    closed_by: Identifier
    reason: ClosureReason
    note: ShortText | None = None

    @model_validator(mode="after")
    def _other_needs_a_note(self) -> Self:
        if self.reason is ClosureReason.OTHER and not self.note:
            raise ValueError("reason other needs a note")
        return self


class Objection(StrictModel):
    """The patient objects to sharing with cooperating services (helsepersonelloven § 25)."""

    recorded_by: Identifier
    note: ShortText | None = None
