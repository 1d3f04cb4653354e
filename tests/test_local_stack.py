"""What `make run` leaves for its users: the database URL the `rop` commands find, and a
welcome that gives the demo's next steps from where the demo pathway stands."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from rop_domain import deadlines
from rop_domain.deadlines import PathwaySettings
from rop_domain.models import Phase
from rop_domain.state import PathwayState
from rop_domain.view import PathwayStatus
from rop_runtime.settings import RopSettings
from starter.local_stack import dev_server_environment
from starter.stack import welcome, write_local_database_url
from tests import factories
from tests.cli_harness import Cli
from workflows import status_view

RECEIVED = datetime(2026, 11, 23, 9, 15, tzinfo=UTC)


async def test_the_rop_commands_find_the_running_stacks_database(
    database_url: str, tmp_path: Path
) -> None:
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    cli = Cli({**environment, "ROP_DATA_DIR": str(tmp_path)})
    code, _, err = await cli("indicators")
    assert code == 1
    assert "set DATABASE_URL, or start the local stack (`make run`)" in err

    written = write_local_database_url(tmp_path, database_url)
    assert written.stat().st_mode & 0o777 == 0o600
    code, out, err = await cli("indicators")
    assert code == 0, err
    assert "Active pathways" in out

    # DATABASE_URL, where given, wins.
    written.write_text("postgresql://nobody@127.0.0.1:1/none", encoding="utf-8")
    code, _, err = await Cli({**cli.env, "DATABASE_URL": database_url})("indicators")
    assert code == 0, err


def _status(phase: Phase, *, with_crisis_plan: bool = False) -> PathwayStatus:
    state = PathwayState(phase=phase)
    if with_crisis_plan:
        state.crisis_plan = factories.crisis_plan(date(2027, 3, 1))
    meeting = deadlines.meeting_deadline(RECEIVED, PathwaySettings())
    return status_view.public_status(
        state,
        factories.parse_referral_for_test(factories.referral_data(RECEIVED)),
        status_view.Deadlines(
            meeting=meeting.day,
            meeting_reminder_at=meeting.reminder_at,
            meeting_escalation_at=meeting.escalation_at,
            crisis_plan=None,
        ),
        workflow_id="rop-T-1",
        recording_stalled=False,
    )


def _commands(text: str) -> list[str]:
    """The rop subcommands the welcome tells the user to run, in order."""
    return [
        line.split()[1]
        for line in text.splitlines()
        if line.strip().startswith(".venv/bin/rop ") and "rop-T-1" in line
    ]


def test_the_welcome_gives_the_steps_from_where_the_demo_stands() -> None:
    settings = RopSettings(worker_metrics_address="127.0.0.1:9464")  # as the stack sets it
    fresh = welcome(_status(Phase.AWAITING_ASSESSMENT), True, "postgresql:///rop", settings)
    assert _commands(fresh)[:5] == ["status", "assess", "invite", "meeting", "crisis-plan"]
    assert "(started)" in fresh
    assert "--detailed" in fresh  # a decoded history, not only the event table
    assert "curl -s http://127.0.0.1:9464/metrics" in fresh

    planned = welcome(
        _status(Phase.FOLLOW_UP, with_crisis_plan=True), False, "postgresql:///rop", settings
    )
    follow_up = _commands(planned)
    assert follow_up[:4] == ["status", "measure", "review", "close"]
    assert "kept in .rop/ from an earlier run, follow-up" in planned

    ended = welcome(_status(Phase.CLOSED), False, "postgresql:///rop", settings)
    assert "The demo pathway has ended (closed)" in ended
    assert [c for c in _commands(ended) if c not in {"tasks", "access-log"}] == []


def test_the_dev_server_does_not_get_our_tracing_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The dev server reads OTEL_* itself and refuses to start with `console`.
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "rop-local-stack")
    environment = dev_server_environment()
    assert not [name for name in environment if name.startswith("OTEL_")]
    assert environment["PATH"] == os.environ["PATH"]
