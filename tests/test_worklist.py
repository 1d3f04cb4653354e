"""The worklist page (`/worklist`), through the API running for real: sign-in (local mode's
demo people; an OIDC provider's authorization code with PKCE), the list scoped by need of
service, a step sent through its form once however often the form is sent, CSRF, cookies,
bokmål and nynorsk; then the page in Debian's chromium through Playwright."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import asyncpg
import httpx
import jwt
import pytest
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from temporalio.testing import WorkflowEnvironment

from rop_domain.calendar import OSLO
from starter.api.auth import KeyHolder, Role
from starter.worklist.texts import NB, NN
from tests import factories
from tests.api_harness import Api, running_api
from tests.channel_servers import free_port

OTHER_UNIT = KeyHolder("test-clinician-other-unit", Role.CLINICIAN, "9000456", ("helse-fonna/PHV",))
DEMO = "test-clinician"
"""The test API's clinician key (`tests.api_harness.key_holder`): a demo person in local mode."""
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest_asyncio.fixture(scope="module")
async def local_api(
    dev_server: WorkflowEnvironment,
    pool: asyncpg.Pool,
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Api]:
    """The API in local mode, its demo people the test clinician and one of another unit."""
    async with running_api(
        dev_server,
        pool,
        database_url,
        tmp_path_factory.mktemp("worklist"),
        more_holders=(OTHER_UNIT,),
        local_mode=True,
    ) as up:
        yield up


@asynccontextmanager
async def _signed_in(api: Api, person: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client signed in as the demo person `person`."""
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        answer = await client.post("/worklist/signin/demo", data={"person": person})
        assert answer.status_code == 303, answer.text
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        assert "Secure" not in cookie  # local mode serves plain HTTP on loopback
        yield client


async def _referral(api: Api) -> str:
    data = factories.referral_data(datetime.now(UTC))
    async with api.client(Role.SYSTEM) as system:
        submitted = await system.post("/referrals", json=data)
    assert submitted.status_code == 201, submitted.text
    workflow_id: str = submitted.json()["workflow_id"]
    return workflow_id


async def _task_id(api: Api, workflow_id: str, kind: str) -> int:
    """The pathway's newest open task of `kind` (waited for: tasks are written by the worker)."""
    connection = await asyncpg.connect(api.database_url)
    try:
        for _ in range(100):
            found = await connection.fetchval(
                """SELECT id FROM tasks WHERE workflow_id = $1 AND kind = $2
                   AND status = 'requested' ORDER BY id DESC LIMIT 1""",
                workflow_id,
                kind,
            )
            if found is not None:
                return int(found)
            await asyncio.sleep(0.05)
    finally:
        await connection.close()
    raise AssertionError(f"no {kind} task for {workflow_id}")


def _value(page: str, field: str) -> str:
    """The value a page's input `field` was filled in with."""
    match = re.search(rf'id="{field}" name="{field}" type="[^"]+" value="([^"]*)"', page)
    assert match is not None, f"no {field} in the page"
    return match.group(1)


def _hidden(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match is not None, f"no {name} in the page"
    return match.group(1)


async def test_the_worklist_lists_and_completes_a_task_once(local_api: Api) -> None:
    anonymous = httpx.AsyncClient(base_url=local_api.url)
    assert (await anonymous.get("/worklist")).headers["location"] == "/worklist/signin"
    signin = (await anonymous.get("/worklist/signin")).text
    assert "9000456" in signin
    assert factories.CLINICIAN in signin
    workflow_id = await _referral(local_api)
    assess = await _task_id(local_api, workflow_id, "assess-referral")
    async with _signed_in(local_api, DEMO) as browser:
        listed = (await browser.get("/worklist")).text
        assert f'href="/worklist/tasks/{assess}"' in listed
        page = (await browser.get(f"/worklist/tasks/{assess}")).text
        form = {
            "csrf": _hidden(page, "csrf"),
            "form_key": _hidden(page, "form_key"),
            "decision": "in-target-group",
            "reason": "ROP-problematikk",
        }
        forged = await browser.post(f"/worklist/tasks/{assess}", data={**form, "csrf": "x"})
        assert forged.status_code == 403
        bad = await browser.post(f"/worklist/tasks/{assess}", data={**form, "decision": "maybe"})
        assert bad.status_code == 422
        assert "decision" in bad.text
        for _ in range(2):  # sent twice (a double click, a reload): applied once
            sent = await browser.post(f"/worklist/tasks/{assess}", data=form)
            assert sent.status_code == 303, sent.text
            assert sent.headers["location"] == f"/worklist/tasks/{assess}?saved=true"
        invite = await _task_id(local_api, workflow_id, "invite-to-meeting")
        listed = (await browser.get("/worklist")).text
        assert f'href="/worklist/tasks/{assess}"' not in listed
        row = re.search(rf'<tr data-task-id="{invite}">(.*?)</tr>', listed, flags=re.S)
        assert row is not None
        assert "<time datetime=" in row.group(1)  # its due date
    assert await local_api.events(workflow_id, "assessed") == 1
    async with _signed_in(local_api, OTHER_UNIT.name) as other:
        listed = (await other.get("/worklist")).text
        assert f"/worklist/tasks/{invite}" not in listed
        assert (await other.get(f"/worklist/tasks/{invite}")).status_code == 404
        assert (await other.post(f"/worklist/tasks/{invite}", data=form)).status_code in (403, 404)


async def test_nynorsk_when_chosen(local_api: Api) -> None:
    async with _signed_in(local_api, DEMO) as browser:
        assert NB["my_tasks"] in (await browser.get("/worklist")).text
        chosen = await browser.get("/worklist/language/nn", follow_redirects=True)
        assert NN["my_tasks"] in chosen.text
        assert 'lang="nn"' in chosen.text
        signed_out = await browser.post("/worklist/signout", data={"csrf": "wrong"})
        assert signed_out.status_code == 403


@dataclass
class OidcProvider:
    """An OIDC provider's authorization code flow with PKCE: it signs in `person` at once."""

    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    url: str = ""
    person: str = factories.CLINICIAN
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)

    async def discovery(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.url,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "jwks_uri": f"{self.url}/jwks",
            }
        )

    async def jwks(self, _: web.Request) -> web.Response:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return web.json_response({"keys": [{**public, "kid": "op", "alg": "RS256"}]})

    async def authorize(self, request: web.Request) -> web.Response:
        query = request.query
        assert query["response_type"] == "code"
        assert query["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = dict(query)
        target = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
        raise web.HTTPFound(target)

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        asked = self.codes.pop(str(form.get("code")), None)
        verifier = str(form.get("code_verifier", ""))
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
        if asked is None or digest.decode() != asked["code_challenge"]:
            self.refused.append("code or verifier")
            return web.json_response({"error": "invalid_grant"}, status=400)
        if form.get("redirect_uri") != asked["redirect_uri"]:
            self.refused.append("redirect_uri")
            return web.json_response({"error": "invalid_grant"}, status=400)
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url, "aud": "rop-forlop-api", "sub": "person-1", "iat": now,
            "exp": now + 300, "roles": ["clinician"], "hpr": self.person,
            "rop_units": ["helse-bergen/TSB"],
        }  # fmt: skip
        token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "op"})
        return web.json_response({"access_token": token, "token_type": "Bearer"})


