"""How the worker runs workflow code: plainly, or in Temporal's sandbox.

Workflow code must be deterministic: the same history must lead to the same commands
on every replay, on any worker, years later. Temporal's Python sandbox checks some of
that at run time (it refuses `datetime.now()`, `random`, I/O) by importing the workflow
module afresh for every run and proxying restricted modules; measured with `make bench`
it costs the worker about a fifth of its CPU per pathway (README, "Determinism").

So production runs workflows without it (`ROP_WORKER_SANDBOX` turns it back on), and
determinism is guarded where it is cheap and certain instead:

- ruff bans wall-clock time, randomness, threads and I/O libraries in `workflows/` and
  `rop_domain/` (`workflows/ruff.toml`, `rop_domain/ruff.toml`);
- `tests/test_determinism.py` checks that importing the workflow imports no I/O library,
  and runs a whole pathway in the sandbox, so what the sandbox refuses fails CI;
- `tests/test_replay.py` replays every kept history, with and without the sandbox.

In the sandbox, `rop_domain` and the workflow's helper modules pass through: they are
pure, hold no state of their own, and need not be imported for every run.
"""

from __future__ import annotations

from temporalio.worker import UnsandboxedWorkflowRunner, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSTHROUGH_MODULES = (
    "rop_domain",
    "workflows.effects",
    "workflows.metrics",
    "workflows.patches",
    "workflows.search_attributes",
    "workflows.status_view",
    "workflows.timers",
    "opentelemetry",  # the tracing interceptor's, when tracing is on (rop_runtime.tracing)
)


def sandboxed_runner() -> SandboxedWorkflowRunner:
    """The sandboxed runner with our pass-through modules."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    )


def workflow_runner(sandboxed: bool = False) -> WorkflowRunner:
    """The runner the worker uses: unsandboxed unless `sandboxed` (`ROP_WORKER_SANDBOX`)."""
    return sandboxed_runner() if sandboxed else UnsandboxedWorkflowRunner()


def runner_name(sandboxed: bool) -> str:
    """How workflows run, for logs and benchmarks."""
    return "sandboxed" if sandboxed else "unsandboxed"
