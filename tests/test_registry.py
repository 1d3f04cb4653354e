"""The step registry and the task table held together, without servers.

Adding a step is one registry entry (`rop_domain/steps.py`), one Update handler in
`workflows/pathway.py` and one CLI options function (`starter/cli_steps.CLI_STEPS`); a task
kind is one entry of the task table (`rop_domain/tasks.py`) and a template in each language.
A piece forgotten used to surface as a KeyError that broke every `rop` command, or a 500 at
request time: here it fails first, naming what is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio import workflow

from rop_domain.steps import STEP, STEPS, StepName
from rop_domain.tasks import TASKS, TaskKind
from starter.api.routes_tasks import COMPLETION_FIELDS, TaskCompletion
from starter.cli_steps import CLI_STEPS
from workflows.pathway import RopPathway

TEMPLATES = Path(__file__).resolve().parent.parent / "activities" / "templates"


def _update_names() -> set[str]:
    """The Update names the workflow class handles, as the SDK reads its definition."""
    updates = workflow._Definition.must_from_class(RopPathway).updates
    return {name for name in updates if name is not None}


def test_every_step_has_its_entry_handler_and_command() -> None:
    assert [step.name for step in STEPS] == list(StepName)
    handled = _update_names()
    missing_handlers = [step.name.value for step in STEPS if step.name.value not in handled]
    assert missing_handlers == [], "steps without an Update handler in workflows/pathway.py"
    assert sorted(CLI_STEPS) == sorted(StepName), "steps without CLI options (cli_steps)"
    commands = [step.command for step in STEPS]
    assert len(set(commands)) == len(commands), "two steps share a `rop` command"
    paths = [step.http_path for step in STEPS]
    assert len(set(paths)) == len(paths), "two steps share an HTTP path"
    for step in STEPS:
        assert step.actor_field in step.body.model_fields, step.name


def test_every_task_kind_has_its_rule_and_templates() -> None:
    assert sorted(TASKS) == sorted(TaskKind), "task kinds without a rule in rop_domain/tasks.py"
    for language in ("nb", "nn"):
        missing = [
            k.value for k in TaskKind if not (TEMPLATES / language / f"{k.value}.txt").is_file()
        ]
        assert missing == [], f"task kinds without a {language} template"


@pytest.mark.parametrize("kind", list(TaskKind), ids=[k.value for k in TaskKind])
def test_a_task_done_by_a_step_can_be_completed_with_it(kind: TaskKind) -> None:
    rule = TASKS[kind]
    if rule.done_by is None:
        return  # the task only informs: completing it marks it read
    assert rule.done_by in STEP
    field = COMPLETION_FIELDS.get(rule.done_by)
    assert field is not None, f"{kind.value} is done by {rule.done_by}, which no completion carries"
    assert field in TaskCompletion.model_fields
    for closer in rule.closed_by:
        assert closer in STEP, f"{kind.value} is closed by {closer}, which is no step"
