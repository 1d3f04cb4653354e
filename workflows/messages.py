"""The Norwegian texts of the tasks the pathway raises (bokmål).

Subjects say what to do and by when; bodies name the pathway by its referral id and
never carry the patient's name, national id or clinical content.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import NamedTuple

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from rop_domain import calendar


class Message(NamedTuple):
    """A task's subject line and body."""

    subject: str
    body: str


def day(value: date | datetime) -> str:
    """A date as Norwegians write it (dd.mm.yyyy), in Norwegian time."""
    local = calendar.local_date(value) if isinstance(value, datetime) else value
    return local.strftime("%d.%m.%Y")


def assess_referral(referral_id: str, deadline: date) -> Message:
    return Message(
        f"Vurder henvisning {referral_id} (ROP) og kall inn til avklaringsmøte innen {day(deadline)}",
        "En henvisning til ROP-forløp venter på vurdering.",
    )


def referral_not_accepted(referral_id: str) -> Message:
    return Message(
        f"Henvisning {referral_id} er vurdert: ikke ROP-forløp",
        "Henvisningen er vurdert og tas ikke inn i ROP-forløpet. Se journal.",
    )


def meeting_invitation(referral_id: str, meeting_at: datetime, place: str) -> Message:
    when = meeting_at.astimezone(calendar.OSLO).strftime("%d.%m.%Y kl. %H:%M")
    return Message(
        f"Innkalling til avklaringsmøte (ROP) {when}",
        f"Avklaringsmøte i ROP-forløp {referral_id} {when}. Sted: {place}.",
    )


def meeting_reminder(referral_id: str, deadline: date) -> Message:
    return Message(
        f"Påminnelse: kall inn til avklaringsmøte innen {day(deadline)}",
        f"ROP-forløp {referral_id}: fristen for innkalling nærmer seg.",
    )


def meeting_escalation(referral_id: str, deadline: date) -> Message:
    return Message(
        f"Frist for avklaringsmøte passert ({day(deadline)})",
        f"ROP-forløp {referral_id}: ingen innkalling sendt innen fristen.",
    )


def make_crisis_plan(referral_id: str, deadline: date) -> Message:
    return Message(
        f"Lag kriseplan sammen med pasienten innen {day(deadline)}",
        f"ROP-forløp {referral_id}: kriseplan skal lages sammen med pasienten og "
        "eventuelt pårørende.",
    )


def crisis_plan_reminder(referral_id: str, deadline: date) -> Message:
    return Message(
        f"Påminnelse: kriseplan skal være laget innen {day(deadline)}",
        f"ROP-forløp {referral_id}: kriseplanen er ikke registrert.",
    )


def crisis_plan_escalation(referral_id: str, deadline: date) -> Message:
    return Message(
        f"Frist for kriseplan passert ({day(deadline)})",
        f"ROP-forløp {referral_id}: ingen kriseplan innen fristen.",
    )


def revise_crisis_plan(referral_id: str, version: int, due: date) -> Message:
    return Message(
        f"Kriseplanen skal revideres ({day(due)})",
        f"ROP-forløp {referral_id}: revider kriseplan versjon {version} sammen med pasienten.",
    )


def start_measure(referral_id: str, measure_id: str, kind: str) -> Message:
    return Message(
        f"Start tiltak {measure_id} ({kind}) i ROP-forløp",
        f"ROP-forløp {referral_id}: tiltaket kan starte.",
    )


def hold_review(referral_id: str, number: int, due: date) -> Message:
    return Message(
        f"Evaluering {number} av ROP-forløp skal holdes innen {day(due)}",
        f"ROP-forløp {referral_id}: hold evaluering av tiltaksplanen.",
    )


def review_reminder(referral_id: str, number: int, due: date) -> Message:
    return Message(
        f"Påminnelse: evaluering {number} skulle vært holdt innen {day(due)}",
        f"ROP-forløp {referral_id}: evalueringen er ikke registrert.",
    )


def review_escalation(referral_id: str, number: int, due: date) -> Message:
    return Message(
        f"Evaluering {number} av ROP-forløp er ikke holdt (frist {day(due)})",
        f"ROP-forløp {referral_id}: evaluering mangler.",
    )


def pathway_closed(referral_id: str, reason: str) -> Message:
    return Message(
        f"ROP-forløp {referral_id} er avsluttet",
        f"Forløpet er avsluttet ({reason}).",
    )


REDACTED = Message(
    "Ny oppgave i ROP-forløp", "Du har fått en oppgave. Se fagsystemet for detaljer."
)
"""What an organisation outside the receiving unit gets after the patient objected."""
