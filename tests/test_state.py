"""The pathway's state, without servers: the answers it keeps for repeated Update ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rop_domain.state import ANSWERS_KEPT_FOR, MAX_ANSWERS_KEPT, PathwayState

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_an_answer_is_found_by_its_update_id() -> None:
    state = PathwayState()
    state.keep_answer("u1", "assess", T0, '{"phase": "awaiting-invite"}')
    kept = state.kept_answer("u1")
    assert kept is not None
    assert (kept.update_name, kept.answer) == ("assess", '{"phase": "awaiting-invite"}')
    assert state.kept_answer("u2") is None


def test_only_the_newest_answers_are_kept() -> None:
    state = PathwayState()
    for number in range(MAX_ANSWERS_KEPT + 5):
        state.keep_answer(f"u{number}", "start_measure", T0 + timedelta(minutes=number), "{}")
    assert len(state.answers) == MAX_ANSWERS_KEPT
    assert state.kept_answer("u4") is None
    assert state.kept_answer("u5") is not None
    assert state.kept_answer(f"u{MAX_ANSWERS_KEPT + 4}") is not None


def test_answers_older_than_the_window_are_forgotten() -> None:
    state = PathwayState()
    state.keep_answer("old", "assess", T0, "{}")
    state.keep_answer("recent", "assess", T0 + ANSWERS_KEPT_FOR - timedelta(hours=1), "{}")
    state.keep_answer("now", "assess", T0 + ANSWERS_KEPT_FOR, "{}")
    assert [a.update_id for a in state.answers] == ["recent", "now"]


def test_the_window_outlasts_the_api_idempotency_window() -> None:
    from rop_runtime.settings import RopSettings

    assert timedelta(hours=RopSettings().api_idempotency_hours) < ANSWERS_KEPT_FOR


def test_the_stall_bound_counts_the_record_retries_that_begin_within_it() -> None:
    from workflows.effects import RETRY, attempts_within

    # Attempts begin at 0, 1, 3, 7, 11, 15... s (1 s doubling to 4 s apart).
    assert RETRY.initial_interval == timedelta(seconds=1)
    assert RETRY.maximum_interval == timedelta(seconds=4)
    assert [attempts_within(s) for s in (0.5, 1, 2.9, 3, 7, 10.9, 11, 60)] == [
        1,
        2,
        2,
        3,
        4,
        4,
        5,
        17,
    ]
