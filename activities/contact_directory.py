"""Loading the contact directory: contact points (municipalities, health trusts, GPs), FACT
teams and cooperation arenas."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

import asyncpg
from pydantic import Field, TypeAdapter, model_validator

from activities.database import Connection
from rop_domain.models import Identifier, Kommunenummer, ReceivingUnit, StrictModel
from rop_domain.routing import HER_ADDRESS, Channel, Route, RoutingTable


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


class FactTeam(StrictModel):
    """A FACT team and the health trust it belongs to (for the indicators)."""

    id: Identifier
    health_trust: Identifier
    name: str = Field(min_length=1)
    municipalities: list[Kommunenummer] = Field(default_factory=list)
    example_data: bool = False


class CooperationArena(StrictModel):
    """An established arena where a health trust and a municipality cooperate on ROP patients
    (the regional plan's indicator "etablert arena for samhandling")."""

    id: Identifier
    health_trust: Identifier
    municipality: Kommunenummer
    name: str = Field(min_length=1)
    established: date
    example_data: bool = False


class ContactDirectoryFile(StrictModel):
    """The seed file's shape: a note saying what the data is, and the entries."""

    note: str = ""
    contact_points: list[ContactPoint]
    fact_teams: list[FactTeam] = Field(default_factory=list)
    cooperation_arenas: list[CooperationArena] = Field(default_factory=list)

    @model_validator(mode="after")
    def _every_unit_has_a_leader(self) -> ContactDirectoryFile:
        """Escalations go to a unit's leader: a directory naming a PHV or TSB unit without
        one is refused, the units named, before anything is loaded."""
        units = {
            (p.health_trust, p.role.upper())
            for p in self.contact_points
            if p.role in ("phv", "tsb") and p.health_trust
        }
        leaders = {
            (p.health_trust, p.receiving_unit.value)
            for p in self.contact_points
            if p.role == "leder" and p.receiving_unit is not None
        }
        lacking = sorted(f"{trust}/{unit}" for trust, unit in units - leaders)
        if lacking:
            raise ValueError(
                f"units without a leader (their escalations need one): {', '.join(lacking)}"
            )
        return self


@dataclass(frozen=True)
class Loaded:
    """How many entries of each kind a directory file held."""

    contact_points: int
    fact_teams: int
    cooperation_arenas: int


_FILE = TypeAdapter(ContactDirectoryFile)


def read_directory(path: Path) -> ContactDirectoryFile:
    """Parse and validate a contact directory file."""
    return _FILE.validate_json(path.read_bytes())


def read_contact_points(path: Path) -> list[ContactPoint]:
    """The contact points of a directory file."""
    return read_directory(path).contact_points


async def upsert_fact_teams(pool: asyncpg.Pool, teams: list[FactTeam]) -> int:
    """Insert or update each FACT team by id."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.executemany(
            """INSERT INTO fact_teams (id, health_trust, name, municipalities, example_data)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (id) DO UPDATE SET
                   health_trust = EXCLUDED.health_trust, name = EXCLUDED.name,
                   municipalities = EXCLUDED.municipalities, example_data = EXCLUDED.example_data""",
            [(t.id, t.health_trust, t.name, t.municipalities, t.example_data) for t in teams],
        )
    return len(teams)


async def load_directory(pool: asyncpg.Pool, path: Path) -> Loaded:
    """Load a directory file's contact points, FACT teams and cooperation arenas."""
    directory = read_directory(path)
    return Loaded(
        await upsert_contact_points(pool, directory.contact_points),
        await upsert_fact_teams(pool, directory.fact_teams),
        await upsert_arenas(pool, directory.cooperation_arenas),
    )


async def upsert_arenas(pool: asyncpg.Pool, arenas: list[CooperationArena]) -> int:
    """Insert or update each cooperation arena by id."""
    await pool.executemany(
        """INSERT INTO cooperation_arenas (id, health_trust, municipality, name, established,
                                           example_data)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (id) DO UPDATE SET
               health_trust = EXCLUDED.health_trust, municipality = EXCLUDED.municipality,
               name = EXCLUDED.name, established = EXCLUDED.established,
               example_data = EXCLUDED.example_data""",
        [
            (a.id, a.health_trust, a.municipality, a.name, a.established, a.example_data)
            for a in arenas
        ],
    )
    return len(arenas)


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


async def her_routes(
    database: asyncpg.Pool | Connection, routing: RoutingTable, recipients: Iterable[str]
) -> dict[str, Route]:
    """Dialogmelding routes, from the contact directory, for recipients named by HPR number
    (a GP): where Norsk helsenett is configured and the routing table has no route of its
    own for them, a person whose directory entry has a HER address (`her:<GP office>/<GP>`)
    gets their tasks as Dialogmelding there. One look-up for all of a step's recipients."""
    if not routing.dialog_unrouted_her_addresses:
        return {}
    unrouted = sorted(
        {
            recipient
            for recipient in recipients
            if recipient.isdigit() and routing.route_for(recipient).channel is Channel.TASK_LIST
        }
    )
    if not unrouted:
        return {}
    rows = await database.fetch(
        """SELECT DISTINCT ON (hpr_number) hpr_number, name, address FROM contact_points
           WHERE hpr_number = ANY ($1) AND address LIKE 'her:%'
           ORDER BY hpr_number, id""",
        unrouted,
    )
    return {
        row["hpr_number"]: Route(
            recipient=row["hpr_number"],
            channel=Channel.DIALOGMELDING,
            address=row["address"].removeprefix("her:"),
            name=row["name"],
            standard=routing.default_standard,
        )
        for row in rows
        if HER_ADDRESS.fullmatch(row["address"])
    }
