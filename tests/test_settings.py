"""Settings from the environment become the rules a new pathway starts with."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rop_domain.calendar import WorkingDayRule
from rop_domain.models import ObjectionMode
from starter.settings import RopSettings


def test_environment_sets_the_pathway_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROP_MEETING_WORKING_DAYS", "7")
    monkeypatch.setenv("ROP_COUNT_SATURDAYS", "true")
    monkeypatch.setenv("ROP_CRISIS_PLAN_WORKING_DAYS", "15")
    monkeypatch.setenv("ROP_OBJECTION_MODE", "suppress")
    monkeypatch.setenv("DATABASE_URL", "postgresql://example.invalid/rop")
    settings = RopSettings()
    rules = settings.pathway_settings()
    assert rules.meeting_working_days == 7
    assert rules.working_day_rule is WorkingDayRule.MONDAY_TO_SATURDAY
    assert rules.crisis_plan_working_days == 15
    assert rules.objection_mode is ObjectionMode.SUPPRESS
    assert settings.database_url == "postgresql://example.invalid/rop"


def test_a_malformed_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROP_MEETING_WORKING_DAYS", "ten")
    with pytest.raises(ValidationError, match="meeting_working_days"):
        RopSettings()
