"""End to end: the real Temporal dev server, PostgreSQL, the worker and the `rop` CLI."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from tests import factories
from tests.cli_harness import Cli
from tests.conftest import REPO, TEST_KEYS_ENV
from tests.pathway_harness import applied_events, settled
from worker import build_worker
from workflows import search_attributes


@pytest_asyncio.fixture
async def cli(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool, database_url: str
) -> AsyncIterator[Cli]:
    task_queue = f"rop-e2e-{uuid.uuid4().hex[:8]}"
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(Path.home())),
        "ROP_TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
        "ROP_TASK_QUEUE": task_queue,
        "DATABASE_URL": database_url,
        "ROP_ALLOW_SYNTHETIC_IDS": "true",
        "ROP_LOG_FORMAT": "json",
        "ROP_PAYLOAD_KEYS": TEST_KEYS_ENV,
    }
    async with build_worker(dev_server.client, pool, task_queue):
        yield Cli(environment)


def _write(tmp_path: Path, data: object) -> str:
    path = tmp_path / f"{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


async def _history_length(client: Client, workflow_id: str) -> int:
    return await applied_events(client.get_workflow_handle(workflow_id))


async def test_cli_drives_a_pathway_from_referral_to_meeting(
    cli: Cli, dev_server: WorkflowEnvironment, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    client = dev_server.client
    data = factories.referral_data(datetime.now(UTC))
    referral_file = _write(tmp_path, data)

    code, out, _ = await cli("referral", "submit", referral_file)
    assert code == 0
    workflow_id = out.strip().splitlines()[-1]
    assert workflow_id == f"rop-{data['referral_id']}"

    code, again, err = await cli("referral", "submit", referral_file)
    assert (code, again.strip()) == (0, workflow_id)
    assert "exists already" in err

    # A step the pathway is not ready for: one clear line, and history untouched.
    await settled(client.get_workflow_handle(workflow_id))
    before = await _history_length(client, workflow_id)
    code, out, err = await cli(
        "meeting",
        workflow_id,
        "--by",
        "x",
        "--held-at",
        datetime.now(UTC).isoformat(),
        "--attendee",
        "TSB",
        "--koordinator",
        "x",
        "--individual-plan",
        "offered",
        "--crisis-plan-responsible",
        "x",
    )
    assert code == 1
    assert out == ""
    assert err.strip().splitlines()[-1] == (
        "error: no meeting has been invited to yet (phase: awaiting-assessment)"
    )
    assert await _history_length(client, workflow_id) == before

    code, out, _ = await cli(
        "assess",
        workflow_id,
        "--assessor",
        factories.CLINICIAN,
        "--decision",
        "in-target-group",
        "--reason",
        "ROP-problematikk",
    )
    assert code == 0
    assert json.loads(out)["phase"] == "awaiting-invite"

    meeting_at = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    measures_file = _write(tmp_path, [m.model_dump(mode="json") for m in factories.measures()])
    code, out, _ = await cli(
        "invite",
        workflow_id,
        "--by",
        factories.CLINICIAN,
        "--at",
        meeting_at,
        "--location",
        "DPS, møterom 2",
        "--recommended",
    )
    assert code == 0
    invited = json.loads(out)
    assert invited["phase"] == "meeting-invited"
    assert invited["invite"]["on_time"] is True
    assert len(invited["invite"]["invite"]["participants"]) == 4

    code, out, _ = await cli(
        "meeting",
        workflow_id,
        "--by",
        factories.CLINICIAN,
        "--held-at",
        datetime.now(UTC).isoformat(),
        "--attendee",
        "PHV",
        "--attendee",
        "TSB",
        "--koordinator",
        factories.KOORDINATOR,
        "--individual-plan",
        "accepted",
        "--crisis-plan-responsible",
        factories.CRISIS_PLAN_RESPONSIBLE,
        "--measures",
        measures_file,
    )
    assert code == 0
    assert json.loads(out)["phase"] == "follow-up"

    code, out, _ = await cli("status", workflow_id)
    status = json.loads(out)
    assert status["phase"] == "follow-up"
    assert status["done"][-1].startswith("meeting held")
    assert [m["status"] for m in status["measures"]] == [
        "ready",
        "ready",
        "planned",
        "planned",
    ]

    code, out, _ = await cli(
        "measure", "start", workflow_id, "poliklinikk", "--by", factories.CLINICIAN
    )
    assert code == 0
    code, _, err = await cli("measure", "start", workflow_id, "bolig", "--by", factories.CLINICIAN)
    assert (code, err.strip()) == (1, "error: measure bolig waits for: innleggelse")
    today = datetime.now(UTC).date()
    code, out, _ = await cli(
        "crisis-plan",
        workflow_id,
        "--by",
        factories.CRISIS_PLAN_RESPONSIBLE,
        "--version",
        "1",
        "--made-with-patient",
        "--next-revision",
        (today + timedelta(days=90)).isoformat(),
    )
    assert code == 0
    assert json.loads(out)["crisis_plan"]["current"]["version"] == 1
    code, out, _ = await cli(
        "close", workflow_id, "--by", factories.CLINICIAN, "--reason", "transferred"
    )
    assert code == 0
    assert json.loads(out)["phase"] == "closed"

    row = await pool.fetchrow(
        "SELECT phase, invited_on_time FROM pathways WHERE workflow_id = $1", workflow_id
    )
    assert row is not None
    assert (row["phase"], row["invited_on_time"]) == ("closed", True)

    query = (
        f'WorkflowId = "{workflow_id}" AND RopPhase = "closed" AND RopOverdue = false '
        'AND RopHealthTrust = "helse-bergen" AND RopHasCrisisPlan = true'
    )
    for _ in range(50):
        found = [w.id async for w in client.list_workflows(query)]
        if found:
            break
        await asyncio.sleep(0.2)
    assert found == [workflow_id]

    code, out, _ = await cli("tasks", workflow_id, "--all")
    assert code == 0
    assert "assess-referral" in out
    assert "completed" in out
    assert data["patient"]["national_id"] not in out


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"source": "legevakt"}, "error: invalid referral: source: Input should be"),
        (
            {"received_at": "2026-04-01T09:00:00"},
            "error: invalid referral: received_at: Input should have timezone info",
        ),
        (
            {"patient": {"reference": "p1", "national_id": "15058695171"}},
            "error: invalid referral: patient.national_id: Value error, check digits",
        ),
    ],
)
async def test_bad_referrals_are_refused_with_one_line_and_start_nothing(
    cli: Cli,
    dev_server: WorkflowEnvironment,
    tmp_path: Path,
    change: dict[str, object],
    expected: str,
) -> None:
    data = factories.referral_data(datetime.now(UTC)) | change
    code, out, err = await cli("referral", "submit", _write(tmp_path, data))
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(expected)
    with pytest.raises(RPCError):
        await dev_server.client.get_workflow_handle(f"rop-{data['referral_id']}").describe()


async def test_malformed_json_and_unknown_pathways_get_one_line(cli: Cli, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"referral_id": "R-1", ', encoding="utf-8")
    code, _, err = await cli("referral", "submit", str(broken))
    assert code == 1
    assert err.strip().startswith("error: invalid referral: input: Invalid JSON")

    code, _, err = await cli("status", "rop-no-such-referral")
    assert (code, err.strip()) == (1, "error: no pathway with id rop-no-such-referral")


def _task_ids(listing: str, kind: str) -> list[int]:
    return [int(line.split()[0]) for line in listing.splitlines() if f" {kind} " in line]


async def test_clinicians_complete_tasks_and_the_pathway_moves(
    cli: Cli, dev_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    data = factories.referral_data(datetime.now(UTC))
    code, out, _ = await cli("referral", "submit", _write(tmp_path, data))
    workflow_id = out.strip().splitlines()[-1]
    for _ in range(50):
        code, listing, _ = await cli("tasks", workflow_id, "--assignee", factories.CLINICIAN)
        if _task_ids(listing, "assess-referral"):
            break
        await asyncio.sleep(0.2)
    [assess_task] = _task_ids(listing, "assess-referral")

    code, out, _ = await cli(
        "task",
        "complete",
        str(assess_task),
        "--assessor",
        factories.CLINICIAN,
        "--decision",
        "in-target-group",
        "--reason",
        "ROP",
    )
    assert code == 0
    assert json.loads(out)["phase"] == "awaiting-invite"
    code, _, err = await cli("task", "complete", str(assess_task))
    assert (code, err.strip()) == (1, f"error: task {assess_task} is already completed")

    meeting_at = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    await cli(
        "invite",
        workflow_id,
        "--by",
        factories.CLINICIAN,
        "--at",
        meeting_at,
        "--location",
        "DPS",
        "--recommended",
    )
    # An invitation informs; its recipient marks it read until the meeting completes it.
    code, listing, _ = await cli("tasks", workflow_id)
    invitation = _task_ids(listing, "meeting-invitation")[0]
    code, out, _ = await cli("task", "complete", str(invitation))
    assert (code, out.strip()) == (0, f"task {invitation} completed")
    code, listing, _ = await cli("tasks", workflow_id, "--all")
    assert f"{invitation}  {workflow_id}  meeting-invitation" in listing
    [line] = [row for row in listing.splitlines() if row.split()[0] == str(invitation)]
    assert " completed " in line
    measures_file = _write(tmp_path, [m.model_dump(mode="json") for m in factories.measures()])
    code, _, err = await cli(
        "meeting",
        workflow_id,
        "--by",
        factories.CLINICIAN,
        "--held-at",
        datetime.now(UTC).isoformat(),
        "--attendee",
        "TSB",
        "--koordinator",
        factories.KOORDINATOR,
        "--individual-plan",
        "offered",
        "--crisis-plan-responsible",
        factories.CRISIS_PLAN_RESPONSIBLE,
        "--measures",
        measures_file,
    )
    assert code == 0, err
    code, listing, _ = await cli("tasks", workflow_id)
    [start_poliklinikk] = [
        int(line.split()[0])
        for line in listing.splitlines()
        if " start-measure " in line and "tiltak poliklinikk" in line
    ]
    code, out, _ = await cli(
        "task", "complete", str(start_poliklinikk), "--by", factories.CLINICIAN
    )
    assert code == 0
    measures = {m["id"]: m["status"] for m in json.loads(out)["measures"]}
    assert measures["poliklinikk"] == "active"

    code, overdue, _ = await cli("tasks", "--unit", "helse-bergen:TSB", "--overdue", workflow_id)
    assert (code, overdue) == (0, f"no overdue open task of {workflow_id} in helse-bergen:TSB\n")
    await cli("close", workflow_id, "--by", factories.CLINICIAN, "--reason", "completed")


async def test_search_attributes_are_registered_once(dev_server: WorkflowEnvironment) -> None:
    from starter.local_stack import ensure_search_attributes

    # start_local registered them all; a later start (an upgraded stack) adds only what lacks.
    assert await ensure_search_attributes(dev_server.client, search_attributes.ALL) == []


async def test_a_fhir_service_request_file_is_submitted_like_a_referral(
    cli: Cli, tmp_path: Path
) -> None:
    example = REPO / "deploy" / "seed" / "service-request.example.json"
    resource = json.loads(example.read_text(encoding="utf-8"))
    resource["identifier"][0]["value"] = f"FHIR-CLI-{uuid.uuid4().hex[:8]}"
    resource["authoredOn"] = datetime.now(UTC).isoformat()
    code, out, err = await cli("referral", "submit", _write(tmp_path, resource))
    assert code == 0, err
    assert out.strip() == f"rop-{resource['identifier'][0]['value']}"

    del resource["performerType"]
    code, _, err = await cli("referral", "submit", _write(tmp_path, resource))
    assert code == 1
    assert err.startswith("error: invalid ServiceRequest: performerType: ")


async def test_control_characters_get_one_line_and_nothing_is_sent(
    cli: Cli, dev_server: WorkflowEnvironment, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    data = factories.referral_data(datetime.now(UTC))
    data["patient"]["name"] = "Kari\u0000Nordmann"
    code, out, err = await cli("referral", "submit", _write(tmp_path, data))
    assert (code, out) == (1, "")
    assert err.strip().splitlines()[-1] == (
        "error: invalid referral: patient.name: Value error, contains U+0000 at position 4: "
        "control characters (other than tab, newline and carriage return) and unpaired "
        "surrogates are not accepted"
    )
    with pytest.raises(RPCError, match="not found"):
        await dev_server.client.get_workflow_handle(f"rop-{data['referral_id']}").describe()

    data = factories.referral_data(datetime.now(UTC))
    code, out, _ = await cli("referral", "submit", _write(tmp_path, data))
    workflow_id = out.strip().splitlines()[-1]
    await settled(dev_server.client.get_workflow_handle(workflow_id))
    before = await _history_length(dev_server.client, workflow_id)
    assess = ["assess", workflow_id, "--assessor", factories.CLINICIAN, "--decision"]
    code, out, err = await cli(*assess, "in-target-group", "--reason", "a\x1bb")
    assert (code, out) == (1, "")
    assert "reason: Value error, contains U+001B at position 1" in err
    measures = [m.model_dump(mode="json") for m in factories.measures()]
    measures[1]["description"] = "hjem\u0000"
    code, _, err = await cli(
        "plan", "revise", workflow_id, "--by", "x", "--reason", "y",
        "--measures", _write(tmp_path, measures),
    )  # fmt: skip
    assert code == 1
    assert "invalid measures file: 1.description: Value error, contains U+0000" in err
    assert await _history_length(dev_server.client, workflow_id) == before
    assert not await pool.fetchval(
        "SELECT count(*) FROM pathway_events WHERE workflow_id = $1 AND kind <> 'referral-received'",
        workflow_id,
    )


async def test_a_file_that_gives_a_key_twice_is_refused_naming_it(
    cli: Cli, dev_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    data = factories.referral_data(datetime.now(UTC))
    body = json.dumps(data).replace('"patient": {', '"patient": {"national_id": "12345678901", ', 1)
    twice = tmp_path / "twice.json"
    twice.write_text(body, encoding="utf-8")
    code, out, err = await cli("referral", "submit", str(twice))
    assert (code, out) == (1, "")
    assert err.strip().splitlines()[-1] == (
        "error: invalid referral file: 'national_id' is given more than once in one JSON object"
    )
    with pytest.raises(RPCError, match="not found"):
        await dev_server.client.get_workflow_handle(f"rop-{data['referral_id']}").describe()


async def test_a_step_that_timed_out_is_sent_again_with_its_key_and_applied_once(
    cli: Cli, dev_server: WorkflowEnvironment, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    # A task queue no worker polls yet: the pathway cannot answer.
    idle = Cli({**cli.env, "ROP_TASK_QUEUE": f"rop-idle-{uuid.uuid4().hex[:8]}"})
    queue = idle.env["ROP_TASK_QUEUE"]
    waiting = Cli({**idle.env, "ROP_ANSWER_TIMEOUT_SECONDS": "2"})
    data = factories.referral_data(datetime.now(UTC))
    code, out, _ = await idle("referral", "submit", _write(tmp_path, data))
    workflow_id = out.strip().splitlines()[-1]
    assess = ["assess", workflow_id, "--assessor", factories.CLINICIAN, "--decision"]
    code, _, err = await waiting(*assess, "in-target-group", "--reason", "ROP")
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert "did not answer within 2 s" in last
    assert "run the command again with --idempotency-key " in last
    key = last.split("--idempotency-key ")[1].split()[0]

    async with build_worker(dev_server.client, pool, queue):
        code, out, err = await idle(
            *assess, "in-target-group", "--reason", "ROP", "--idempotency-key", key
        )
        assert code == 0, err
        assert json.loads(out)["phase"] == "awaiting-invite"
        code, again, _ = await idle(
            *assess, "in-target-group", "--reason", "ROP", "--idempotency-key", key
        )
        assert code == 0
        assert json.loads(again)["assessment"] == json.loads(out)["assessment"]
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM pathway_events WHERE workflow_id = $1 AND kind = 'assessed'",
                workflow_id,
            )
            == 1
        )
        code, _, _ = await idle("close", workflow_id, "--by", "x", "--reason", "completed")
        assert code == 0