@asynccontextmanager
async def oidc_provider() -> AsyncIterator[OidcProvider]:
    provider = OidcProvider()
    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", provider.discovery)
    app.router.add_get("/jwks", provider.jwks)
    app.router.add_get("/authorize", provider.authorize)
    app.router.add_post("/token", provider.token)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    provider.url = f"http://127.0.0.1:{port}"
    try:
        yield provider
    finally:
        await runner.cleanup()


async def test_signing_in_with_the_oidc_provider_by_code_and_pkce(
    dev_server: WorkflowEnvironment,
    pool: asyncpg.Pool,
    database_url: str,
    tmp_path: Path,
) -> None:
    async with (
        oidc_provider() as provider,
        running_api(
            dev_server,
            pool,
            database_url,
            tmp_path,
            api_jwt_jwks_url=f"{provider.url}/jwks",
            api_jwt_issuer=provider.url,
            worklist_oidc_client_id="rop-worklist",
        ) as api,
    ):
        async with httpx.AsyncClient(base_url=api.url) as browser:
            assert (await browser.get("/worklist/signin")).status_code == 200
            to_provider = await browser.get("/worklist/signin/oidc")
            assert to_provider.status_code == 303
            asked = parse_qs(urlparse(to_provider.headers["location"]).query)
            assert asked["code_challenge_method"] == ["S256"]
            assert "code_verifier" not in asked
            back = await browser.get(to_provider.headers["location"])  # the provider signs in
            callback = back.headers["location"]
            signed_in = await browser.get(callback)
            assert signed_in.status_code == 303, signed_in.text
            cookie = signed_in.headers["set-cookie"]
            for flag in ("HttpOnly", "Secure", "SameSite=lax", "Path=/worklist"):
                assert flag in cookie, cookie
            session = cookie.split(";")[0]
            listed = await browser.get("/worklist", headers={"Cookie": session})
            assert listed.status_code == 200
            assert factories.CLINICIAN in listed.text
            replayed = await browser.get(callback)  # a state is good for one sign-in
            assert replayed.status_code == 400
        assert provider.refused == []


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (apt-get install chromium): the worklist's "
    "browser test needs it",
)
async def test_the_worklist_in_chromium(local_api: Api) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    workflow_id = await _referral(local_api)
    assess = await _task_id(local_api, workflow_id, "assess-referral")
    visited: list[str] = []
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            page = await browser.new_page()
            page.on("request", lambda request: visited.append(request.url))
            await page.goto(f"{local_api.url}/worklist")
            await page.get_by_role(
                "button", name=f"{NB['signin_as']} {factories.CLINICIAN}"
            ).click()
            link = page.locator(f'a[href="/worklist/tasks/{assess}"]')
            await link.click()
            await page.get_by_label(NB["in-target-group"]).check()
            await page.get_by_label(NB["reason"]).fill("ROP-problematikk, fra nettleseren")
            await page.get_by_role("button", name=NB["send"]).click()
            await page.get_by_role("status").wait_for()
            await page.get_by_role("link", name=NB["back"]).click()
            invite = await _task_id(local_api, workflow_id, "invite-to-meeting")
            row = page.locator(f'tr[data-task-id="{invite}"]')
            await row.wait_for()
            assert await row.locator("time").count() == 1  # the invite task's due date
            # A step no task stands for, from the unit's invitation: move the meeting.
            invited = await _invited_pathway(local_api)
            invitation = await _task_id(local_api, invited, "meeting-invitation")
            await page.goto(f"{local_api.url}/worklist/tasks/{invitation}")
            moved_to = (datetime.now(OSLO) + timedelta(days=10)).strftime("%Y-%m-%dT10:00")
            await page.get_by_label(NB["meeting_at"]).fill(moved_to)
            await page.get_by_label(NB["move_reason"]).fill("Koordinator er syk")
            await page.get_by_role("button", name=NB["move_meeting"]).click()
            await page.get_by_role("status").wait_for()
            assert await local_api.events(invited, "meeting-moved") == 1
            # Another unit's clinician sees neither task.
            other = await browser.new_page()
            await other.goto(f"{local_api.url}/worklist/signin")
            await other.get_by_role("button", name=f"{NB['signin_as']} 9000456").click()
            await other.get_by_role("heading", name=NB["my_tasks"]).wait_for()
            content = await other.content()
            assert f"/worklist/tasks/{invite}" not in content
            assert f"/worklist/tasks/{assess}" not in content
        finally:
            await browser.close()
    # No clinical content in any URL the browser asked for: ids and task kinds only.
    for url in visited:
        assert "ROP-problematikk" not in url
        assert "Koordinator" not in url
        assert workflow_id not in url
        assert factories.CLINICIAN not in urlparse(url).path
        assert "csrf" not in url  # forms are POSTed
        assert "form_key" not in url


