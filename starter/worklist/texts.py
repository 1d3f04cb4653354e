"""The worklist's words in bokmål and nynorsk. A page asks `words(language)` for its
language's; a key missing in one is a test failure (`tests/test_worklist.py`)."""

from __future__ import annotations

from enum import StrEnum


class Language(StrEnum):
    BOKMAL = "nb"
    NYNORSK = "nn"


NB: dict[str, str] = {
    "title": "Arbeidsliste – ROP-forløp",
    "skip": "Hopp til innholdet",
    "signin": "Logg inn",
    "signin_with": "Logg inn med",
    "signin_as": "Logg inn som",
    "signout": "Logg ut",
    "signed_in_as": "Innlogget som",
    "demo_people": "Lokal modus: velg en demoperson",
    "my_tasks": "Mine oppgaver",
    "unit_tasks": "Enhetens oppgaver",
    "no_tasks": "Ingen åpne oppgaver.",
    "kind": "Type oppgave",
    "all_kinds": "Alle typer",
    "filter": "Filtrer",
    "due": "Frist",
    "no_due": "Ingen frist",
    "overdue": "Forfalt",
    "task": "Oppgave",
    "status": "Status",
    "open": "Åpne",
    "pathway": "Forløp",
    "phase": "Fase",
    "deadline": "Frist for innkalling",
    "claim": "Ta oppgaven",
    "unclaim": "Gi oppgaven tilbake til enheten",
    "claimed_by": "Tatt av",
    "back": "Tilbake til arbeidslisten",
    "send": "Send",
    "saved": "Lagret.",
    "errors": "Skjemaet har feil:",
    "decision": "Vurdering",
    "in-target-group": "I målgruppen for ROP-forløp",
    "not-in-target-group": "Ikke i målgruppen",
    "reason": "Begrunnelse",
    "meeting_at": "Tidspunkt for avklaringsmøtet",
    "location": "Sted",
    "participants": "Deltakere (anbefalte er fylt inn fra forløpet og kontaktpunktene)",
    "version": "Versjon",
    "made_with_patient": "Laget sammen med pasienten",
    "relatives_involved": "Pårørende involvert",
    "next_revision": "Neste revisjon",
    "outcome": "Utfall",
    "continue": "Fortsett forløpet",
    "end-pathway": "Avslutt forløpet",
    "note": "Merknad",
    "start_measure": "Start tiltaket",
    "no_form": "Denne oppgaven er til informasjon; den lukkes når forløpet går videre.",
    "language": "Nynorsk",
}

NN: dict[str, str] = {
    **NB,
    "title": "Arbeidsliste – ROP-forløp",
    "skip": "Hopp til innhaldet",
    "signin": "Logg inn",
    "signin_with": "Logg inn med",
    "signin_as": "Logg inn som",
    "signout": "Logg ut",
    "signed_in_as": "Innlogga som",
    "demo_people": "Lokal modus: vel ein demoperson",
    "my_tasks": "Mine oppgåver",
    "unit_tasks": "Eininga sine oppgåver",
    "no_tasks": "Ingen opne oppgåver.",
    "kind": "Type oppgåve",
    "all_kinds": "Alle typar",
    "filter": "Filtrer",
    "due": "Frist",
    "no_due": "Ingen frist",
    "overdue": "Forfalle",
    "task": "Oppgåve",
    "open": "Opne",
    "pathway": "Forløp",
    "deadline": "Frist for innkalling",
    "claim": "Ta oppgåva",
    "unclaim": "Gje oppgåva tilbake til eininga",
    "claimed_by": "Teken av",
    "back": "Tilbake til arbeidslista",
    "saved": "Lagra.",
    "errors": "Skjemaet har feil:",
    "in-target-group": "I målgruppa for ROP-forløp",
    "not-in-target-group": "Ikkje i målgruppa",
    "reason": "Grunngjeving",
    "meeting_at": "Tidspunkt for avklaringsmøtet",
    "participants": "Deltakarar (tilrådde er fylte inn frå forløpet og kontaktpunkta)",
    "made_with_patient": "Laga saman med pasienten",
    "relatives_involved": "Pårørande involverte",
    "next_revision": "Neste revisjon",
    "outcome": "Utfall",
    "continue": "Hald fram med forløpet",
    "end-pathway": "Avslutt forløpet",
    "note": "Merknad",
    "start_measure": "Start tiltaket",
    "no_form": "Denne oppgåva er til informasjon; ho vert lukka når forløpet går vidare.",
    "language": "Bokmål",
}

WORDS = {Language.BOKMAL: NB, Language.NYNORSK: NN}


def words(language: Language) -> dict[str, str]:
    return WORDS[language]
