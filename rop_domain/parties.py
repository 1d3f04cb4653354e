"""Who a pathway names: the grounds of need of service, kept as data when a step is written.

Pasientjournalloven § 22 and Normen let a person see a patient's records only with a need of
service. A person has one for a pathway of their own unit, or for one that names them in a
typed field of its record: the receiving clinician, the GP, the referrer, the koordinator,
the crisis-plan responsible, a measure's responsible, a person or unit invited to the
meeting, a unit a measure's task is for. These functions list those parties from the typed
fields of a referral or a step, never from free text (a reason that happens to hold an HPR
number names nobody), and each party says which event or task of a step named it. The record service writes them in the step's own statement
(`activities.step_statement`), so reads find them by index (`pathway_parties`, migration
0012) instead of searching the event log.

Acting on a pathway names nobody: whoever records a step had grounds to do so already (their
unit, a typed field, or breaking the glass for that one access), so a step taken by breaking
the glass leaves no lasting ground.

Party types never mix: an HPR number grants only a person whose token carries that HPR
number, a unit only members of the unit, an e-mail address only a verified address the
deployment trusts; an organisation (a municipality) grants no person anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from enum import StrEnum

from pydantic import JsonValue

from rop_domain.commands import EventKind, Notification, PathwayStep
from rop_domain.models import ParticipantRole, Referral, ReferralSource, StrictModel
from rop_domain.tasks import TaskKind


class PartyType(StrEnum):
    PERSON = "person"  # an HPR number
    UNIT = "unit"  # `<health trust>/<TSB|PHV>`
    ORGANISATION = "organisation"  # e.g. `municipality:4601`; grants no person
    EMAIL = "email"  # a person invited by address (case folded)


class NamedAs(StrEnum):
    RECEIVING_UNIT = "receiving-unit"
    RECEIVING_CLINICIAN = "receiving-clinician"
    GENERAL_PRACTITIONER = "general-practitioner"
    REFERRER = "referrer"
    MUNICIPALITY = "municipality"
    KOORDINATOR = "koordinator"
    CRISIS_PLAN_RESPONSIBLE = "crisis-plan-responsible"
    MEASURE_RESPONSIBLE = "measure-responsible"
    INVITED = "invited"
    MEASURE_PROVIDER = "measure-provider"


class Party(StrictModel):
    """One party a pathway names, and what named it: the key of the step's event or task
    (`step_key`; a task's, so that its unit can be found again from the task table alone).

    A unit is `<health trust>/<TSB|PHV>`; one a step names (an invited unit) comes as the
    step knows it, `TSB` or `PHV`, and the record's statement qualifies it with the
    pathway's health trust, which the step does not carry (`activities.step_statement`)."""

    party_type: PartyType
    party: str
    named_as: NamedAs
    step_key: str


HPR_NUMBER = re.compile(r"^\d{5,9}$")
"""An HPR number (the health personnel registry's, up to nine digits). A measure's
`responsible` names a person or a unit; only an HPR-shaped one is a person."""

SPECIALIST_UNITS = {"tsb": "TSB", "phv": "PHV", "TSB": "TSB", "PHV": "PHV"}
"""The parties (invited roles, measure providers, receiving units) that are a unit of the
pathway's health trust, by the unit's code."""

PERSON_ROLES = frozenset(
    role.value
    for role in (ParticipantRole.PATIENT, ParticipantRole.RELATIVE, ParticipantRole.OTHER)
)
"""Invited parties that are people, not services: invited by their own address."""

_PERSON_REFERRERS = frozenset({ReferralSource.FASTLEGE, ReferralSource.SPESIALISTHELSETJENESTEN})


def email_party(address: str) -> str:
    """An e-mail address as grounds compare it: case folded."""
    return address.strip().casefold()


def of_referral(workflow_id: str, referral: Referral, step_key: str) -> list[Party]:
    """The parties a new pathway names: its unit, receiving clinician, GP, referrer and the
    patient's municipality."""

    def party(kind: PartyType, value: str, named_as: NamedAs) -> Party:
        return Party(party_type=kind, party=value, named_as=named_as, step_key=step_key)

    found = [
        party(
            PartyType.UNIT,
            f"{referral.health_trust}/{referral.receiving_unit.value}",
            NamedAs.RECEIVING_UNIT,
        ),
        party(PartyType.PERSON, referral.responsible_clinician, NamedAs.RECEIVING_CLINICIAN),
        party(
            PartyType.ORGANISATION, f"municipality:{referral.municipality}", NamedAs.MUNICIPALITY
        ),
    ]
    if referral.general_practitioner:
        found.append(
            party(PartyType.PERSON, referral.general_practitioner, NamedAs.GENERAL_PRACTITIONER)
        )
    referrer_type = (
        PartyType.PERSON if referral.source in _PERSON_REFERRERS else PartyType.ORGANISATION
    )
    found.append(party(referrer_type, referral.referrer, NamedAs.REFERRER))
    return found


def of_step(step: PathwayStep) -> list[Party]:
    """The parties a step names, from its events' typed fields and its tasks."""
    found: dict[tuple[PartyType, str, NamedAs], Party] = {}
    for event in step.events:
        for kind, value, named_as in _named_by_event(event.kind, event.details):
            found.setdefault(
                (kind, value, named_as),
                Party(
                    party_type=kind, party=value, named_as=named_as, step_key=event.idempotency_key
                ),
            )
    for notification in step.notifications:
        for kind, value, named_as in _named_by_task(notification):
            found.setdefault(
                (kind, value, named_as),
                Party(
                    party_type=kind,
                    party=value,
                    named_as=named_as,
                    step_key=notification.idempotency_key,
                ),
            )
    return list(found.values())


def _named_by_event(
    kind: EventKind, details: dict[str, JsonValue]
) -> Iterator[tuple[PartyType, str, NamedAs]]:
    """Typed fields of the step models whose dumps the events carry (`workflows.pathway`)."""
    if kind is EventKind.MEETING_HELD:
        for field, named_as in (
            ("koordinator", NamedAs.KOORDINATOR),
            ("crisis_plan_responsible", NamedAs.CRISIS_PLAN_RESPONSIBLE),
        ):
            value = details.get(field)
            if isinstance(value, str) and value:
                yield PartyType.PERSON, value, named_as
        yield from _responsible(details.get("measures"))
    elif kind is EventKind.PLAN_REVISED:
        yield from _responsible(details.get("plan"))


def _responsible(measures: JsonValue) -> Iterator[tuple[PartyType, str, NamedAs]]:
    if not isinstance(measures, list):
        return
    for measure in measures:
        if isinstance(measure, dict):
            value = measure.get("responsible")
            if isinstance(value, str) and value:
                kind = PartyType.PERSON if HPR_NUMBER.match(value) else PartyType.ORGANISATION
                yield kind, value, NamedAs.MEASURE_RESPONSIBLE


_UNIT_TASKS = {
    TaskKind.MEETING_INVITATION: NamedAs.INVITED,
    TaskKind.START_MEASURE: NamedAs.MEASURE_PROVIDER,
}
"""Tasks that a unit holds when they are for it, not for one of its people (a typed owner,
`activities.task_owner`), and what they name the unit as."""


def _named_by_task(
    notification: Notification,
) -> Iterator[tuple[PartyType, str, NamedAs]]:
    """Who a task names. An invited person: by HPR number where the invite names one, by
    address where the party is a person (the patient, a relative) invited at their own
    address. A unit of the specialist service (TSB, PHV) that an invitation or a measure's
    task is for: its members hold it as their unit's task, and act on it for the pathway.

    A task sent redacted names nobody: the patient objected to sharing with that party
    (runs from before consent was asked sent it without patient-related content; runs since
    withhold it, so it is no notification at all)."""
    if notification.redacted:
        return
    if notification.kind is TaskKind.MEETING_INVITATION:
        if notification.person:
            yield PartyType.PERSON, notification.person, NamedAs.INVITED
        if notification.party in PERSON_ROLES and "@" in notification.recipient:
            yield PartyType.EMAIL, email_party(notification.recipient), NamedAs.INVITED
    unit = SPECIALIST_UNITS.get(notification.party or "")
    for_the_unit = not notification.person and not HPR_NUMBER.match(notification.recipient)
    if notification.kind in _UNIT_TASKS and unit is not None and for_the_unit:
        yield PartyType.UNIT, unit, _UNIT_TASKS[notification.kind]
