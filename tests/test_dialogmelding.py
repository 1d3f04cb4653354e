"""Tasks to GP offices and municipal services as Dialogmelding over Norsk helsenett.

The documents against the published XSDs (no servers); then pathways on the Temporal dev
server and the time-skipping server, a worker whose deliveries are built from settings as
`rop worker` builds them, PostgreSQL, and the local HelseID and Meldingstjener
(`nhn_local/doubles.py`), which check every request against the published OpenAPI.
"""

from __future__ import annotations

import asyncio
import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio
import xmlschema
from temporalio.testing import WorkflowEnvironment

from activities.delivery import DeliveryActivities
from activities.dialogmelding import MSGHEAD, DialogNote, Party, business_document
from nhn_local.doubles import CLIENT_ID, PUBLISHED, Network, norsk_helsenett
from rop_domain.followup import Objection
from rop_domain.models import AssessmentDecision, Participant, ParticipantRole
from rop_domain.routing import Channel, RoutingTable
from rop_domain.steps import StepName
from rop_domain.tasks import TaskKind
from rop_runtime.delivery_setup import build_delivery
from rop_runtime.settings import RopSettings
from starter.pathways import Pathways
from tests import factories
from tests.pathway_harness import running_pathways, save_history_if_recording, settled, start

XSD = PUBLISHED
GP_OFFICE = "112374/8094866"
MUNICIPAL_SERVICE = "8142987/8143099"
NATIONAL_ID = factories.national_id("150586951")
PATHWAYS = 50


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    """MsgHead 1.2 with Dialogmelding 1.1 inside it, as published."""
    return xmlschema.XMLSchema([str(XSD / "MsgHead-v1_2.xsd"), str(XSD / "dialogmelding-v1.1.xsd")])


def _note(**changes: object) -> DialogNote:
    parts: dict[str, object] = {
        "task_key": "rop-T-1/00007-meeting-invitation",
        "generated_at": datetime(2026, 12, 7, 9, 30, tzinfo=UTC),
        "sender": Party.at("8142987/8143060", "Helse Bergen HF", "TSB Bergen"),
        "receiver": Party.at(f"her:{GP_OFFICE}", "Legekontoret"),
        "subject": "Invitasjon til avklaringsmøte <ROP> & samhandling",
        "text": "ROP-forløp R-1: dere er invitert.\nMøtet er 8. desember kl. 10.",
        "patient_national_id": NATIONAL_ID,
    }
    parts.update(changes)
    return DialogNote(**parts)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "note",
    [
        _note(),
        _note(patient_national_id="41058695134"),  # a D-nummer
        _note(patient_national_id=None),  # a redacted task names no patient
        _note(receiver=Party.at("8142987", "Bergen kommune")),  # an organisation alone
    ],
    ids=["fodselsnummer", "d-nummer", "no-patient", "organisation"],
)
def test_every_dialogmelding_is_valid_against_the_published_xsds(
    schema: xmlschema.XMLSchema, note: DialogNote
) -> None:
    document = business_document(note)
    assert document.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    schema.validate(document.decode())
    head = ET.fromstring(document)  # noqa: S314 - our own document
    info = head.find(f"{{{MSGHEAD}}}MsgInfo")
    assert info is not None
    kind = info.find(f"{{{MSGHEAD}}}Type")
    assert kind is not None
    assert kind.get("V") == "DIALOG_HELSEFAGLIG"
    patient = info.find(f"{{{MSGHEAD}}}Patient")
    assert (patient is None) == (note.patient_national_id is None)
    # The same task, the same business document id, whenever it is built.
    again = business_document(_note(generated_at=datetime(2027, 1, 1, tzinfo=UTC)))
    assert ET.fromstring(again).findtext(f".//{{{MSGHEAD}}}MsgId") == info.findtext(  # noqa: S314
        f"{{{MSGHEAD}}}MsgId"
    )


def test_a_document_that_breaks_the_standard_is_caught(schema: xmlschema.XMLSchema) -> None:
    broken = business_document(_note()).replace(b"TemaKodet", b"Tema2")
    assert not schema.is_valid(broken.decode())


