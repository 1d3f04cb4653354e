"""The plan of measures without a server: validation, what may start, revisions."""

from __future__ import annotations

import pytest

from rop_domain.followup import Measure, MeasureKind, Provider
from rop_domain.plan import (
    MeasureStatus,
    PlanError,
    carry_statuses,
    newly_ready,
    open_predecessors,
    validate_plan,
)
from tests import factories

PLANNED, READY, ACTIVE = MeasureStatus.PLANNED, MeasureStatus.READY, MeasureStatus.ACTIVE
COMPLETED, CANCELLED = MeasureStatus.COMPLETED, MeasureStatus.CANCELLED


def _measure(measure_id: str, *depends_on: str) -> Measure:
    return Measure(
        id=measure_id,
        kind=MeasureKind.OUTPATIENT,
        provider=Provider.TSB,
        responsible=factories.CLINICIAN,
        depends_on=list(depends_on),
    )


def test_the_regional_plans_shape_is_valid() -> None:
    validate_plan(factories.measures())


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ([_measure("a"), _measure("a")], "measure id a is used twice"),
        ([_measure("a", "x", "y")], "measure a depends on unknown measure(s): x, y"),
        (
            [_measure("a", "c"), _measure("b", "a"), _measure("c", "b")],
            "measures depend on each other in a cycle: a -> c -> b -> a",
        ),
    ],
)
def test_a_plan_that_cannot_run_is_refused_saying_why(plan: list[Measure], message: str) -> None:
    with pytest.raises(PlanError) as refused:
        validate_plan(plan)
    assert str(refused.value) == message


def test_measures_without_open_predecessors_run_in_parallel_the_rest_in_sequence() -> None:
    plan = factories.measures()  # poliklinikk, fact; innleggelse after poliklinikk; bolig after
    statuses = dict.fromkeys((m.id for m in plan), PLANNED)
    assert newly_ready(plan, statuses) == ["poliklinikk", "fact"]

    statuses |= {"poliklinikk": ACTIVE, "fact": READY}
    assert newly_ready(plan, statuses) == []
    assert open_predecessors(plan[2], statuses) == ["poliklinikk"]

    statuses["poliklinikk"] = COMPLETED
    assert newly_ready(plan, statuses) == ["innleggelse"]
    # A cancelled predecessor no longer blocks.
    statuses["innleggelse"] = CANCELLED
    assert newly_ready(plan, statuses) == ["bolig"]


def test_a_revised_plan_keeps_each_measures_status_by_id() -> None:
    old = {"poliklinikk": ACTIVE, "fact": COMPLETED, "gone": READY}
    revised = [_measure("poliklinikk"), _measure("fact"), _measure("new", "poliklinikk")]
    assert carry_statuses(revised, old) == {
        "poliklinikk": ACTIVE,
        "fact": COMPLETED,
        "new": PLANNED,
    }
