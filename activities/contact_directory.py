"""Loading contact points (municipalities, health trusts, GPs) into the directory."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import asyncpg
from pydantic import Field, TypeAdapter

from rop_domain.models import Identifier, Kommunenummer, ReceivingUnit, StrictModel


class ContactPoint(StrictModel):
    """One entry of the contact directory."""

    id: Identifier
    role: Literal["phv", "tsb", "fastlege", "kommune", "leder"]
    name: str = Field(min_length=1)
    address: str = Field(min_length=1)
    health_trust: Identifier | None = None
    receiving_unit: ReceivingUnit | None = None
    municipality: Kommunenummer | None = None
    hpr_number: Identifier | None = None
    example_data: bool = False


class ContactDirectoryFile(StrictModel):
    """The seed file's shape: a note saying what the data is, and the entries."""

    note: str = ""
    contact_points: list[ContactPoint]


_FILE = TypeAdapter(ContactDirectoryFile)


def read_contact_points(path: Path) -> list[ContactPoint]:
    """Parse and validate a contact directory file."""
    return _FILE.validate_json(path.read_bytes()).contact_points


async def upsert_contact_points(pool: asyncpg.Pool, points: list[ContactPoint]) -> int:
    """Insert or update each contact point by id; loading the same file twice changes nothing."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.executemany(
            """INSERT INTO contact_points (id, role, health_trust, receiving_unit, municipality,
                                           hpr_number, name, address, example_data)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
               ON CONFLICT (id) DO UPDATE SET
                   role = EXCLUDED.role, health_trust = EXCLUDED.health_trust,
                   receiving_unit = EXCLUDED.receiving_unit, municipality = EXCLUDED.municipality,
                   hpr_number = EXCLUDED.hpr_number, name = EXCLUDED.name,
                   address = EXCLUDED.address, example_data = EXCLUDED.example_data""",
            [
                (
                    p.id,
                    p.role,
                    p.health_trust,
                    p.receiving_unit.value if p.receiving_unit else None,
                    p.municipality,
                    p.hpr_number,
                    p.name,
                    p.address,
                    p.example_data,
                )
                for p in points
            ],
        )
    return len(points)
