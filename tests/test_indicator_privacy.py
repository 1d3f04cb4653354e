"""No indicator singles out a patient: small cells withheld (and what would give them
away), no breakdown of less than a month, and every indicator read in the access log."""

from __future__ import annotations

import csv
import io
import itertools
import uuid
from datetime import datetime

import asyncpg
import pytest

from starter.api.auth import Role
from starter.indicators import suppress
from tests.api_harness import Api, problem_of
from tests.test_indicator_population import _population, _write

BREAKDOWNS = (
    "active_by_municipality",
    "active_by_health_trust",
    "active_by_age_group",
    "active_by_residence",
    "by_pathway_reason",
)


def _worked_out(cells: dict[str, int | str], total: int | str) -> bool:
    """Whether one withheld cell could be worked out from the total and the cells shown."""
    hidden = [key for key, n in cells.items() if isinstance(n, str)]
    return len(hidden) == 1 and isinstance(total, int)


def test_small_cells_are_withheld_and_so_is_what_would_give_them_away() -> None:
    assert suppress({"4601": 1, "4627": 10, "4624": 20}, 5) == (
        {"4601": "<5", "4627": "<5", "4624": 20},  # the next smallest goes with it
        False,
    )
    assert suppress({"4601": 2, "4627": 3, "4624": 9}, 5) == (
        {"4601": "<5", "4627": "<5", "4624": 9},
        False,
    )
    assert suppress({"prison": 3}, 5) == ({"prison": "<5"}, True)  # the total is the cell
    assert suppress({"home": 0, "prison": 7}, 5) == ({"home": 0, "prison": 7}, False)
    assert suppress({"home": 1}, 1) == ({"home": 1}, False)  # the rule off
    # Whatever the counts, no withheld cell stands alone beside a total that is shown.
    for counts in itertools.product(range(7), repeat=3):
        cells = dict(zip("abc", counts, strict=True))
        shown, total_withheld = suppress(cells, 5)
        assert not _worked_out(shown, "<5" if total_withheld else sum(counts)), cells
        assert all(isinstance(n, str) or not 0 < n < 5 for n in shown.values()), cells


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.SYSTEM])
async def test_the_api_withholds_small_cells_refuses_short_periods_and_logs_each_read(
    api: Api, owner_pool: asyncpg.Pool, role: Role
) -> None:
    trust = f"helse-priv-{uuid.uuid4().hex[:6]}"
    await _write(owner_pool, trust, _population(seed=3))
    async with api.client(role) as reader:
        whole = await reader.get("/indicators", params={"health_trust": trust})
        today = datetime.now().date().isoformat()  # noqa: DTZ005 - a date the API reads as Oslo's
        one_day = await reader.get(
            "/indicators", params={"health_trust": trust, "from_date": today, "to_date": today}
        )
        series = await reader.get(
            "/indicators/series", params={"health_trust": trust, "format": "csv"}
        )
    assert whole.status_code == 200, whole.text
    found = whole.json()
    for name in BREAKDOWNS:
        cells = found[name]
        assert all(n == "<5" or not 0 < n < 5 for n in cells.values()), (name, cells)
        total = found["active_pathways"] if name != "by_pathway_reason" else None
        if total is not None:
            assert not _worked_out(cells, total), (name, cells, total)
    assert any("<5" in found[name].values() for name in BREAKDOWNS)  # the rule was reached

    assert one_day.status_code == 422
    assert "single out a patient" in problem_of(one_day)["detail"]

    assert series.status_code == 200
    rows = list(csv.DictReader(io.StringIO(series.text)))
    assert all(
        value == "<5" or not value.isdigit() or not 0 < int(value) < 5
        for row in rows
        for column, value in row.items()
        if column.startswith(("active_by_", "by_"))
    )

    logged = await owner_pool.fetch(
        "SELECT workflow_id, action, outcome FROM access_log WHERE principal = $1 "
        "AND action LIKE 'read indicator%' AND action LIKE $2 ORDER BY id",
        f"key:test-{role.value}",
        f"%trust {trust})",
    )
    assert [(r["workflow_id"], r["action"].split(" (")[0], r["outcome"]) for r in logged] == [
        ("-", "read indicators", "ok"),
        ("-", "read indicator series by month", "ok"),
    ]
