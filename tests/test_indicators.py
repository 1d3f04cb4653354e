"""The region's indicators, computed from records that real pathways wrote."""

from __future__ import annotations

import json
import uuid
from datetime import time, timedelta

import asyncpg
from temporalio.testing import WorkflowEnvironment

from activities.contact_directory import FactTeam, upsert_fact_teams
from rop_domain import calendar
from rop_domain.steps import StepName
from starter.indicators import IndicatorQuery, compute_indicators, render_table
from tests import factories
from tests.cli_harness import Cli
from tests.pathway_harness import eventually, hold_meeting, running_pathways, start


async def test_indicators_from_real_pathways(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    api_pool: asyncpg.Pool,
    owner_pool: asyncpg.Pool,
    task_queue: str,
    database_url: str,
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    trust = f"helse-test-{uuid.uuid4().hex[:6]}"
    async with running_pathways(client, pool, task_queue) as api:
        now = await env.get_current_time()
        on_time_id, _ = await start(client, api, factories.referral_data(now, health_trust=trust))
        late_id, _ = await start(
            client, api, factories.referral_data(now, health_trust=trust, municipality="4627")
        )
        waiting_id, _ = await start(client, api, factories.referral_data(now, health_trust=trust))
        await eventually(api, waiting_id, lambda s: bool(s.recommended_participants))

        await api.send(StepName.ASSESS, on_time_id, factories.assessment())
        await api.send(StepName.ASSESS, late_id, factories.assessment())
        on_time = await api.send(StepName.INVITE_TO_MEETING, on_time_id, factories.invite(now))
        deadline = on_time.meeting_deadline
        # Invited late on the first working day after the deadline (whatever weekday today is).
        first_late_day = calendar.add_working_days(deadline, 1)
        await env.sleep(
            calendar.at_local_time(first_late_day, time(9)) - await env.get_current_time()
        )
        await eventually(api, late_id, lambda s: s.meeting_escalated)
        late = await api.send(
            StepName.INVITE_TO_MEETING, late_id, factories.invite(await env.get_current_time())
        )
        assert late.invite is not None
        assert late.invite.working_days_used == 11

        held = await hold_meeting(env, api, late)
        assert held.meeting is not None
        await api.send(
            StepName.RECORD_MEETING, on_time_id, factories.meeting_held(held.meeting.held_at)
        )
        today = calendar.local_date(await env.get_current_time())
        await api.send(
            StepName.REGISTER_CRISIS_PLAN,
            on_time_id,
            factories.crisis_plan(today + timedelta(days=100)),
        )
        crisis_deadline = held.crisis_plan_deadline
        assert crisis_deadline is not None
        await env.sleep(
            calendar.end_of_day(crisis_deadline) - await env.get_current_time() + timedelta(hours=1)
        )
        await eventually(api, late_id, lambda s: s.overdue_items == ["crisis plan"])

    query = IndicatorQuery(health_trust=trust)
    async with api_pool.acquire() as connection:  # as the API reads them
        indicators = await compute_indicators(connection, query)
    assert indicators.active_pathways == 3
    assert (indicators.with_crisis_plan, indicators.crisis_plan_share) == (1, 0.333)
    assert (indicators.invited, indicators.invited_on_time) == (2, 1)
    assert indicators.invited_on_time_share == 0.5
    assert indicators.median_working_days_to_invite == 5.5
    # The national indicators, from facts the steps' own statements kept (migration 0014).
    assert (indicators.assessed, indicators.assessed_in_time) == (2, 2)
    assert indicators.assessed_in_time_share == 1.0  # the third is not yet due
    assert indicators.meetings_held == 2
    assert indicators.median_working_days_to_meeting == calendar.working_days_between(
        calendar.local_date(now), calendar.local_date(held.meeting.held_at)
    )
    assert (indicators.overdue_crisis_plan, indicators.overdue_review) == (1, 0)
    assert indicators.overdue_review_or_crisis_plan == 1
    assert indicators.active_by_municipality == {"4601": 2, "4627": 1}
    assert indicators.active_by_health_trust == {trust: 3}
    assert indicators.health_trusts_with_fact == 0

    await upsert_fact_teams(
        owner_pool, [FactTeam(id=f"fact-{trust}", health_trust=trust, name="FACT test")]
    )
    async with api_pool.acquire() as connection:
        with_fact = await compute_indicators(connection, query)
        received = calendar.local_date(now)
        none_in_range = await compute_indicators(
            connection,
            IndicatorQuery(health_trust=trust, from_date=received + timedelta(days=1)),
        )
    assert [(c.health_trust, c.fact_teams) for c in with_fact.fact_coverage] == [(trust, 1)]
    assert with_fact.health_trusts_with_fact == 1
    assert none_in_range.active_pathways == 0
    table = render_table(with_fact)
    assert "With a crisis plan" in table
    assert "1 (33%)" in table

    # Three pathways: every breakdown's cells are small, so the CLI withholds them (and the
    # total their only cells would give away); with the rule off it gives the library's.
    rop = Cli.on_database(database_url)
    code, out, err = await rop("indicators", "--health-trust", trust, "--json")
    assert code == 0, err
    withheld = json.loads(out)
    assert withheld["active_pathways"] == "<5"
    assert withheld["active_by_health_trust"] == {trust: "<5"}
    assert withheld["with_crisis_plan"] == with_fact.with_crisis_plan  # not a breakdown
    rop = Cli({**rop.env, "ROP_INDICATOR_SMALL_CELL": "1"})
    code, out, err = await rop("indicators", "--health-trust", trust, "--json")
    assert code == 0, err
    assert json.loads(out) == json.loads(with_fact.model_dump_json())

    code, out, err = await rop("indicators", "--health-trust", trust, "--by", "month", "--csv")
    assert code == 0, err
    header, *months = out.splitlines()
    assert header.split(",")[:3] == ["period", "health_trust", "active_pathways"]
    assert len(months) == 12
    # The pathways were received this month (the test's time skipped, not the wall clock's).
    assert sum(int(row.split(",")[2]) for row in months) == with_fact.active_pathways
