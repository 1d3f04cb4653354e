"""The plan of measures: validation and sequencing, as pure functions.

Measures without open predecessors run in parallel; the others start as their
predecessors complete. A cancelled predecessor no longer blocks: the clinician
cancels or revises its dependants explicitly if they lose their point.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from rop_domain.followup import Measure


class MeasureStatus(StrEnum):
    """Where one measure stands."""

    PLANNED = "planned"  # waiting for predecessors
    READY = "ready"  # may start; its provider has a task
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


SETTLED = frozenset({MeasureStatus.COMPLETED, MeasureStatus.CANCELLED})


class PlanError(ValueError):
    """The plan or the step is not valid; the message says why."""


def validate_plan(measures: Iterable[Measure]) -> None:
    """Refuse duplicate ids, unknown predecessors and cycles."""
    by_id: dict[str, Measure] = {}
    for measure in measures:
        if measure.id in by_id:
            raise PlanError(f"measure id {measure.id} is used twice")
        by_id[measure.id] = measure
    for measure in by_id.values():
        unknown = [dep for dep in measure.depends_on if dep not in by_id]
        if unknown:
            raise PlanError(
                f"measure {measure.id} depends on unknown measure(s): {', '.join(unknown)}"
            )
    cycle = _find_cycle(by_id)
    if cycle:
        raise PlanError(f"measures depend on each other in a cycle: {' -> '.join(cycle)}")


def _find_cycle(by_id: Mapping[str, Measure]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(measure_id: str) -> list[str] | None:
        if measure_id in visiting:
            return [*visiting[visiting.index(measure_id) :], measure_id]
        if measure_id in done:
            return None
        visiting.append(measure_id)
        for dependency in by_id[measure_id].depends_on:
            cycle = visit(dependency)
            if cycle:
                return cycle
        visiting.pop()
        done.add(measure_id)
        return None

    for measure_id in sorted(by_id):
        cycle = visit(measure_id)
        if cycle:
            return cycle
    return None


def open_predecessors(measure: Measure, statuses: Mapping[str, MeasureStatus]) -> list[str]:
    """The predecessors of `measure` that have not completed or been cancelled."""
    return [dep for dep in measure.depends_on if statuses.get(dep) not in SETTLED]


def newly_ready(measures: Iterable[Measure], statuses: Mapping[str, MeasureStatus]) -> list[str]:
    """Planned measures whose predecessors are all settled: they may start now."""
    return [
        m.id
        for m in measures
        if statuses.get(m.id) is MeasureStatus.PLANNED and not open_predecessors(m, statuses)
    ]


def carry_statuses(
    new_plan: Iterable[Measure], old: Mapping[str, MeasureStatus]
) -> dict[str, MeasureStatus]:
    """Statuses for a revised plan: a measure keeps its status by id, new ones are planned."""
    return {m.id: old.get(m.id, MeasureStatus.PLANNED) for m in new_plan}
