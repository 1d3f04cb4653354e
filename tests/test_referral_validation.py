"""Validation at the edge: identifiers, referrals and Update payloads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from rop_domain.identifiers import InvalidNationalId, NationalIdKind, classify_national_id
from rop_domain.models import MeetingInvite, Referral, ValidationPolicy, parse_referral
from tests import factories

STRICT = ValidationPolicy(allow_synthetic_ids=False)
LENIENT = ValidationPolicy(allow_synthetic_ids=True)
RECEIVED = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)

FODSELSNUMMER = factories.national_id("150586951")
D_NUMMER = factories.national_id("550586950")
SYNTHETIC = factories.national_id("158586950")


def test_identifier_kinds() -> None:
    assert (
        classify_national_id(FODSELSNUMMER, allow_synthetic=False) is NationalIdKind.FODSELSNUMMER
    )
    assert classify_national_id(D_NUMMER, allow_synthetic=False) is NationalIdKind.D_NUMMER
    assert classify_national_id(SYNTHETIC, allow_synthetic=True) is NationalIdKind.SYNTHETIC


def test_synthetic_numbers_only_where_allowed() -> None:
    with pytest.raises(InvalidNationalId, match="synthetic"):
        classify_national_id(SYNTHETIC, allow_synthetic=False)


@pytest.mark.parametrize(
    ("number", "message"),
    [
        (FODSELSNUMMER[:-1] + str((int(FODSELSNUMMER[-1]) + 1) % 10), "check digits"),
        ("1505869517", "11 digits"),
        (factories.national_id("310286950"), "birth date"),  # 31 February
    ],
)
def test_invalid_identifiers(number: str, message: str) -> None:
    with pytest.raises(InvalidNationalId, match=message):
        classify_national_id(number, allow_synthetic=True)


def _errors(data: dict[str, Any], policy: ValidationPolicy = STRICT) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        parse_referral(data, policy)
    return [
        (".".join(str(p) for p in error["loc"]), error["msg"]) for error in caught.value.errors()
    ]


def test_a_valid_referral_parses_and_gets_a_non_personal_workflow_id() -> None:
    referral = parse_referral(factories.referral_data(RECEIVED), STRICT)
    assert referral.workflow_id == f"rop-{referral.referral_id}"
    assert FODSELSNUMMER not in referral.workflow_id
    assert FODSELSNUMMER not in repr(referral)


def test_wrong_checksum_names_the_field() -> None:
    data = factories.referral_data(RECEIVED)
    data["patient"]["national_id"] = FODSELSNUMMER[:-1] + str((int(FODSELSNUMMER[-1]) + 1) % 10)
    [(field, message)] = _errors(data)
    assert field == "patient.national_id"
    assert "check digits" in message


def test_synthetic_number_follows_the_policy() -> None:
    data = factories.referral_data(RECEIVED)
    data["patient"]["national_id"] = SYNTHETIC
    [(field, message)] = _errors(data, STRICT)
    assert field == "patient.national_id"
    assert "synthetic" in message
    assert parse_referral(data, LENIENT).patient.national_id == SYNTHETIC


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"received_at": "2026-04-01T09:00:00"}, "received_at"),
        ({"source": "legevakt"}, "source"),
        ({"receiving_unit": "BUP"}, "receiving_unit"),
        ({"municipality": "460"}, "municipality"),
        ({"referral_id": FODSELSNUMMER}, "referral_id"),
        ({"referral_id": "has spaces"}, "referral_id"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_bad_fields_are_named(override: dict[str, Any], field: str) -> None:
    errors = _errors(factories.referral_data(RECEIVED) | override)
    assert [name for name, _ in errors] == [field]


def test_malformed_json_is_refused() -> None:
    with pytest.raises(ValidationError, match="Invalid JSON"):
        parse_referral(b'{"referral_id": ', STRICT)


def test_inside_the_worker_only_pure_checks_run() -> None:
    # Without a policy (the data converter's case) a synthetic number passes on its check
    # digits alone, and a wrong check digit is still refused.
    data = factories.referral_data(RECEIVED)
    data["patient"]["national_id"] = SYNTHETIC
    assert Referral.model_validate(data).patient.national_id == SYNTHETIC
    data["patient"]["national_id"] = SYNTHETIC[:-1] + str((int(SYNTHETIC[-1]) + 1) % 10)
    with pytest.raises(ValidationError, match="check digits"):
        Referral.model_validate(data)


def test_invite_needs_a_place_and_participants() -> None:
    base = factories.invite(RECEIVED).model_dump()
    with pytest.raises(ValidationError, match="location or a video_link"):
        MeetingInvite.model_validate(base | {"location": None})
    with pytest.raises(ValidationError, match="participants"):
        MeetingInvite.model_validate(base | {"participants": []})
    with pytest.raises(ValidationError, match="timezone"):
        MeetingInvite.model_validate(base | {"meeting_at": "2026-05-01T10:00:00"})


def test_received_at_must_lie_in_the_working_day_calendar() -> None:
    # Found by schemathesis: a referral from the year 3484 had no deadline to compute.
    data = factories.referral_data(RECEIVED) | {"received_at": "3484-06-17T08:26:15Z"}
    with pytest.raises(ValidationError, match="working-day calendar"):
        Referral.model_validate(data)


def test_a_referral_received_in_the_future_is_refused_at_the_edge() -> None:
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    data = factories.referral_data(tomorrow)
    [(field, message)] = _errors(data, LENIENT)
    assert (field, message) == ("received_at", "Value error, lies in the future")
    # Inside the worker (no policy) the clock is not consulted: replay must not depend on it.
    assert Referral.model_validate(data).received_at == tomorrow


def test_text_over_its_length_says_characters() -> None:
    from rop_domain.followup import PlanRevision

    with pytest.raises(ValidationError) as refused:
        PlanRevision(revised_by="9000123", reason="x" * 2001, measures=[])
    [error] = refused.value.errors()
    assert error["msg"] == "String should have at most 2000 characters"
    with pytest.raises(ValidationError, match="contains U\\+0000 at position 1"):
        PlanRevision(revised_by="9000123", reason="a\x00b", measures=[])
