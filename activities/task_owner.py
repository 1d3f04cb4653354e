"""Whom a task belongs to, as a typed owner: what a worklist and `GET /fhir/Task?owner=` find
tasks by (issue 30), kept with the task when it is written.

A task names its recipient by address (an HPR number, an e-mail or HER address, a contact
point's); the owner says who that is: a person (a Practitioner, by HPR number), a unit of the
specialist service (a CareTeam: the pathway's health trust and TSB or PHV), or the patient's
municipality (an Organization). An address alone is no identity: a task sent to one that the
step did not type has no owner and is found by its pathway only.
"""

from __future__ import annotations

from enum import StrEnum

from rop_domain.commands import Notification
from rop_domain.parties import HPR_NUMBER, SPECIALIST_UNITS


class OwnerType(StrEnum):
    """FHIR's names of the resource types a task's owner is."""

    PRACTITIONER = "Practitioner"
    CARE_TEAM = "CareTeam"
    ORGANIZATION = "Organization"


MUNICIPALITY = "municipality"
"""The party that is the patient's municipality (an invited `kommune`, a measure of it)."""


def owner_of(notification: Notification) -> tuple[OwnerType, str] | None:
    """The owner of the task `notification` raises, by the step's typed fields: its person's
    HPR number, else the recipient's if it is one, else the unit or municipality it is of.

    Unit and municipality come as the step knows them (`TSB`, `municipality`); the record's
    statement qualifies them with the pathway's health trust or municipality
    (`unit_id`, `municipality_id`), which the step does not carry."""
    if notification.person:
        return OwnerType.PRACTITIONER, notification.person
    if HPR_NUMBER.fullmatch(notification.recipient):
        return OwnerType.PRACTITIONER, notification.recipient
    party = notification.party or ""
    if party in SPECIALIST_UNITS:
        return OwnerType.CARE_TEAM, SPECIALIST_UNITS[party]
    if party in ("kommune", MUNICIPALITY):
        return OwnerType.ORGANIZATION, MUNICIPALITY
    return None


def unit_id(health_trust: str, unit: str) -> str:
    """A unit as a FHIR id (CareTeam): `helse-bergen.TSB` for the unit `helse-bergen/TSB`."""
    return f"{health_trust}.{unit}"


def unit_of(care_team: str) -> str:
    """The unit (`helse-bergen/TSB`) a CareTeam id names."""
    health_trust, _, unit = care_team.rpartition(".")
    return f"{health_trust}/{unit}"


def municipality_id(municipality: str) -> str:
    """A municipality as a FHIR id (Organization): `municipality-4601`."""
    return f"{MUNICIPALITY}-{municipality}"
