"""The workflow sandbox as the pathway needs it.

`rop_domain` is pure and deterministic (its holiday table is computed once at
import, outside any workflow), so it passes through the sandbox rather than being
re-imported for every workflow run. The worker and the replayer use the same runner.
"""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSTHROUGH_MODULES = ("rop_domain",)


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandboxed runner with our pass-through modules."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    )
