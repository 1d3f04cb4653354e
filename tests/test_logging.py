"""Logs are structlog JSON lines that carry the workflow and activity context, not patient data."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from rop_domain.models import AssessmentDecision
from rop_domain.steps import StepName
from rop_runtime.logs import configure_logging
from tests import factories
from tests.pathway_harness import running_pathways, start


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def test_workflow_and_activity_logs_carry_context_and_no_personal_data(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    configure_logging("json")
    client = time_skipping_env.client
    data = factories.referral_data(await time_skipping_env.get_current_time())
    async with running_pathways(client, pool, task_queue) as api:
        workflow_id, handle = await start(client, api, data)
        await api.send(
            StepName.ASSESS,
            workflow_id,
            factories.assessment(AssessmentDecision.NOT_IN_TARGET_GROUP),
        )
        await handle.result()

    captured = capsys.readouterr().err
    lines = _json_lines(captured)
    started = [line for line in lines if line["event"] == "pathway started"]
    assert len(started) == 1
    assert started[0]["workflow_id"] == workflow_id
    assert started[0]["run_id"]
    assert started[0]["level"] == "info"
    assert started[0]["timestamp"]
    opened = [line for line in lines if line["event"] == "pathway opened"]
    assert opened
    assert opened[0]["activity_type"] == "open_pathway"
    assert opened[0]["workflow_id"] == workflow_id
    assert data["patient"]["national_id"] not in captured
    assert data["patient"]["reference"] not in captured
    assert factories.PATIENT_NAME not in captured


async def test_personal_data_and_secrets_are_masked_in_every_log(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    import structlog

    configure_logging("json")
    national_id = factories.national_id("150586951")
    spaced = f"{national_id[:6]} {national_id[6:]}"
    structlog.get_logger("starter.cli").info(
        "referral refused",
        note=f"bad number {national_id}",
        national_id=national_id,
        password="hunter2",
        referral_id="R-2026-0042",
    )
    logging.getLogger("temporalio.activity").warning(
        "activity saw %s", spaced, extra={"patient": {"reference": "p", "national_id": national_id}}
    )
    captured = capsys.readouterr().err
    lines = _json_lines(captured)
    assert len(lines) == 2
    assert national_id not in captured
    assert spaced not in captured
    assert "hunter2" not in captured
    assert lines[0]["referral_id"] == "R-2026-0042"  # ids that are not personal stay
    assert lines[0]["note"] == "bad number [redacted]"
    assert lines[1]["event"] == "activity saw [redacted]"
