"""A task as a Dialogmelding 1.1 "Helsefaglig dialog", in its MsgHead 1.2 envelope.

Messages between health services in Norway travel over Norsk helsenett as business
documents addressed by HER-id. A task for a GP office or a municipal service goes as a
Dialogmelding: `MsgInfo/Type` DIALOG_HELSEFAGLIG (code list 8279), a `Notat` with theme 6
"Henvendelse om pasient" (code list 7322), the task's subject as its theme text and the
task's text as its content. It stays inside the health network, so, unlike an e-mail, it
names the patient where the standard asks (`MsgInfo/Patient`, by fødselsnummer or
D-nummer) for the cooperating service to act on; a task withheld from other organisations
after the patient's objection never comes here, and a redacted one carries no patient.

The business document's id (`MsgId`) derives from the task's idempotency key: every attempt
for a task sends the same document, and a receiver sees a repeat as one.

Built with the standard library's ElementTree; `tests/test_dialogmelding.py` checks every
document against the published XSDs.
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET  # we build XML here, never parse it
from dataclasses import dataclass
from datetime import datetime

MSGHEAD = "http://www.kith.no/xmlstds/msghead/2006-05-24"
DIALOG = "http://www.kith.no/xmlstds/dialog/2013-01-23"
MIG_VERSION = "v1.2 2006-05-24"
HER_ID_SYSTEM = "2.16.578.1.12.4.1.1.9051"
PERSON_ID_SYSTEM = "2.16.578.1.12.4.1.1.8116"
DIALOG_THEME_SYSTEM = "2.16.578.1.12.4.1.1.7322"
BUSINESS_DOCUMENT_IDS = uuid.UUID("6f1d3c1e-0c4f-5a8e-9a51-8f2b3a7e2d10")
"""The namespace of our business document ids (uuid5 of the task's idempotency key)."""

XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
"""As Meldingstjener asks: UTF-8, declared on the first line."""
_HER_ADDRESS = re.compile(r"^(\d{1,9})(?:/(\d{1,9}))?$")


class InvalidHerAddress(ValueError):
    """A HER address is `<organisation's HER-id>` or `<organisation's>/<service's or person's>`."""


@dataclass(frozen=True)
class Party:
    """A communication party in the address register: an organisation by its HER-id, and
    optionally the service or person in it that the message is for."""

    name: str
    her_id: str
    part_name: str | None = None
    part_her_id: str | None = None

    @classmethod
    def at(cls, address: str, name: str, part_name: str | None = None) -> Party:
        """The party at HER address `address` (`<org>` or `<org>/<service or person>`)."""
        match = _HER_ADDRESS.fullmatch(address.removeprefix("her:"))
        if match is None:
            raise InvalidHerAddress(f"not a HER address: {address!r}")
        organisation, part = match.groups()
        return cls(
            name=name,
            her_id=organisation,
            part_name=(part_name or f"HER-id {part}") if part else None,
            part_her_id=part,
        )

    @property
    def leaf_her_id(self) -> int:
        """The HER-id the message is addressed to (the service or person, else the
        organisation): what Meldingstjener and its receipts name."""
        return int(self.part_her_id or self.her_id)


@dataclass(frozen=True)
class DialogNote:
    """What one Dialogmelding says."""

    task_key: str
    generated_at: datetime
    sender: Party
    receiver: Party
    subject: str
    text: str
    patient_national_id: str | None
    """None: the message names no patient (a redacted task)."""


def business_document_id(task_key: str) -> str:
    """The `MsgId` of the task's Dialogmelding: the same for every attempt."""
    return str(uuid.uuid5(BUSINESS_DOCUMENT_IDS, task_key))


def business_document(note: DialogNote) -> bytes:
    """The MsgHead document, UTF-8 with its declaration, as Meldingstjener wants it."""
    ET.register_namespace("", MSGHEAD)
    ET.register_namespace("dia", DIALOG)
    head = ET.Element(_mh("MsgHead"))
    info = ET.SubElement(head, _mh("MsgInfo"))
    _coded(info, _mh("Type"), "DIALOG_HELSEFAGLIG", "Helsefaglig dialog")
    _text(info, _mh("MIGversion"), MIG_VERSION)
    _text(info, _mh("GenDate"), note.generated_at.replace(microsecond=0).isoformat())
    _text(info, _mh("MsgId"), business_document_id(note.task_key))
    _organisation(ET.SubElement(info, _mh("Sender")), note.sender)
    _organisation(ET.SubElement(info, _mh("Receiver")), note.receiver)
    if note.patient_national_id is not None:
        _patient(ET.SubElement(info, _mh("Patient")), note.patient_national_id)
    ref = ET.SubElement(ET.SubElement(head, _mh("Document")), _mh("RefDoc"))
    ET.SubElement(
        ref, _mh("IssueDate"), {"V": note.generated_at.replace(microsecond=0).isoformat()}
    )
    _coded(ref, _mh("MsgType"), "XML", "XML-instans")
    content = ET.SubElement(ref, _mh("Content"))
    dialog = ET.SubElement(content, _dia("Dialogmelding"))
    notat = ET.SubElement(dialog, _dia("Notat"))
    _coded(notat, _dia("TemaKodet"), "6", "Henvendelse om pasient", DIALOG_THEME_SYSTEM)
    _text(notat, _dia("Tema"), note.subject)
    _text(notat, _dia("TekstNotatInnhold"), note.text)
    return XML_DECLARATION + ET.tostring(head, encoding="unicode").encode()


def _organisation(parent: ET.Element, party: Party) -> None:
    organisation = ET.SubElement(parent, _mh("Organisation"))
    _text(organisation, _mh("OrganisationName"), party.name)
    _her_ident(organisation, party.her_id)
    if party.part_her_id is not None:
        part = ET.SubElement(organisation, _mh("Organisation"))
        _text(part, _mh("OrganisationName"), party.part_name or f"HER-id {party.part_her_id}")
        _her_ident(part, party.part_her_id)


def _her_ident(parent: ET.Element, her_id: str) -> None:
    ident = ET.SubElement(parent, _mh("Ident"))
    _text(ident, _mh("Id"), her_id)
    _coded(ident, _mh("TypeId"), "HER", "HER-id", HER_ID_SYSTEM)


def _patient(parent: ET.Element, national_id: str) -> None:
    ident = ET.SubElement(parent, _mh("Ident"))
    _text(ident, _mh("Id"), national_id)
    d_number = int(national_id[0]) >= 4
    _coded(
        ident,
        _mh("TypeId"),
        "DNR" if d_number else "FNR",
        "D-nummer" if d_number else "Fødselsnummer",
        PERSON_ID_SYSTEM,
    )


def _coded(
    parent: ET.Element, tag: str, value: str, display: str, system: str | None = None
) -> None:
    attributes = {"V": value, "DN": display}
    if system is not None:
        attributes["S"] = system
    ET.SubElement(parent, tag, attributes)


def _text(parent: ET.Element, tag: str, text: str) -> None:
    ET.SubElement(parent, tag).text = text


def _mh(name: str) -> str:
    return f"{{{MSGHEAD}}}{name}"


def _dia(name: str) -> str:
    return f"{{{DIALOG}}}{name}"
