"""Replay the kept histories against today's workflow code: a non-deterministic change fails.

The histories in tests/histories/ were recorded from the workflow tests
(`make histories`). Re-record them only for an intended, patched change.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from tests.conftest import DATA_CONVERTER
from workflows.pathway import RopPathway
from workflows.sandbox import workflow_runner

HISTORIES = sorted((Path(__file__).resolve().parent / "histories").glob("*.json"))


def test_histories_are_kept_for_every_tested_path() -> None:
    assert {path.stem for path in HISTORIES} >= {
        "invite_on_time",
        "reminder",
        "escalation",
        "not_in_target_group",
        "crisis_plan_escalation",
        "measures",
    }


@pytest.mark.parametrize("path", HISTORIES, ids=[path.stem for path in HISTORIES])
async def test_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(f"rop-replay-{path.stem}", path.read_text(encoding="utf-8"))
    replayer = Replayer(
        workflows=[RopPathway], data_converter=DATA_CONVERTER, workflow_runner=workflow_runner()
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
