"""The benchmark's baselines: as many Updates as a pathway, each running a no-op activity,
as a regular activity (`BaselinePathway`) or as a local one (`FloorPathway`).

The pathway records each step through a local activity, so the local one is the honest
floor: the same round trips, done the cheapest way. The regular one also pays the server for
an activity task per step, which the pathway does not. Used only by `make bench`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from bench.floor_record import FloorRecord, FloorStep

UPDATES_PER_PATHWAY = 6


@activity.defn
async def baseline_noop(step: int) -> int:
    """Does nothing: the floor of an activity round trip."""
    return step


async def every_update_answered(steps: Callable[[], int]) -> int:
    """Wait until `UPDATES_PER_PATHWAY` Updates came and each was answered: a baseline's run."""
    await workflow.wait_condition(lambda: steps() >= UPDATES_PER_PATHWAY)
    await workflow.wait_condition(workflow.all_handlers_finished)
    return steps()


@workflow.defn(name="BaselinePathway")
class BaselinePathway:
    """Completes after `UPDATES_PER_PATHWAY` Updates, each running one no-op activity."""

    def __init__(self) -> None:
        self._steps = 0

    @workflow.run
    async def run(self) -> int:
        return await every_update_answered(lambda: self._steps)

    @workflow.update
    async def step(self) -> int:
        self._steps += 1
        return await workflow.execute_activity(
            baseline_noop, self._steps, start_to_close_timeout=timedelta(seconds=30)
        )


@workflow.defn(name="FloorPathway")
class FloorPathway:
    """Completes after `UPDATES_PER_PATHWAY` Updates, each running one no-op local activity:
    what a pathway's Updates cost at least, each recording through a local activity."""

    def __init__(self) -> None:
        self._steps = 0

    @workflow.run
    async def run(self) -> int:
        return await every_update_answered(lambda: self._steps)

    @workflow.update
    async def step(self) -> int:
        self._steps += 1
        return await workflow.execute_local_activity(
            baseline_noop, self._steps, start_to_close_timeout=timedelta(seconds=30)
        )


@workflow.defn(name="RecordingFloorPathway")
class RecordingFloorPathway:
    """The floor that records as the pathway does, the cheapest way: a row when it starts
    (the pathway's intake) and a row per Update, each written by a local activity."""

    def __init__(self) -> None:
        self._steps = 0
        self._opened = False

    @workflow.run
    async def run(self) -> int:
        await self._record(0)
        self._opened = True
        return await every_update_answered(lambda: self._steps)

    @workflow.update
    async def step(self) -> int:
        await workflow.wait_condition(lambda: self._opened)  # as a step waits for the intake
        self._steps += 1
        return await self._record(self._steps)

    async def _record(self, step: int) -> int:
        return await workflow.execute_local_activity_method(
            FloorRecord.write,
            FloorStep(workflow.info().workflow_id, step),
            start_to_close_timeout=timedelta(seconds=30),
        )


PHASE = SearchAttributeKey.for_keyword("RopPhase")
"""A keyword search attribute the pathway upserts (any registered one would do)."""

ANSWER_BYTES = 3_800
"""About a pathway's status as an Update answers it (JSON, before encryption)."""


class Feature(enum.StrEnum):
    """What a variant adds to the floor."""

    NONE = "floor"
    UPSERT = "search-attribute upsert per Update"
    TIMER = "timer started, cancelled by the next Update"
    ANSWER = f"{ANSWER_BYTES}-byte answer per Update"
    PATCH = "one patch marker per run"
    ALL = "all four"


@workflow.defn(name="CostVariant")
class CostVariant:
    """The floor, plus `features`: completes after `UPDATES_PER_PATHWAY` Updates, each running
    a no-op local activity."""

    def __init__(self) -> None:
        self._steps = 0
        self._features: set[Feature] = set()
        self._waiting: list[asyncio.Task[None]] = []

    @workflow.run
    async def run(self, features: list[Feature]) -> int:
        self._features = set(features)
        if Feature.PATCH in self._features:
            workflow.patched("bench-costs")
        return await every_update_answered(lambda: self._steps)

    @workflow.update
    async def step(self) -> str:
        self._steps += 1
        await workflow.execute_local_activity(
            baseline_noop, self._steps, start_to_close_timeout=timedelta(seconds=30)
        )
        if Feature.UPSERT in self._features:
            workflow.upsert_search_attributes([PHASE.value_set(f"step-{self._steps}")])
        if Feature.TIMER in self._features and self._steps < UPDATES_PER_PATHWAY:
            self._waiting.append(asyncio.create_task(self._until_next_step(self._steps)))
        return "x" * ANSWER_BYTES if Feature.ANSWER in self._features else "ok"

    async def _until_next_step(self, step: int) -> None:
        """A deadline days away that the next Update settles: its timer is cancelled then."""
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self._steps > step, timeout=timedelta(days=10))
