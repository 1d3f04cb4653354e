"""A run of today's rules asks one patch (`RULES_OF_2026_12`), not each: each patch marker
comes with a `TemporalChangeVersion` search-attribute upsert, work for the server and a row
in its visibility store. Runs started before it ask each patch as their histories carry
(the kept histories, `tests/test_replay.py`)."""

from __future__ import annotations

import json

from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from rop_domain.steps import StepName
from starter.pathways import Pathways
from tests import factories
from tests.pathway_harness import start
from workflows.patches import RULES_OF_2026_12


async def test_a_new_run_asks_one_patch_through_its_steps(
    time_skipping_env: WorkflowEnvironment, pathway_api: Pathways
) -> None:
    now = await time_skipping_env.get_current_time()
    workflow_id, handle = await start(
        time_skipping_env.client, pathway_api, factories.referral_data(now)
    )
    await pathway_api.send(StepName.ASSESS, workflow_id, factories.assessment())
    await pathway_api.send(StepName.INVITE_TO_MEETING, workflow_id, factories.invite(now))
    history = await handle.fetch_history()
    patches = [
        json.loads(payload.data)["id"]
        for event in history.events
        if event.marker_recorded_event_attributes.marker_name == "core_patch"
        for payload in event.marker_recorded_event_attributes.details["patch-data"].payloads
    ]
    assert patches == [RULES_OF_2026_12]
    upserts = [
        event
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
    ]
    changed = [
        e for e in upserts
        if "TemporalChangeVersion" in e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
    ]  # fmt: skip
    assert len(changed) == 1