def test_a_deadline_at_the_end_of_a_day_shows_as_that_day() -> None:
    from starter.worklist.routes import shown_due

    assert shown_due(datetime(2026, 12, 22, 0, 0, tzinfo=OSLO)) == "21.12.2026"
    assert shown_due(datetime(2026, 12, 8, 9, 0, tzinfo=UTC)) == "08.12.2026 10:00"


def _meeting_form(page: str) -> dict[str, str]:
    """The record-meeting form of a unit's invitation, filled in: held now, TSB there."""
    return {
        "csrf": _hidden(page, "csrf"),
        "form_key": _hidden(page, "form_key"),
        "held_at": _value(page, "held_at"),
        "attendee": "tsb",
        "koordinator": factories.KOORDINATOR,
        "individual_plan": "accepted",
        "crisis_plan_responsible": factories.CRISIS_PLAN_RESPONSIBLE,
    }


async def _invited_pathway(api: Api) -> str:
    """A new pathway, assessed and its meeting invited (TSB, the test clinician's unit) by
    the API, as an EPJ would."""
    workflow_id = await _referral(api)
    async with api.client(Role.SYSTEM) as system:
        assessed = await system.post(
            f"/pathways/{workflow_id}/assessment",
            json=factories.assessment().model_dump(mode="json"),
        )
        assert assessed.status_code == 200, assessed.text
        invite = factories.invite(datetime.now(UTC)).model_dump(mode="json")
        invited = await system.post(f"/pathways/{workflow_id}/meeting-invite", json=invite)
        assert invited.status_code == 200, invited.text
    return workflow_id


async def test_the_meeting_is_recorded_from_the_units_invitation(local_api: Api) -> None:
    workflow_id = await _invited_pathway(local_api)
    invitation = await _task_id(local_api, workflow_id, "meeting-invitation")
    async with _signed_in(local_api, DEMO) as browser:
        listed = (await browser.get("/worklist")).text
        assert f'href="/worklist/tasks/{invitation}"' in listed  # the unit's task
        page = (await browser.get(f"/worklist/tasks/{invitation}")).text
        assert 'name="koordinator"' in page
        form = {**_meeting_form(page), "review_interval_weeks": "12"}
        sent = await browser.post(f"/worklist/tasks/{invitation}", data=form)
        assert sent.status_code == 303, sent.text
    async with local_api.client(Role.SYSTEM) as system:
        status = (await system.get(f"/pathways/{workflow_id}")).json()
    assert status["phase"] == "follow-up"
    assert status["meeting"]["koordinator"] == factories.KOORDINATOR


