"""Tasks as Dialogmelding over Norsk helsenett: sent once, delivered when the receiver's
application receipt says `Ok`.

A delivery attempt sends the task's business document unless an earlier attempt has (the
delivery keeps the id Meldingstjener gave it), then asks for the receiver's AppRec: none yet
is a retry later (within the pathway's delivery window), `Ok` is delivered, `Rejected` fails
the delivery at once with the receipt's error codes.
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from activities.dialogmelding import DialogNote, Party, business_document
from activities.nhn import Meldingstjener, Receipt, ReceiptStatus
from activities.rendering import RenderedMessage
from rop_domain.routing import Route


class AwaitingReceipt(RuntimeError):
    """No application receipt yet: the delivery is tried again later."""


class ReceiptRejected(RuntimeError):
    """The receiver rejected the message (its AppRec): the delivery has failed for good."""

    def __init__(self, receipt: Receipt) -> None:
        super().__init__(f"the receiver's application receipt: {receipt.describe()}")
        self.receipt = receipt


class DialogChannel:
    """Dialogmelding through Meldingstjener, from this service's HER address."""

    def __init__(self, meldingstjener: Meldingstjener, sender: Party) -> None:
        self._meldingstjener = meldingstjener
        self._sender = sender

    async def deliver(
        self,
        pool: asyncpg.Pool,
        task: asyncpg.Record,
        route: Route,
        message: RenderedMessage,
        task_key: str,
    ) -> None:
        """One attempt: send the message if no attempt has, then read its receipt."""
        receiver = Party.at(route.address or "", route.name or f"HER-id {route.address}")
        transport_id: str | None = await pool.fetchval(
            "SELECT transport_id FROM deliveries WHERE task_id = $1", task["id"]
        )
        if transport_id is None:
            document = business_document(
                DialogNote(
                    task_key=task_key,
                    generated_at=datetime.now(UTC),
                    sender=self._sender,
                    receiver=receiver,
                    subject=message.subject,
                    text=message.text,
                    patient_national_id=await _patient(pool, task),
                )
            )
            transport_id = await self._meldingstjener.send(document)
            await pool.execute(
                "UPDATE deliveries SET transport_id = $2, updated_at = now() WHERE task_id = $1",
                task["id"],
                transport_id,
            )
        receipt = await self._meldingstjener.receipt(transport_id, receiver.leaf_her_id)
        if receipt is None:
            raise AwaitingReceipt(f"no application receipt yet for message {transport_id}")
        await pool.execute(
            "UPDATE deliveries SET receipt = $2, updated_at = now() WHERE task_id = $1",
            task["id"],
            receipt.describe(),
        )
        if receipt.status is ReceiptStatus.REJECTED:
            raise ReceiptRejected(receipt)


async def _patient(pool: asyncpg.Pool, task: asyncpg.Record) -> str | None:
    """The patient's fødselsnummer or D-nummer for the message, where the task may name the
    patient (not a redacted task), and the record has it."""
    if task["redacted"]:
        return None
    national_id: str | None = await pool.fetchval(
        "SELECT patient_national_id FROM pathways WHERE workflow_id = $1", task["workflow_id"]
    )
    return national_id