def test_a_her_address_gets_dialogmelding_only_where_norsk_helsenett_is_configured() -> None:
    with_nhn = RoutingTable(email_unrouted_addresses=False, dialog_unrouted_her_addresses=True)
    route = with_nhn.route_for(f"her:{GP_OFFICE}")
    assert route.channel is Channel.DIALOGMELDING
    assert route.address == GP_OFFICE
    assert with_nhn.route_for("her:not-a-her-id").channel is Channel.TASK_LIST
    without = RoutingTable(email_unrouted_addresses=False)
    assert without.route_for(f"her:{GP_OFFICE}").channel is Channel.TASK_LIST


@pytest_asyncio.fixture
async def network(tmp_path: Path) -> AsyncIterator[Network]:
    async with norsk_helsenett(tmp_path) as up:
        yield up


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def _deliveries(
    network: Network, pool: asyncpg.Pool, http: httpx.AsyncClient, routing: Path | None = None
) -> DeliveryActivities:
    """The worker's deliveries, built from settings as `rop worker` builds them."""
    settings = RopSettings(
        routing_file=routing,
        nhn_meldingstjener_url=network.meldingstjener.url,
        nhn_sender_her_address="8142987/8143060",
        nhn_sender_name="Helse Bergen HF",
        helseid_token_endpoint=network.helseid.token_endpoint,
        helseid_client_id=CLIENT_ID,
        helseid_key_file=network.client_key_file,
    )
    return build_delivery(settings, pool, http)


def _parties() -> list[Participant]:
    return [
        Participant(
            role=ParticipantRole.FASTLEGE,
            name="Legekontoret",
            address=f"her:{GP_OFFICE}",
            person=factories.GP,
        ),
        Participant(
            role=ParticipantRole.KOMMUNE,
            name="Bergen kommune, rus og psykisk helse",
            address=f"her:{MUNICIPAL_SERVICE}",
        ),
    ]


async def _invite_parties(api: Pathways, client_now: datetime, workflow_id: str) -> None:
    await api.send(StepName.ASSESS, workflow_id, factories.assessment())
    await api.send(
        StepName.INVITE_TO_MEETING, workflow_id, factories.invite(client_now, _parties())
    )


