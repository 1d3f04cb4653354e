"""The HTTP API end to end: uvicorn, the Temporal dev server, a worker and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.careplan import CarePlan
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.task import Task
from temporalio.testing import WorkflowEnvironment

from rop_domain.models import Participant, ParticipantRole, ValidationPolicy, parse_referral
from rop_domain.steps import StepName
from starter.api.auth import Role
from starter.fhir import systems
from starter.pathways import Pathways
from tests import factories
from tests.api_harness import Api, problem_of
from tests.pathway_harness import applied_events, settled
from worker import build_worker

REPO = Path(__file__).resolve().parent.parent
SERVICE_REQUEST = REPO / "deploy" / "seed" / "service-request.example.json"


def _json(model: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = json.loads(model.model_dump_json())
    return dumped


async def _submit(client: httpx.AsyncClient, **overrides: Any) -> str:
    response = await client.post(
        "/referrals", json=factories.referral_data(datetime.now(UTC), **overrides)
    )
    assert response.status_code == 201, response.text
    workflow_id: str = response.json()["workflow_id"]
    assert response.headers["location"] == f"/pathways/{workflow_id}"
    return workflow_id


async def _eventually(check: Callable[[], Awaitable[bool]], seconds: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.2)


async def _history_length(dev_server: WorkflowEnvironment, workflow_id: str) -> int:
    return await applied_events(dev_server.client.get_workflow_handle(workflow_id))


async def test_a_service_drives_a_pathway_to_follow_up_over_http(
    api: Api, dev_server: WorkflowEnvironment
) -> None:
    async with api.client(Role.SYSTEM) as system, api.client(Role.CLINICIAN) as clinician:
        workflow_id = await _submit(system)
        status = await clinician.get(f"/pathways/{workflow_id}")
        assert status.status_code == 200
        assert status.json()["phase"] == "awaiting-assessment"

        # A step the pathway is not ready for: 409 with the validator's words, history unchanged.
        await settled(dev_server.client.get_workflow_handle(workflow_id))
        before = await _history_length(dev_server, workflow_id)
        early = await clinician.post(
            f"/pathways/{workflow_id}/meeting",
            json=_json(factories.meeting_held(datetime.now(UTC))),
        )
        assert early.status_code == 409
        assert "no meeting has been invited to yet" in problem_of(early)["detail"]
        assert await _history_length(dev_server, workflow_id) == before

        # Invalid input: 422 naming the field, nothing sent to the pathway.
        bad = await clinician.post(
            f"/pathways/{workflow_id}/assessment",
            json={"assessor": "9000123", "decision": "maybe", "reason": "x"},
        )
        assert bad.status_code == 422
        assert [e["field"] for e in problem_of(bad)["errors"]] == ["decision"]
        assert await _history_length(dev_server, workflow_id) == before

        assessed = await clinician.post(
            f"/pathways/{workflow_id}/assessment", json=_json(factories.assessment())
        )
        assert assessed.status_code == 200, assessed.text
        assert assessed.json()["phase"] == "awaiting-invite"
        invited = await clinician.post(
            f"/pathways/{workflow_id}/meeting-invite",
            json=_json(factories.invite(datetime.now(UTC))),
        )
        assert invited.json()["phase"] == "meeting-invited"
        held = await clinician.post(
            f"/pathways/{workflow_id}/meeting",
            json=_json(factories.meeting_held(datetime.now(UTC) - timedelta(seconds=1))),
        )
        assert held.status_code == 200, held.text
        assert held.json()["phase"] == "follow-up"
        started = await clinician.post(
            f"/pathways/{workflow_id}/measures/start",
            json={"measure_id": "poliklinikk", "by": factories.CLINICIAN},
        )
        assert started.status_code == 200, started.text
        # The crisis plan's responsible is of no unit of the pathway: the meeting named them.
        responsible = api.idp.token(
            "crisis-plan-responsible",
            ["clinician"],
            hpr=factories.CRISIS_PLAN_RESPONSIBLE,
            units=[],
        )
        async with api.client(token=responsible) as named:
            crisis = await named.post(
                f"/pathways/{workflow_id}/crisis-plan",
                json=_json(factories.crisis_plan(datetime.now(UTC).date() + timedelta(days=90))),
            )
        assert crisis.json()["crisis_plan"]["current"]["version"] == 1

        async def listed() -> bool:
            found = await clinician.get(
                "/pathways", params={"phase": "follow-up", "health_trust": "helse-bergen"}
            )
            return workflow_id in [p["workflow_id"] for p in found.json()]

        await _eventually(listed)

        closed = await system.post(
            f"/pathways/{workflow_id}/closure",
            json={"closed_by": factories.CLINICIAN, "reason": "completed"},
        )
        assert closed.json()["phase"] == "closed"
        after = await clinician.post(
            f"/pathways/{workflow_id}/objection", json={"recorded_by": factories.CLINICIAN}
        )
        assert after.status_code == 409
        assert "ended" in problem_of(after)["detail"]


async def test_unknown_pathways_and_routes_are_404_problems(api: Api) -> None:
    async with api.client(Role.CLINICIAN) as clinician:
        missing = await clinician.get("/pathways/rop-NO-SUCH-REFERRAL")
        assert missing.status_code == 404
        assert "rop-NO-SUCH-REFERRAL" in problem_of(missing)["detail"]
        step = await clinician.post(
            "/pathways/rop-NO-SUCH-REFERRAL/assessment", json=_json(factories.assessment())
        )
        assert step.status_code == 404
        bad_id = await clinician.get("/pathways/12345678901")
        assert bad_id.status_code in (404, 422)
        problem_of(bad_id)
        task = await clinician.post("/tasks/999999999/complete", json={})
        assert task.status_code == 404
        problem_of(task)


async def test_a_body_that_is_no_json_names_the_body_and_where_it_broke(api: Api) -> None:
    async with api.client(Role.CLINICIAN) as clinician:
        answer = await clinician.post(
            "/pathways/rop-NO-SUCH-REFERRAL/assessment",
            content=b'{"assessor": "9000123", "decision": ',
            headers={"Content-Type": "application/json"},
        )
    assert answer.status_code == 422
    [error] = problem_of(answer)["errors"]
    assert error["field"] == "body"
    assert error["message"].startswith("not valid JSON at character 36")
    async with api.client(Role.SYSTEM) as system:
        indicators = await system.get(
            "/indicators", params={"from_date": "2026-05-01", "to_date": "2026-04-01"}
        )
    assert indicators.status_code == 422
    assert "the period must not begin (from) after it ends (to)" in indicators.text
    assert "--from" not in indicators.text


async def test_referrals_are_refused_with_the_field_named_and_start_nothing(
    api: Api, dev_server: WorkflowEnvironment
) -> None:
    async with api.client(Role.SYSTEM) as system:
        data = factories.referral_data(datetime.now(UTC))
        data["patient"]["national_id"] = "01010112345"
        refused = await system.post("/referrals", json=data)
        assert refused.status_code == 422
        problem = problem_of(refused)
        assert [e["field"] for e in problem["errors"]] == ["patient.national_id"]
        assert "01010112345" not in refused.text  # the input is never echoed
        not_json = await system.post(
            "/referrals", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 422
        problem_of(not_json)
        xml = await system.post(
            "/referrals", content=b"<referral/>", headers={"content-type": "application/xml"}
        )
        assert xml.status_code == 415
        problem_of(xml)
        handle = dev_server.client.get_workflow_handle(f"rop-{data['referral_id']}")
        with pytest.raises(Exception, match="not found"):
            await handle.describe()


async def test_a_fhir_service_request_starts_a_pathway_and_the_bundle_validates(
    api: Api,
) -> None:
    resource = json.loads(SERVICE_REQUEST.read_text(encoding="utf-8"))
    resource["identifier"][0]["value"] = f"FHIR-{uuid.uuid4().hex[:10]}"
    resource["authoredOn"] = datetime.now(UTC).isoformat()
    async with api.client(Role.SYSTEM) as system, api.client(Role.CLINICIAN) as clinician:
        submitted = await system.post(
            "/referrals",
            content=json.dumps(resource),
            headers={"content-type": "application/fhir+json"},
        )
        assert submitted.status_code == 201, submitted.text
        workflow_id = submitted.json()["workflow_id"]
        assert workflow_id == f"rop-{resource['identifier'][0]['value']}"
        status = (await clinician.get(f"/pathways/{workflow_id}")).json()
        assert status["meeting_deadline"]

        await clinician.post(
            f"/pathways/{workflow_id}/assessment", json=_json(factories.assessment())
        )
        invite = factories.invite(
            datetime.now(UTC),
            [
                Participant(
                    role=ParticipantRole.TSB,
                    name="TSB Bergen",
                    address="tsb@example.invalid",
                    organisation="helse-bergen-tsb",
                ),
                Participant(
                    role=ParticipantRole.FASTLEGE,
                    name="Fastlegen",
                    address="fastlege@example.invalid",
                    person=factories.GP,
                ),
                Participant(
                    role=ParticipantRole.RELATIVE, name="Søster", address="soster@example.invalid"
                ),
            ],
        )
        await clinician.post(f"/pathways/{workflow_id}/meeting-invite", json=_json(invite))
        held = await clinician.post(
            f"/pathways/{workflow_id}/meeting",
            json=_json(factories.meeting_held(datetime.now(UTC) - timedelta(seconds=1))),
        )
        assert held.status_code == 200, held.text
        plan = factories.crisis_plan(datetime.now(UTC).date() + timedelta(days=90))
        registered = await system.post(f"/pathways/{workflow_id}/crisis-plan", json=_json(plan))
        assert registered.status_code == 200, registered.text

        exported = await clinician.get(f"/pathways/{workflow_id}/fhir")
        assert exported.status_code == 200
        assert exported.headers["content-type"].startswith("application/fhir+json")
        bundle = Bundle.model_validate_json(exported.content)

    resources = [entry.resource for entry in bundle.entry or []]
    careplans = [r for r in resources if isinstance(r, CarePlan)]
    appointments = [r for r in resources if isinstance(r, Appointment)]
    tasks = [r for r in resources if isinstance(r, Task)]
    assert len(careplans) == 1
    assert len(appointments) == 1
    careplan, appointment = careplans[0], appointments[0]
    measure_ids = {m.id for m in factories.measures()}
    all_details = [a.detail for a in careplan.activity or [] if a.detail is not None]
    details = [d for d in all_details if d.kind == "ServiceRequest"]
    assert {str(d.description).split(" ")[0] for d in details} == measure_ids
    # The crisis plan as a coded activity, its involvement as data, not only as a note.
    [crisis] = [
        d for d in all_details if d.code and d.code.coding and d.code.coding[0].code == "kriseplan"
    ]
    involvement = {str(e.url): e.valueBoolean for e in crisis.extension or []}
    assert involvement == {systems.MADE_WITH_PATIENT: True, systems.RELATIVES_INVOLVED: True}
    assert careplan.subject is not None
    assert careplan.subject.identifier is not None
    assert careplan.subject.identifier.value == "fhir-example-patient-1"
    assert appointment.status == "fulfilled"
    notes = [str(n.text) for n in careplan.note or []]
    assert any(
        "laget sammen med pasienten: ja" in n and "pårørende involvert: ja" in n for n in notes
    ), notes
    assert appointment.start == invite.meeting_at
    # The meeting is held: who came (its record) accepted, the others declined.
    [patient, *parties] = appointment.participant
    assert patient.actor is not None
    assert (patient.actor.type, patient.status) == ("Patient", "declined")  # not recorded
    assert [(p.actor.type, p.status) for p in parties if p.actor] == [
        ("Organization", "accepted"),  # TSB, by our id of the unit
        ("Practitioner", "accepted"),  # the GP, by HPR number
        ("RelatedPerson", "declined"),  # the sister did not come
    ]
    gp = parties[1].actor
    assert gp is not None
    assert gp.identifier is not None
    assert (gp.identifier.system, gp.identifier.value) == (systems.HPR, factories.GP)
    assert all(p.type and p.type[0].coding for p in parties)
    [encounter] = [r for r in resources if isinstance(r, Encounter)]
    assert encounter.status == "finished"
    assert encounter.appointment is not None
    assert [
        (p.individual.type, p.individual.identifier.value)
        for p in encounter.participant or []
        if p.individual and p.individual.identifier
    ] == [("Practitioner", factories.GP)]
    # An address is never an Organization's id: a task for an address is named by display.
    invitation = owners_of(tasks)["meeting-invitation"]
    assert invitation is not None
    assert (invitation.type, invitation.identifier) == (None, None)
    assert "@" in str(invitation.display)
    # People by HPR number, units by our own id; every reference typed.
    owners = owners_of(tasks)
    clinician_owner = owners["assess-referral"]
    assert clinician_owner is not None
    assert clinician_owner.identifier is not None
    assert (clinician_owner.type, clinician_owner.identifier.system) == (
        "Practitioner",
        "urn:oid:2.16.578.1.12.4.1.4.4",
    )
    performers = [p for d in details for p in d.performer or []]
    assert {p.type for p in performers} == {"Practitioner", "Organization"}
    assert {t.status for t in tasks} >= {"completed", "requested"}
    due = {
        t.code.coding[0].code: t.restriction.period.end
        for t in tasks
        if t.code and t.code.coding and t.restriction and t.restriction.period
    }
    assert due.get("make-crisis-plan") is not None
    # The bundle names the patient only by the pseudonymous reference.
    assert "01819012365" not in exported.text
    assert "Testesen" not in exported.text


def owners_of(tasks: list[Task]) -> dict[str, Any]:
    return {str(t.code.coding[0].code): t.owner for t in tasks if t.code and t.code.coding}


async def test_idempotency_key_returns_the_first_answer_and_runs_nothing_twice(
    api: Api, dev_server: WorkflowEnvironment
) -> None:
    key = uuid.uuid4().hex
    data = factories.referral_data(datetime.now(UTC))
    async with api.client(Role.SYSTEM) as system:
        first = await system.post("/referrals", json=data, headers={"Idempotency-Key": key})
        again = await system.post("/referrals", json=data, headers={"Idempotency-Key": key})
        assert (first.status_code, again.status_code) == (201, 201)
        assert again.content == first.content
        assert again.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        workflow_id = first.json()["workflow_id"]

        other = factories.referral_data(datetime.now(UTC))
        reused = await system.post("/referrals", json=other, headers={"Idempotency-Key": key})
        assert reused.status_code == 422
        assert "different request" in problem_of(reused)["detail"]

        step_key = uuid.uuid4().hex
        body = _json(factories.assessment())
        path = f"/pathways/{workflow_id}/assessment"
        one = await system.post(path, json=body, headers={"Idempotency-Key": step_key})
        await asyncio.sleep(0.5)
        length = await _history_length(dev_server, workflow_id)
        two = await system.post(path, json=body, headers={"Idempotency-Key": step_key})
        assert one.status_code == two.status_code == 200
        assert two.content == one.content
        assert await _history_length(dev_server, workflow_id) == length
        # Without the key the same step is a new request, and the pathway refuses it.
        three = await system.post(path, json=body)
        assert three.status_code == 409

    assert await api.events(workflow_id, "assessed") == 1


async def test_tasks_are_listed_and_completed_through_their_step(api: Api) -> None:
    async with api.client(Role.SYSTEM) as system, api.client(Role.CLINICIAN) as clinician:
        workflow_id = await _submit(system)

        async def assess_task() -> dict[str, Any] | None:
            found = await clinician.get("/tasks", params={"workflow_id": workflow_id})
            tasks: list[dict[str, Any]] = found.json()
            return next((t for t in tasks if t["kind"] == "assess-referral"), None)

        await _eventually(lambda: _truthy(assess_task()))
        task = await assess_task()
        assert task is not None
        assert task["status"] == "requested"

        missing = await clinician.post(f"/tasks/{task['id']}/complete", json={})
        assert missing.status_code == 422
        assert problem_of(missing)["errors"][0]["field"] == "assessment"

        done = await clinician.post(
            f"/tasks/{task['id']}/complete", json={"assessment": _json(factories.assessment())}
        )
        assert done.status_code == 200, done.text
        assert done.json()["task"]["status"] == "completed"
        assert done.json()["pathway"]["phase"] == "awaiting-invite"
        again = await clinician.post(
            f"/tasks/{task['id']}/complete", json={"assessment": _json(factories.assessment())}
        )
        assert again.status_code == 409
        open_tasks = await clinician.get("/tasks", params={"workflow_id": workflow_id})
        assert task["id"] not in [t["id"] for t in open_tasks.json()]

        # An informational task (the invitation to the meeting) is completed as it is.
        await clinician.post(
            f"/pathways/{workflow_id}/meeting-invite",
            json=_json(factories.invite(datetime.now(UTC))),
        )
        listed = await clinician.get("/tasks", params={"workflow_id": workflow_id})
        invitation = next(t for t in listed.json() if t["kind"] == "meeting-invitation")
        noted = await clinician.post(f"/tasks/{invitation['id']}/complete", json={})
        assert noted.status_code == 200, noted.text
        assert noted.json() == {
            "task": {**invitation, "status": "completed"},
            "pathway": None,
        }
        twice = await clinician.post(f"/tasks/{invitation['id']}/complete")
        assert twice.status_code == 409

        indicators = await clinician.get("/indicators", params={"health_trust": "helse-bergen"})
        assert indicators.status_code == 200
        active = indicators.json()["active_pathways"]  # "<5" where a small cell gives it away
        assert active == "<5" or active >= 5
        backwards = await clinician.get(
            "/indicators", params={"from_date": "2026-02-01", "to_date": "2026-01-01"}
        )
        assert backwards.status_code == 422
        problem_of(backwards)
        period = await clinician.get(
            "/indicators", params={"from_date": "2026-01-01", "to_date": "2026-12-31"}
        )
        assert period.status_code == 200, period.text
        assert period.json()["query"]["from_date"] == "2026-01-01"
        series = await clinician.get(
            "/indicators/series", params={"by": "quarter", "from_date": "2026-01-01"}
        )
        assert series.status_code == 200, series.text
        assert [p["period"] for p in series.json()][:2] == ["2026-Q1", "2026-Q2"]
        as_csv = await clinician.get("/indicators/series", params={"format": "csv"})
        assert as_csv.headers["content-type"].startswith("text/csv")
        header, *rows = as_csv.text.splitlines()
        assert header.startswith("period,health_trust,active_pathways")
        assert len(rows) == 12
        for written in ("01.01.2026", "1767225600", "2026-1-1"):
            other = await clinician.get("/indicators", params={"from_date": written})
            assert other.status_code == 422, written
            assert [e["field"] for e in problem_of(other)["errors"]] == ["from_date"]


async def _truthy(value: Awaitable[object]) -> bool:
    return bool(await value)


async def test_a_step_for_a_pathway_without_a_worker_is_503_and_applied_once_on_retry(
    api: Api, dev_server: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    # A pathway on a task queue no worker polls yet, as during a worker outage.
    outage_queue = f"rop-outage-{uuid.uuid4().hex[:8]}"
    referral = parse_referral(
        factories.referral_data(datetime.now(UTC)), ValidationPolicy(allow_synthetic_ids=True)
    )
    submitted = await Pathways(dev_server.client, task_queue=outage_queue).submit(referral)
    workflow_id = submitted.workflow_id
    path = f"/pathways/{workflow_id}/assessment"
    body = _json(factories.assessment())
    key = {"Idempotency-Key": uuid.uuid4().hex}
    async with api.client(Role.SYSTEM) as service:
        timed_out = await service.post(path, json=body, headers=key)
        assert timed_out.status_code == 503
        assert "is a worker running" in problem_of(timed_out)["detail"]
        async with build_worker(dev_server.client, pool, outage_queue):
            retried = await service.post(path, json=body, headers=key)
            assert retried.status_code == 200, retried.text
            assert retried.json()["phase"] == "awaiting-invite"
            await Pathways(dev_server.client, task_queue=outage_queue).send(
                StepName.CLOSE_PATHWAY, workflow_id, factories.closure()
            )
    history = await dev_server.client.get_workflow_handle(workflow_id).fetch_history()
    accepted = [
        e
        for e in history.events
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    ]
    assert len(accepted) == 2  # the assessment once, however often it was sent; the closure


# Every step of a pathway, with a free-text or id field and a body that is otherwise valid.
_STEPS_WITH_TEXT: list[tuple[str, str, Callable[[str], dict[str, Any]]]] = [
    ("assessment", "reason", lambda t: {**_json(factories.assessment()), "reason": t}),
    (
        "meeting-invite",
        "location",
        lambda t: {**_json(factories.invite(datetime.now(UTC))), "location": t},
    ),
    (
        "meeting",
        "attendees.0",
        lambda t: {**_json(factories.meeting_held(datetime.now(UTC))), "attendees": [t]},
    ),
    (
        "crisis-plan",
        "registered_by",
        lambda t: {
            **_json(factories.crisis_plan(datetime.now(UTC).date() + timedelta(days=90))),
            "registered_by": t,
        },
    ),
    ("measures/start", "note", lambda t: {"measure_id": "x", "by": "9000123", "note": t}),
    ("measures/complete", "measure_id", lambda t: {"measure_id": t, "by": "9000123"}),
    (
        "measures/cancel",
        "reason",
        lambda t: {"measure_id": "x", "by": "9000123", "reason": t},
    ),
    (
        "plan",
        "measures.0.description",
        lambda t: {
            "revised_by": "9000123",
            "reason": "ny plan",
            "measures": [{**_json(factories.measures()[0]), "description": t}],
        },
    ),
    (
        "review",
        "note",
        lambda t: {"reviewed_by": "9000123", "outcome": "continue", "note": t},
    ),
    ("objection", "note", lambda t: {"recorded_by": "9000123", "note": t}),
    ("closure", "note", lambda t: {"closed_by": "9000123", "reason": "other", "note": t}),
    (
        "meeting-move",
        "reason",
        lambda t: {
            "moved_by": "9000123",
            "meeting_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
            "reason": t,
        },
    ),
    (
        "meeting-invite",
        "absent_reasons.kommune",
        lambda t: {**_json(factories.invite(datetime.now(UTC))), "absent_reasons": {"kommune": t}},
    ),
]


@pytest.mark.parametrize("character", ["\x00", "\x1b", "\x7f\x08"], ids=["nul", "esc", "bs"])
async def test_control_characters_are_refused_for_a_referral_and_every_step(
    api: Api, dev_server: WorkflowEnvironment, pool: asyncpg.Pool, character: str
) -> None:
    async with api.client(Role.SYSTEM) as system:
        data = factories.referral_data(datetime.now(UTC))
        data["patient"]["name"] = f"Kari{character}Nordmann"
        refused = await system.post("/referrals", json=data)
        assert refused.status_code == 422, refused.text
        [error] = problem_of(refused)["errors"]
        assert error["field"] == "patient.name"
        assert "control characters" in error["message"]
        assert "Nordmann" not in refused.text
        with pytest.raises(Exception, match="not found"):
            await dev_server.client.get_workflow_handle(f"rop-{data['referral_id']}").describe()

        workflow_id = await _submit(system)
        await settled(dev_server.client.get_workflow_handle(workflow_id))
        before = await _history_length(dev_server, workflow_id)
        events = await pool.fetchval(
            "SELECT count(*) FROM pathway_events WHERE workflow_id = $1", workflow_id
        )
        for path, field, body in _STEPS_WITH_TEXT:
            answer = await system.post(
                f"/pathways/{workflow_id}/{path}", json=body(f"a{character}b")
            )
            assert answer.status_code == 422, (path, answer.text)
            assert [e["field"] for e in problem_of(answer)["errors"]] == [field], path
        assert await _history_length(dev_server, workflow_id) == before
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM pathway_events WHERE workflow_id = $1", workflow_id
            )
            == events
        )
        # Tab, newline and carriage return are text, and the pathway goes on.
        assessed = await system.post(
            f"/pathways/{workflow_id}/assessment",
            json={**_json(factories.assessment()), "reason": "linje 1\r\n\tlinje 2"},
        )
        assert assessed.status_code == 200, assessed.text
        closed = await system.post(
            f"/pathways/{workflow_id}/closure",
            json={"closed_by": factories.CLINICIAN, "reason": "completed"},
        )
        assert closed.status_code == 200


async def test_a_resubmitted_referral_is_welcome_only_unchanged(api: Api) -> None:
    data = factories.referral_data(datetime.now(UTC))
    changed = {
        **data,
        "municipality": "4627",
        "patient": {**data["patient"], "national_id": factories.national_id("020285123")},
    }
    async with api.client(Role.SYSTEM) as system, api.client(Role.OPERATOR) as operator:
        first = await system.post("/referrals", json=data)
        assert first.status_code == 201
        workflow_id = first.json()["workflow_id"]
        again = await system.post("/referrals", json=data)
        assert (again.status_code, again.json()["created"]) == (200, False)

        conflicting = await system.post("/referrals", json=changed)
        assert conflicting.status_code == 409
        detail = problem_of(conflicting)["detail"]
        assert "(municipality, patient.national_id)" in detail
        assert changed["patient"]["national_id"] not in detail  # names, never values
        record = await operator.get(f"/pathways/{workflow_id}/access-log")
    assert [(r["action"], r["outcome"]) for r in record.json()][:3] == [
        ("submit referral", "ok"),
        ("submit referral", "ok"),
        ("submit referral", "rejected"),
    ]
    connection = await asyncpg.connect(api.database_url)
    try:
        municipality = await connection.fetchval(
            "SELECT municipality FROM pathways WHERE workflow_id = $1", workflow_id
        )
    finally:
        await connection.close()
    assert municipality == data["municipality"]
