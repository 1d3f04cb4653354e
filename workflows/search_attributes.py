"""Typed search attributes an operator filters on in the Temporal UI.

Search attributes are stored unencrypted: nothing personal may ever go here.
"""

from __future__ import annotations

from typing import Any

from temporalio.common import SearchAttributeKey

PHASE = SearchAttributeKey.for_keyword("RopPhase")
MEETING_DEADLINE = SearchAttributeKey.for_datetime("RopMeetingDeadline")
OVERDUE = SearchAttributeKey.for_bool("RopOverdue")

ALL: tuple[SearchAttributeKey[Any], ...] = (PHASE, MEETING_DEADLINE, OVERDUE)
"""Every key the worker writes; the dev server and test servers register these."""