async def _delivered(pool: asyncpg.Pool, ids: list[str], count: int, seconds: float) -> None:
    """Wait until `count` Dialogmelding deliveries of the pathways have ended."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        ended = await pool.fetchval(
            "SELECT count(*) FROM deliveries d JOIN tasks t ON t.id = d.task_id "
            "WHERE t.workflow_id = ANY ($1) AND d.channel = 'dialogmelding' "
            "AND d.status IN ('sent', 'failed')",
            ids,
        )
        if ended >= count:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{ended} of {count} Dialogmelding deliveries ended")
        await asyncio.sleep(0.2)


async def test_invitations_reach_gps_and_municipalities_once_through_a_busy_network(
    dev_server: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    network: Network,
    http: httpx.AsyncClient,
    schema: xmlschema.XMLSchema,
) -> None:
    """100 invitations; every document's first POST fails: each is accepted once, every
    receipt `Ok`, every request valid against the OpenAPI, every document against the XSD."""
    network.meldingstjener.fail_first_post = True
    client = dev_server.client
    delivery = _deliveries(network, pool, http)
    async with running_pathways(client, pool, task_queue, delivery=delivery) as api:
        ids = [
            (await start(client, api, factories.referral_data(datetime.now(UTC))))[0]
            for _ in range(PATHWAYS)
        ]
        await asyncio.gather(*(_invite_parties(api, datetime.now(UTC), i) for i in ids))
        await _delivered(pool, ids, 2 * PATHWAYS, seconds=120)

    meldingstjener = network.meldingstjener
    assert meldingstjener.invalid == []
    assert meldingstjener.unauthorised == 0
    assert network.helseid.refused == []
    accepted = meldingstjener.accepted()
    assert len(accepted) == 2 * PATHWAYS
    assert set(accepted.values()) == {1}  # no business document accepted twice
    assert set(meldingstjener.posts.values()) == {2}  # the 503, then the one accepted
    rows = await pool.fetch(
        "SELECT d.status, d.receipt FROM deliveries d JOIN tasks t ON t.id = d.task_id "
        "WHERE t.workflow_id = ANY ($1) AND d.channel = 'dialogmelding'",
        ids,
    )
    assert [(r["status"], r["receipt"]) for r in rows] == [("sent", "Ok")] * 2 * PATHWAYS
    for sent in meldingstjener.sent:
        schema.validate(sent.document.decode())
        # Inside the health network the cooperating service is told whom it is about.
        assert (
            ET.fromstring(sent.document).findtext(  # noqa: S314
                f".//{{{MSGHEAD}}}Patient/{{{MSGHEAD}}}Ident/{{{MSGHEAD}}}Id"
            )
            == NATIONAL_ID
        )
    assert {s.receiver_her_id for s in meldingstjener.sent} == {8094866, 8143099}


async def test_a_rejected_receipt_fails_the_delivery_with_its_code(
    dev_server: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    network: Network,
    http: httpx.AsyncClient,
) -> None:
    network.meldingstjener.receipts[8143099] = ("Rejected", ["E10"])
    network.meldingstjener.receipt_after_polls = 1  # a receipt comes at the second look
    client = dev_server.client
    async with running_pathways(
        client, pool, task_queue, delivery=_deliveries(network, pool, http)
    ) as api:
        workflow_id, _ = await start(client, api, factories.referral_data(datetime.now(UTC)))
        await _invite_parties(api, datetime.now(UTC), workflow_id)
        await _delivered(pool, [workflow_id], 2, seconds=30)
        rows = await pool.fetch(
            "SELECT d.status, d.receipt, d.last_error, d.address FROM deliveries d "
            "JOIN tasks t ON t.id = d.task_id WHERE t.workflow_id = $1 "
            "AND d.channel = 'dialogmelding' ORDER BY d.address",
            workflow_id,
        )
        assert [(r["address"], r["status"], r["receipt"]) for r in rows] == [
            (GP_OFFICE, "sent", "Ok"),
            (MUNICIPAL_SERVICE, "failed", "Rejected (E10)"),
        ]
        assert "E10" in rows[1]["last_error"]
        status = await api.status(workflow_id)
        assert status.failed_deliveries == 1  # flagged: RopDeliveryFailed, `rop tasks --failed`
        await settled(client.get_workflow_handle(workflow_id))
        # ... and the receiving clinician is asked to reach the municipality another way.
        told = await pool.fetch(
            "SELECT recipient, params, status FROM tasks WHERE workflow_id = $1 AND kind = $2",
            workflow_id,
            TaskKind.TASK_UNDELIVERED.value,
        )
        assert [(t["recipient"], t["status"]) for t in told] == [(factories.CLINICIAN, "requested")]
        assert json.loads(told[0]["params"])["task_kind"] == "meeting-invitation"
        await save_history_if_recording(client.get_workflow_handle(workflow_id), "undelivered")
    # Each sent once: a retry that finds no receipt yet asks again, it does not resend.
    assert sorted(network.meldingstjener.posts.values()) == [1, 1]
    assert len(network.meldingstjener.sent) == 2


async def test_after_an_objection_only_the_consented_party_is_told_and_about_whom(
    dev_server: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    network: Network,
    http: httpx.AsyncClient,
) -> None:
    """The patient objected to sharing and consented to the GP only: the municipality gets
    nothing, the GP office's message names the patient it may know about."""
    client = dev_server.client
    async with running_pathways(
        client, pool, task_queue, delivery=_deliveries(network, pool, http)
    ) as api:
        workflow_id, _ = await start(client, api, factories.referral_data(datetime.now(UTC)))
        await api.send(StepName.ASSESS, workflow_id, factories.assessment())
        await api.send(
            StepName.RECORD_OBJECTION,
            workflow_id,
            Objection(recorded_by=factories.CLINICIAN, note="Ønsker ikke deling"),
        )
        invite = factories.invite(datetime.now(UTC), _parties()).model_copy(
            update={"consented_after_objection": [ParticipantRole.FASTLEGE]}
        )
        await api.send(StepName.INVITE_TO_MEETING, workflow_id, invite)
        await _delivered(pool, [workflow_id], 1, seconds=30)
    (sent,) = network.meldingstjener.sent
    assert sent.receiver_her_id == 8094866


