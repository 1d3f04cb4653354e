"""The benchmark's baselines: as many Updates as a pathway, each running a no-op activity,
as a regular activity (`BaselinePathway`) or as a local one (`FloorPathway`).

The pathway records each step through a local activity, so the local one is the honest
floor: the same round trips, done the cheapest way. The regular one also pays the server for
an activity task per step, which the pathway does not. Used only by `make bench`.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

UPDATES_PER_PATHWAY = 6


@activity.defn
async def baseline_noop(step: int) -> int:
    """Does nothing: the floor of an activity round trip."""
    return step


@workflow.defn(name="BaselinePathway")
class BaselinePathway:
    """Completes after `UPDATES_PER_PATHWAY` Updates, each running one no-op activity."""

    def __init__(self) -> None:
        self._steps = 0

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self._steps >= UPDATES_PER_PATHWAY)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._steps

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
        await workflow.wait_condition(lambda: self._steps >= UPDATES_PER_PATHWAY)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._steps

    @workflow.update
    async def step(self) -> int:
        self._steps += 1
        return await workflow.execute_local_activity(
            baseline_noop, self._steps, start_to_close_timeout=timedelta(seconds=30)
        )
