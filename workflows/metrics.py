"""Counters the pathway workflow adds to the worker's metrics (`rop_runtime.metrics`).

They go through the SDK's workflow metric meter, which records nothing while a history is
replayed: a step counts once, however often its pathway is rebuilt from history. Labels
are Update names, task kinds and outcomes, never an id.
"""

from temporalio import workflow

TIMER = "timer"
"""The `step` label of a step a timer takes (a reminder, an escalation, a review due)."""


def count_step(outcome: str) -> None:
    """One pathway step, by the Update that sent it (or `timer`) and its outcome: `applied`,
    `refused` by the record, or `rejected` as no longer fitting the pathway."""
    update = workflow.current_update_info()
    workflow.metric_meter().create_counter(
        "rop_pathway_steps", "pathway steps by Update and outcome"
    ).add(1, {"step": update.name if update is not None else TIMER, "outcome": outcome})


def count_chase(stage: str, task_kind: str) -> None:
    """A reminder or an escalation raised (`stage`), by the kind of task it raised."""
    workflow.metric_meter().create_counter(f"rop_{stage}s", f"{stage}s raised, by task kind").add(
        1, {"kind": task_kind}
    )