def _form_of(page: str, action: str) -> dict[str, str]:
    """The hidden fields (CSRF token, form key, …) of the page's form posted to `action`."""
    match = re.search(rf'<form method="post" action="{re.escape(action)}">(.*?)</form>', page, re.S)
    assert match is not None, f"no form for {action} in the page"
    return dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', match.group(1)))


async def test_the_meeting_is_moved_the_plan_revised_and_the_pathway_closed_from_a_task(
    local_api: Api,
) -> None:
    """Steps no task stands for, from a task's page: each with the step's own validation, each
    applied once however often its form is sent, and offered only in the phases they fit."""
    workflow_id = await _invited_pathway(local_api)
    task = await _task_id(local_api, workflow_id, "meeting-invitation")
    page_url = f"/worklist/tasks/{task}"
    async with _signed_in(local_api, DEMO) as browser:
        page = (await browser.get(page_url)).text
        assert f"{page_url}/steps/revise_plan" not in page  # no plan before the meeting
        move_url = f"{page_url}/steps/move_meeting"
        moved_to = (datetime.now(OSLO) + timedelta(days=30)).replace(
            hour=10, minute=0, second=0, microsecond=0
        )
        move = {
            **_form_of(page, move_url),
            "meeting_at": moved_to.strftime("%Y-%m-%dT%H:%M"),
            "reason": "Sykdom",
        }
        for _ in range(2):
            sent = await browser.post(move_url, data=move)
            assert sent.status_code == 303, sent.text
        assert await local_api.events(workflow_id, "meeting-moved") == 1
        # The move sent the parties a new invitation: the unit's task is now that one.
        page_url = f"/worklist/tasks/{await _task_id(local_api, workflow_id, 'meeting-invitation')}"
        page = (await browser.get(page_url)).text
        meeting = {
            **_meeting_form(page),
            "measure_id_0": "poliklinikk",
            "kind_0": "outpatient",
            "provider_0": "TSB",
            "responsible_0": factories.KOORDINATOR,
            "measure_id_1": "",  # a blank row: left out
            "kind_1": "outpatient",
        }
        assert (await browser.post(page_url, data=meeting)).status_code == 303

        page = (await browser.get(page_url)).text
        assert move_url not in page  # the meeting is held
        plan_url = f"{page_url}/steps/revise_plan"  # the invitation's page, closed by now
        plan = _form_of(page, plan_url)
        assert plan["replaces_version"] == "1"
        current = re.search(
            r'id="plan-measure_id_0" name="measure_id_0" [^>]*value="([^"]*)"', page
        )
        assert current is not None
        assert current.group(1) == "poliklinikk"  # the current plan, filled in
        revision = {
            **plan,
            "reason": "Trenger bolig",
            "measure_id_0": "poliklinikk",
            "kind_0": "outpatient",
            "provider_0": "TSB",
            "responsible_0": factories.KOORDINATOR,
            "measure_id_1": "innleggelse",
            "kind_1": "inpatient",
            "provider_1": "TSB",
            "responsible_1": factories.KOORDINATOR,
            "depends_on_1": "poliklinikk",
        }
        refused = await browser.post(plan_url, data=revision)  # inpatient without indication
        assert refused.status_code == 422
        assert "inpatient treatment needs a stated indication" in refused.text
        revision["indication_1"] = "Abstinens"
        for _ in range(2):
            assert (await browser.post(plan_url, data=revision)).status_code == 303

        close_url = f"{page_url}/steps/close_pathway"
        close = {**_form_of(page, close_url), "reason": "other"}
        refused = await browser.post(close_url, data=close)  # other needs a note
        assert refused.status_code == 422
        assert "reason other needs a note" in refused.text
        assert (await browser.post(close_url, data={**close, "reason": "moved"})).status_code == 303
        closed_page = (await browser.get(page_url)).text
        assert close_url not in closed_page  # nothing more to take
        no_such = await browser.post(f"{page_url}/steps/assess", data=close)
        assert no_such.status_code == 404
    async with local_api.client(Role.SYSTEM) as system:
        status = (await system.get(f"/pathways/{workflow_id}")).json()
    assert datetime.fromisoformat(status["invite"]["invite"]["meeting_at"]) == moved_to
    assert status["plan_version"] == 2
    assert [m["id"] for m in status["measures"]] == ["poliklinikk", "innleggelse"]
    assert status["measures"][1]["depends_on"] == ["poliklinikk"]
    assert status["closure"]["closure"]["reason"] == "moved"
    assert await local_api.events(workflow_id, "plan-revised") == 1
