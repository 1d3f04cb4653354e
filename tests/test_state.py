"""The pathway's state, without servers: the answers it keeps for repeated Update ids."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from rop_domain.state import (
    ANSWERS_KEPT_BEFORE_BYTES,
    ANSWERS_KEPT_FOR,
    MAX_ANSWER_BYTES,
    PathwayState,
)

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_an_answer_is_found_by_its_update_id() -> None:
    state = PathwayState()
    state.keep_answer("u1", "assess", T0, '{"phase": "awaiting-invite"}')
    kept = state.kept_answer("u1")
    assert kept is not None
    assert kept.packed
    assert (kept.update_name, kept.text()) == ("assess", '{"phase": "awaiting-invite"}')
    assert state.kept_answer("u2") is None


def test_the_answers_kept_are_bounded_by_bytes_not_by_a_count() -> None:
    state = PathwayState()
    # A status a step answers with, much as the workflow's (it packs to ~1 KiB).
    status = json.dumps(
        {
            "phase": "follow-up",
            "open_tasks": [
                {"key": f"rop-1/{n}", "kind": "start-measure", "recipient": f"90{n:05d}"}
                for n in range(40)
            ],
        }
    )
    for number in range(300):
        state.keep_answer(f"u{number}", "revise_plan", T0 + timedelta(minutes=number), status)
    assert len(state.answers) == 300  # 300 steps in the window: the first still answered
    first = state.kept_answer("u0")
    assert first is not None
    assert first.text() == status

    # Answers that do not pack: the oldest go once the bytes are spent, the newest stay.
    noise = random.Random(0)  # noqa: S311
    for number in range(300, 600):
        state.keep_answer(
            f"u{number}", "revise_plan", T0 + timedelta(minutes=number), noise.randbytes(3000).hex()
        )
    assert sum(a.size() for a in state.answers) <= MAX_ANSWER_BYTES
    assert state.kept_answer("u0") is None
    assert state.kept_answer("u599") is not None
    assert len(state.answers) > 50


def test_runs_from_before_the_byte_bound_keep_the_newest_25() -> None:
    state = PathwayState()
    for number in range(ANSWERS_KEPT_BEFORE_BYTES + 5):
        state.keep_answer(
            f"u{number}",
            "start_measure",
            T0 + timedelta(minutes=number),
            "{}",
            bounded_by_bytes=False,
        )
    assert len(state.answers) == ANSWERS_KEPT_BEFORE_BYTES
    assert state.kept_answer("u4") is None
    kept = state.kept_answer("u5")
    assert kept is not None
    assert (kept.packed, kept.text()) == (False, "{}")


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
