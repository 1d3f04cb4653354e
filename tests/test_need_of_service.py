"""Need of service: a person reads and drives only the pathways of their unit or those that
name them; anything else is refused, or allowed by breaking the glass and followed up."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from rop_domain.followup import Measure, MeasureKind, Provider
from rop_domain.models import Participant, ParticipantRole
from starter.api.auth import Authenticator, Role, StaticToken, token_digest
from tests import factories
from tests.api_harness import Api, problem_of
from tests.cli_harness import Cli

OTHER_UNIT = "helse-bergen/PHV"
REASON = "emergency: Pasienten er innlagt akutt og trenger kriseplanen"


INVITED_PERSON = "9000888"
"""The HPR number of a person the invite names (a NAV counsellor)."""
RELATIVE_ADDRESS = "Ola.Nordmann@Example.invalid"
"""A relative invited at their own address (case as the clinician typed it)."""
NOTED_HPR = "9000333"
"""An HPR number that stands only in free text (the assessment's reason)."""


@pytest_asyncio.fixture(scope="module")
async def pathway(api: Api) -> str:
    """A pathway of helse-bergen/TSB, invited to its meeting (so the invitees are named): the
    TSB unit by its address, a NAV counsellor by HPR number, a relative by e-mail address;
    assessed with an HPR number as the reason, and with a municipality's measure after the
    meeting (so a task goes to the kommunenummer 4601)."""
    invited = [
        Participant(role=ParticipantRole.TSB, name="TSB Bergen", address="tsb@example.invalid"),
        Participant(
            role=ParticipantRole.NAV,
            name="NAV Bergenhus",
            address="nav@example.invalid",
            person=INVITED_PERSON,
        ),
        Participant(role=ParticipantRole.RELATIVE, name="Pårørende", address=RELATIVE_ADDRESS),
    ]
    assessment = factories.assessment().model_copy(update={"reason": NOTED_HPR})
    housing = Measure(  # a municipality's measure: its kommunenummer receives the task
        id="bolig",
        kind=MeasureKind.MUNICIPAL_HOUSING,
        provider=Provider.KOMMUNE,
        responsible="4601",
    )
    async with api.client(Role.SYSTEM) as system:
        response = await system.post("/referrals", json=factories.referral_data(datetime.now(UTC)))
        workflow_id: str = response.json()["workflow_id"]
        assessed = await system.post(
            f"/pathways/{workflow_id}/assessment", json=assessment.model_dump(mode="json")
        )
        assert assessed.status_code == 200, assessed.text
        invite = factories.invite(datetime.now(UTC), invited)
        answer = await system.post(
            f"/pathways/{workflow_id}/meeting-invite", json=invite.model_dump(mode="json")
        )
        assert answer.status_code == 200, answer.text
        held = factories.meeting_held(datetime.now(UTC), plan=[housing])
        answer = await system.post(
            f"/pathways/{workflow_id}/meeting", json=held.model_dump(mode="json")
        )
        assert answer.status_code == 200, answer.text
    return workflow_id


def _stranger(api: Api, name: str = "stranger") -> str:
    """A clinician of the same trust's other unit, named nowhere in the pathway."""
    return api.idp.token(name, ["clinician"], hpr="9000999", units=[OTHER_UNIT])


async def _access_log(api: Api, workflow_id: str) -> list[dict[str, object]]:
    async with api.client(Role.OPERATOR) as operator:
        response = await operator.get(f"/pathways/{workflow_id}/access-log")
    rows: list[dict[str, object]] = response.json()
    return rows


async def test_a_clinician_of_another_unit_gets_403_everywhere_and_it_is_logged(
    api: Api, pathway: str
) -> None:
    async with api.client(token=_stranger(api, "stranger-403")) as stranger:
        answers = [
            await stranger.get(f"/pathways/{pathway}"),
            await stranger.get(f"/pathways/{pathway}/fhir"),
            await stranger.post(f"/pathways/{pathway}/objection", json={"recorded_by": "9000999"}),
        ]
    for answer in answers:
        assert answer.status_code == 403
        problem = problem_of(answer)
        assert problem["title"] == "No need of service"
        assert OTHER_UNIT in problem["detail"]
        assert "X-Break-Glass" in problem["detail"]
    mine = [
        (row["action"], row["outcome"])
        for row in await _access_log(api, pathway)
        if str(row["principal"]).startswith("jwt:stranger-403@")
    ]
    assert mine == [
        ("read status", "denied"),
        ("read FHIR bundle", "denied"),
        ("record objection", "denied"),
    ]


@pytest.mark.parametrize(
    ("who", "claims", "grounds"),
    [
        ("unit-member", {"hpr": "9000444"}, "unit"),  # the factories' unit, by default
        ("the-gp", {"hpr": factories.GP, "units": []}, "participant"),
        ("invited", {"hpr": INVITED_PERSON, "units": []}, "participant"),
        (
            "relative",
            {
                "hpr": "9000889",
                "units": [],
                "email": "ola.nordmann@example.INVALID",
                "email_verified": True,
            },
            "participant",
        ),
    ],
)
async def test_the_unit_and_the_people_the_pathway_names_are_admitted(
    api: Api, pathway: str, who: str, claims: dict[str, object], grounds: str
) -> None:
    token = api.idp.token(who, ["clinician"], **claims)  # type: ignore[arg-type]
    async with api.client(token=token) as person:
        status = await person.get(f"/pathways/{pathway}")
    assert status.status_code == 200, status.text
    [row] = [
        r for r in await _access_log(api, pathway) if str(r["principal"]).startswith(f"jwt:{who}@")
    ]
    assert (row["action"], row["outcome"], row["grounds"]) == ("read status", "ok", grounds)


async def test_breaking_the_glass_is_allowed_logged_and_listed_for_follow_up(
    api: Api, pathway: str
) -> None:
    async with api.client(token=_stranger(api, "glass-breaker")) as stranger:
        unexplained = await stranger.get(
            f"/pathways/{pathway}", headers={"X-Break-Glass": "because"}
        )
        broken = await stranger.get(f"/pathways/{pathway}", headers={"X-Break-Glass": REASON})
    assert unexplained.status_code == 400
    assert "10 to 300 characters" in problem_of(unexplained)["detail"]
    assert broken.status_code == 200, broken.text
    assert broken.json()["workflow_id"] == pathway
    mine = [
        (row["action"], row["outcome"], row["grounds"], row["reason"])
        for row in await _access_log(api, pathway)
        if str(row["principal"]).startswith("jwt:glass-breaker@")
    ]
    assert mine == [
        ("read status", "rejected", None, None),
        ("read status", "ok", "break-glass", REASON),
    ]

    # The privacy officer's list for follow-up: every broken glass, with who and why.
    listing = Cli.on_database(api.database_url)
    code, out, err = await listing("access-log", "--break-glass")
    assert code == 0, err
    [line] = [line for line in out.splitlines() if "glass-breaker" in line]
    assert "[break-glass]" in line
    assert f"reason: {REASON}" in line
    code, out, err = await listing("access-log", "--break-glass", "--json")
    records = [json.loads(line) for line in out.splitlines()]
    assert all(r["grounds"] == "break-glass" for r in records)
    assert pathway in {r["workflow_id"] for r in records}
    code, _, err = await listing("access-log", pathway, "--break-glass")
    assert code == 1
    assert "give a workflow id, `verify`, or --break-glass" in err


async def _eventually(check: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(100):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("never came true")


async def test_lists_show_a_person_only_the_pathways_they_need(api: Api, pathway: str) -> None:
    async with (
        api.client(token=_stranger(api)) as stranger,
        api.client(Role.CLINICIAN) as member,
    ):

        async def listed_for_the_member() -> bool:
            found = await member.get("/pathways", params={"health_trust": "helse-bergen"})
            return pathway in [p["workflow_id"] for p in found.json()]

        await _eventually(listed_for_the_member)
        others = await stranger.get("/pathways", params={"health_trust": "helse-bergen"})
        assert pathway not in [p["workflow_id"] for p in others.json()]

        member_tasks = await member.get("/tasks")
        stranger_tasks = await stranger.get("/tasks")
    assert pathway in {t["workflow_id"] for t in member_tasks.json()}
    assert pathway not in {t["workflow_id"] for t in stranger_tasks.json()}


async def test_a_person_completes_no_task_of_a_pathway_they_do_not_need(
    api: Api, pathway: str
) -> None:
    async with api.client(Role.SYSTEM) as system:
        listed = await system.get("/tasks", params={"workflow_id": pathway})
    [task, *_] = listed.json()  # an open task of the pathway (the measure's, after the meeting)
    async with api.client(token=_stranger(api)) as stranger:
        refused = await stranger.post(f"/tasks/{task['id']}/complete", json={})
        missing = await stranger.post(f"/tasks/{2**62}/complete", json={})
    # Another unit's task answers as one that does not exist: ids reveal no pathways.
    assert refused.status_code == missing.status_code == 404
    assert problem_of(refused)["title"] == problem_of(missing)["title"] == "Task not found"
    denied = [
        row["outcome"]
        for row in await _access_log(api, pathway)
        if str(row["action"]).startswith(f"complete task {task['id']}")
    ]
    assert denied == ["denied"]  # the refusal is still in the access log


async def test_tokens_whose_units_are_malformed_are_refused(api: Api, pathway: str) -> None:
    for units in ("helse-bergen/TSB", ["helse-bergen"], ["helse-bergen/XYZ"]):
        token = api.idp.token("odd-units", ["clinician"], hpr="9000999", units=units)  # type: ignore[arg-type]
        async with api.client(token=token) as caller:
            answer = await caller.get(f"/pathways/{pathway}")
        assert answer.status_code == 401
        assert "rop_units must be a list" in problem_of(answer)["detail"]


async def test_an_api_key_for_a_person_must_name_them_outside_local_mode() -> None:
    unnamed = StaticToken(name="ward-tablet", role=Role.CLINICIAN, token_sha256=token_digest("k"))
    with pytest.raises(ValueError, match="ward-tablet do not; such keys are for ROP_LOCAL_MODE"):
        Authenticator([unnamed], None)
    assert Authenticator([unnamed], None, local_mode=True)

    named = StaticToken(
        name="dr-hansen",
        role=Role.CLINICIAN,
        token_sha256=token_digest("k2"),
        person="9000123",
        units=["helse-bergen/TSB"],
    )
    principal = await Authenticator([named], None).authenticate("k2")
    assert (principal.actor, principal.units, principal.is_person) == (
        "9000123",
        frozenset({"helse-bergen/TSB"}),
        True,
    )


@pytest.mark.parametrize(
    ("who", "claims", "why"),
    [
        ("noted", {"hpr": NOTED_HPR, "units": []}, "an HPR number in free text names nobody"),
        ("kommune", {"hpr": "4601", "units": []}, "a municipality's number is not an HPR number"),
        (
            "unverified",
            {"hpr": "9000890", "units": [], "email": RELATIVE_ADDRESS},
            "an address nobody verified",
        ),
        (
            "falsely-verified",
            {"hpr": "9000891", "units": [], "email": RELATIVE_ADDRESS, "email_verified": "true"},
            "email_verified must be the JSON true",
        ),
        (
            "a-service-address",
            {"hpr": "9000892", "units": [], "email": "tsb@example.invalid", "email_verified": True},
            "a unit's address invited is a service, not a person",
        ),
    ],
)
async def test_only_typed_fields_ground_need_of_service(
    api: Api, pathway: str, who: str, claims: dict[str, object], why: str
) -> None:
    token = api.idp.token(who, ["clinician"], **claims)  # type: ignore[arg-type]
    async with api.client(token=token) as person:
        read = await person.get(f"/pathways/{pathway}")
        listed = await person.get("/pathways")
        tasks = await person.get("/tasks")
    assert read.status_code == 403, why
    assert pathway not in {p["workflow_id"] for p in listed.json()}, why
    assert pathway not in {t["workflow_id"] for t in tasks.json()}, why


async def test_a_step_taken_by_breaking_the_glass_leaves_no_lasting_access(
    api: Api, pathway: str
) -> None:
    token = _stranger(api, "one-time")
    async with api.client(token=token) as stranger:
        refused = await stranger.post(
            f"/pathways/{pathway}/objection", json={"recorded_by": "9000999"}
        )
        step = await stranger.post(
            f"/pathways/{pathway}/objection",
            json={"recorded_by": "9000999"},
            headers={"X-Break-Glass": REASON},
        )
        later_read = await stranger.get(f"/pathways/{pathway}")
        later_bundle = await stranger.get(f"/pathways/{pathway}/fhir")
        listed = await stranger.get("/pathways")
    assert refused.status_code == 403
    assert step.status_code == 200, step.text
    assert (later_read.status_code, later_bundle.status_code) == (403, 403)
    assert pathway not in {p["workflow_id"] for p in listed.json()}
    grounds = [
        (row["action"], row["grounds"])
        for row in await _access_log(api, pathway)
        if str(row["principal"]).startswith("jwt:one-time@")
    ]
    assert ("record objection", "break-glass") in grounds
    assert ("read status", "participant") not in grounds


async def test_a_break_glass_reason_is_a_code_and_words_and_its_use_is_limited(
    api: Api, pathway: str
) -> None:
    token = _stranger(api, "hasty")
    async with api.client(token=token) as stranger:
        for junk in (
            "aaaaaaaaaaaa",
            "emergency: aaaaaaaaaaaa",
            "urgent: Pasienten trenger hjelp straks",
        ):
            answer = await stranger.get(f"/pathways/{pathway}", headers={"X-Break-Glass": junk})
            assert answer.status_code == 400, junk
            assert "X-Break-Glass" in problem_of(answer)["detail"]
        allowed = [
            await stranger.get(f"/pathways/{pathway}", headers={"X-Break-Glass": REASON})
            for _ in range(10)  # ROP_BREAK_GLASS_PER_HOUR's default
        ]
        over = await stranger.get(f"/pathways/{pathway}", headers={"X-Break-Glass": REASON})
        async with api.client(Role.OPERATOR) as operator:
            scraped = (await operator.get("/metrics")).text
    assert [a.status_code for a in allowed] == [200] * 10
    assert over.status_code == 429
    assert "the limit is 10" in problem_of(over)["detail"]
    [counted] = [
        line
        for line in scraped.splitlines()
        if line.startswith('rop_api_break_glass_total{code="emergency"}')
    ]
    assert float(counted.split()[-1]) >= 10


async def test_both_shapes_of_a_persons_task_list_agree(
    api: Api, pathway: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A person named in many pathways gets their tasks found task by task, one named in a
    few pathway by pathway (`task_list.LARGE_SCOPE`): the same tasks, the same grounds."""
    from starter import task_list

    people = [
        api.tokens[Role.CLINICIAN],  # a unit's member
        api.idp.token("the-gp-list", ["clinician"], hpr=factories.GP, units=[]),
        _stranger(api, "stranger-list"),
    ]

    async def lists() -> list[list[dict[str, object]]]:
        found = []
        for token in people:
            async with api.client(token=token) as person:
                for params in ({"include_closed": True}, {"workflow_id": pathway}):
                    answer = await person.get("/tasks", params=params)
                    assert answer.status_code == 200, answer.text
                    found.append(answer.json())
        return found

    by_pathway = await lists()
    monkeypatch.setattr(task_list, "LARGE_SCOPE", 0)
    by_task = await lists()
    assert by_task == by_pathway
    member, gp, stranger = by_pathway[1], by_pathway[3], by_pathway[5]  # this pathway's tasks
    assert member
    assert member == gp
    assert stranger == []


async def test_a_unit_invited_to_the_meeting_finds_its_invitation_and_its_pathway(
    api: Api,
) -> None:
    """The PHV unit invited to a TSB pathway's avklaringsmøte holds the invitation as its
    unit's task: its members find it and read the pathway (named, not of their unit); the
    same unit of another health trust does neither."""
    phv = Participant(role=ParticipantRole.PHV, name="DPS Bergen", address="phv@example.invalid")
    async with api.client(Role.SYSTEM) as system:
        response = await system.post("/referrals", json=factories.referral_data(datetime.now(UTC)))
        workflow_id: str = response.json()["workflow_id"]
        assessed = await system.post(
            f"/pathways/{workflow_id}/assessment",
            json=factories.assessment().model_dump(mode="json"),
        )
        assert assessed.status_code == 200, assessed.text
        invite = factories.invite(datetime.now(UTC), [phv])
        invited = await system.post(
            f"/pathways/{workflow_id}/meeting-invite", json=invite.model_dump(mode="json")
        )
        assert invited.status_code == 200, invited.text
    member = api.idp.token("phv-member", ["clinician"], hpr="9000991", units=[OTHER_UNIT])
    elsewhere = api.idp.token("phv-fonna", ["clinician"], hpr="9000992", units=["helse-fonna/PHV"])
    search = {"owner": "CareTeam/helse-bergen.PHV", "focus": f"CarePlan/{workflow_id}"}
    async with api.client(token=member) as person:
        found = await person.get("/fhir/Task", params=search)
        status = await person.get(f"/pathways/{workflow_id}")
    assert found.status_code == 200, found.text
    tasks = [entry["resource"] for entry in found.json().get("entry", [])]
    assert [t["code"]["coding"][0]["code"] for t in tasks] == ["meeting-invitation"]
    assert status.status_code == 200, status.text
    [row] = [
        r
        for r in await _access_log(api, workflow_id)
        if str(r["principal"]).startswith("jwt:phv-member@") and r["action"] == "read status"
    ]
    assert row["grounds"] == "participant"  # named by the invitation, not of the unit
    async with api.client(token=elsewhere) as other:
        none_found = await other.get(
            "/fhir/Task", params={**search, "owner": "CareTeam/helse-fonna.PHV"}
        )
        refused = await other.get(f"/pathways/{workflow_id}")
    assert none_found.json().get("entry", []) == []
    assert refused.status_code == 403