async def test_a_network_down_for_ten_minutes_delivers_once_after(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    network: Network,
    http: httpx.AsyncClient,
) -> None:
    network.meldingstjener.down = True
    env, client = time_skipping_env, time_skipping_env.client
    async with running_pathways(
        client, pool, task_queue, delivery=_deliveries(network, pool, http)
    ) as api:
        now = await env.get_current_time()
        workflow_id, _ = await start(client, api, factories.referral_data(now))
        await _invite_parties(api, now, workflow_id)
        await env.sleep(timedelta(minutes=10))
        assert network.meldingstjener.sent == []
        network.meldingstjener.down = False
        await env.sleep(timedelta(hours=1))  # the next attempt falls in this hour
        await _delivered(pool, [workflow_id], 2, seconds=30)
    assert sorted(network.meldingstjener.accepted().values()) == [1, 1]


async def test_a_notice_of_an_undelivered_task_that_is_itself_undelivered_stops_there(
    dev_server: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    network: Network,
    http: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    """The receiving clinician's own system rejects everything: their task gives them one
    notice on the task list, and the rejected notice gives no further one."""
    routing = tmp_path / "routing.json"
    routing.write_text(
        json.dumps(
            {
                "routes": [
                    {
                        "recipient": factories.CLINICIAN,
                        "channel": "dialogmelding",
                        "address": "8142987/8143111",
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    network.meldingstjener.receipts[8143111] = ("Rejected", ["E20"])
    client = dev_server.client
    delivery = _deliveries(network, pool, http, routing)
    async with running_pathways(client, pool, task_queue, delivery=delivery) as api:
        workflow_id, _ = await start(client, api, factories.referral_data(datetime.now(UTC)))
        await _delivered(pool, [workflow_id], 2, seconds=30)  # the task, then its notice
        await settled(client.get_workflow_handle(workflow_id))
        kinds = await pool.fetch(
            "SELECT kind FROM tasks WHERE workflow_id = $1 ORDER BY id", workflow_id
        )
    assert [k["kind"] for k in kinds] == [
        TaskKind.ASSESS_REFERRAL.value,
        TaskKind.TASK_UNDELIVERED.value,
    ]


async def test_a_gp_named_by_hpr_number_is_reached_at_the_her_address_of_their_directory_entry(
    dev_server: WorkflowEnvironment,
    pool: asyncpg.Pool,
    owner_pool: asyncpg.Pool,
    task_queue: str,
    network: Network,
    http: httpx.AsyncClient,
) -> None:
    """The referrer (a GP, by HPR number) is told the referral was not accepted: the contact
    directory gives their office's HER address and their own, and the task goes there."""
    gp = f"9{uuid.uuid4().int % 10**6:06d}"
    await owner_pool.execute(
        "INSERT INTO contact_points (id, role, municipality, hpr_number, name, address) "
        "VALUES ($1, 'fastlege', '4601', $2, 'Legekontoret Nordnes', 'her:112374/8094999')",
        f"gp-{gp}",
        gp,
    )
    client = dev_server.client
    async with running_pathways(
        client, pool, task_queue, delivery=_deliveries(network, pool, http)
    ) as api:
        data = factories.referral_data(datetime.now(UTC), referrer=gp)
        workflow_id, _ = await start(client, api, data)
        await api.send(
            StepName.ASSESS,
            workflow_id,
            factories.assessment(AssessmentDecision.NOT_IN_TARGET_GROUP),
        )
        await _delivered(pool, [workflow_id], 1, seconds=30)
    (sent,) = network.meldingstjener.sent
    assert sent.receiver_her_id == 8094999
    assert b"Legekontoret Nordnes" in sent.document
