"""Which channel reaches whom: routing of tasks to Dialogmelding, e-mail, webhooks or the task
list only.

The task list in PostgreSQL is always written. Routing says how a recipient (a person's
or unit's id, as the task names it) is told besides: by Dialogmelding over Norsk helsenett to
a GP office or municipal service by its HER-id, by e-mail, or by a webhook to their
organisation's system, in bokmål or nynorsk.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Self

from pydantic import Field, model_validator

from rop_domain.models import StrictModel, WrittenStandard

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
HER_ADDRESS = re.compile(r"^(?:her:)?\d{1,9}(?:/\d{1,9})?$")
"""A HER address: `<organisation's HER-id>[/<its service's or person's>]`, as routes and the
contact directory write it (`her:` in the directory, where addresses of all kinds meet)."""


class Channel(StrEnum):
    """How a task reaches its recipient, besides the task list."""

    DIALOGMELDING = "dialogmelding"
    """Over Norsk helsenett (Meldingstjener), to a HER address, answered by an AppRec."""
    EMAIL = "email"
    WEBHOOK = "webhook"
    TASK_LIST = "task-list"


class Route(StrictModel):
    """One recipient's (or unit's) channel, address and written standard."""

    recipient: str = Field(
        min_length=1, description="The id tasks name, e.g. an HPR number or unit id"
    )
    channel: Channel
    address: str | None = Field(
        default=None, description="HER address, e-mail address or webhook URL"
    )
    name: str | None = Field(
        default=None,
        max_length=200,
        description="Dialogmelding: the receiver's name as the address register gives it",
    )
    standard: WrittenStandard = WrittenStandard.BOKMAL
    secret_file: Path | None = Field(
        default=None,
        description="Webhooks: a file holding this receiver's own HMAC secret, so a body "
        "signed for one receiver never verifies at another (ROP_WEBHOOK_SECRET otherwise)",
    )

    @model_validator(mode="after")
    def _address_for_a_channel(self) -> Self:
        if self.channel is not Channel.TASK_LIST and not self.address:
            raise ValueError(
                f"route for {self.recipient}: channel {self.channel.value} needs an address"
            )
        address = self.address or ""
        secure = address.startswith(("https://", "http://127.0.0.1", "http://localhost"))
        if self.channel is Channel.WEBHOOK and not secure:
            raise ValueError(f"route for {self.recipient}: webhooks go to https:// URLs")
        if self.channel is Channel.DIALOGMELDING and not HER_ADDRESS.fullmatch(address):
            raise ValueError(
                f"route for {self.recipient}: Dialogmelding goes to a HER address "
                "(<organisation HER-id>[/<service or person HER-id>])"
            )
        return self


class RoutingTable(StrictModel):
    """All routes, and what a recipient without one gets."""

    routes: list[Route] = Field(default_factory=list)
    email_unrouted_addresses: bool = Field(
        default=True, description="A recipient that is itself an e-mail address gets e-mail"
    )
    dialog_unrouted_her_addresses: bool = Field(
        default=False,
        description="A recipient that is itself a HER address (`her:...`, e.g. from the "
        "contact directory) gets Dialogmelding (when Norsk helsenett is configured)",
    )
    default_standard: WrittenStandard = WrittenStandard.BOKMAL

    def route_for(self, recipient: str) -> Route:
        """The route for `recipient`: its own, a Dialogmelding or an e-mail to the address it
        is, or the task list."""
        for route in self.routes:
            if route.recipient == recipient:
                return route
        her = recipient.startswith("her:") and HER_ADDRESS.fullmatch(recipient)
        if self.dialog_unrouted_her_addresses and her:
            return Route(
                recipient=recipient,
                channel=Channel.DIALOGMELDING,
                address=recipient.removeprefix("her:"),
                standard=self.default_standard,
            )
        if self.email_unrouted_addresses and _EMAIL.match(recipient):
            return Route(
                recipient=recipient,
                channel=Channel.EMAIL,
                address=recipient,
                standard=self.default_standard,
            )
        return Route(recipient=recipient, channel=Channel.TASK_LIST, standard=self.default_standard)

    @classmethod
    def from_file(cls, path: Path) -> RoutingTable:
        """Read a routing table from JSON."""
        return cls.model_validate_json(path.read_bytes())
