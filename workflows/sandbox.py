"""The workflow sandbox as the pathway needs it.

`rop_domain` is pure and deterministic (its holiday table is computed once at
import, outside any workflow), and the workflow's helper modules hold no state of
their own (they act through `temporalio.workflow` calls), so they pass through the
sandbox rather than being re-imported for every workflow run and every
continue-as-new. Only `workflows.pathway`, the workflow definition, is sandboxed.
The worker and the replayer use the same runner.
"""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSTHROUGH_MODULES = (
    "rop_domain",
    "activities",
    "workflows.effects",
    "workflows.messages",
    "workflows.search_attributes",
    "workflows.status_view",
    "workflows.timers",
)


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandboxed runner with our pass-through modules."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    )
