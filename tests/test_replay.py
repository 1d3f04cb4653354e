"""Replay the kept histories against today's workflow code: a non-deterministic change fails.

The histories in tests/histories/ were recorded from the workflow tests
(`make histories`). They only accumulate: each recording is added beside the earlier
ones, none is ever overwritten or removed, and every one must replay on today's code.
A change that would break one is made with `workflow.patched`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.worker import Replayer

from tests.conftest import DATA_CONVERTER
from tests.history_manifest import code_digest, current_sources, read_manifest
from tests.pathway_harness import KEPT, digest, kept_history, new_history_name
from workflows.pathway import RopPathway
from workflows.sandbox import workflow_runner

HISTORIES = sorted((Path(__file__).resolve().parent / "histories").glob("*.json"))


def test_a_new_recording_never_overwrites_a_kept_history(tmp_path: Path) -> None:
    assert new_history_name("reminder", tmp_path) == "reminder.json"
    (tmp_path / "reminder.json").write_text("{}")
    (tmp_path / "reminder.2.json").write_text("{}")
    assert new_history_name("reminder", tmp_path) == "reminder.3.json"


def test_kept_histories_are_never_changed_or_removed() -> None:
    kept: dict[str, str] = {}
    for line in KEPT.read_text(encoding="utf-8").splitlines():
        sha256, name = line.split("  ", 1)
        kept[name] = sha256
    assert sorted(kept) == [path.name for path in HISTORIES]
    for path in HISTORIES:
        assert digest(path) == kept[path.name], f"{path.name} was changed"


def test_every_kept_history_names_the_code_it_was_recorded_with() -> None:
    assert sorted(read_manifest()) == [path.name for path in HISTORIES]


def test_the_workflow_code_of_today_has_kept_histories() -> None:
    """A change to what the workflow may issue ships with histories recorded from it, so the
    next release is proven to continue the pathways it starts."""
    today = code_digest(current_sources())
    recorded = {digest for digest, _ in read_manifest().values()}
    assert today in recorded, (
        "workflows/ or rop_domain/ changed since the newest recording: run `make histories` "
        "and commit the new histories beside the kept ones"
    )


def test_histories_are_kept_for_every_tested_path() -> None:
    assert {path.name.split(".")[0] for path in HISTORIES} >= {
        "invite_on_time",
        "reminder",
        "escalation",
        "not_in_target_group",
        "crisis_plan_escalation",
        "measures",
        "review_cycles",
    }


@pytest.mark.parametrize("sandboxed", [False, True], ids=["unsandboxed", "sandboxed"])
@pytest.mark.parametrize("path", HISTORIES, ids=[path.stem for path in HISTORIES])
async def test_history_replays(path: Path, sandboxed: bool) -> None:
    """Replays as the worker runs (unsandboxed), and in the sandbox, which also refuses a
    non-deterministic call on every path the kept histories take."""
    history = kept_history(path)
    replayer = Replayer(
        workflows=[RopPathway],
        data_converter=DATA_CONVERTER,
        workflow_runner=workflow_runner(sandboxed),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def test_the_code_digest_counts_code_not_comments_or_docstrings() -> None:
    documented = {"workflows/x.py": 'def f() -> int:\n    """Why."""\n    return 1\n'}
    commented = {"workflows/x.py": "# Why.\ndef f() -> int:\n    return 1  # one\n"}
    changed = {"workflows/x.py": "def f() -> int:\n    return 2\n"}
    assert code_digest(documented) == code_digest(commented)
    assert code_digest(commented) != code_digest(changed)
