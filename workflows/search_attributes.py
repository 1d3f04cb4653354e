"""Typed search attributes an operator filters on in the Temporal UI.

Search attributes are stored unencrypted: nothing personal may ever go here.
"""

from __future__ import annotations

from typing import Any

from temporalio.common import SearchAttributeKey

PHASE = SearchAttributeKey.for_keyword("RopPhase")
HEALTH_TRUST = SearchAttributeKey.for_keyword("RopHealthTrust")
MUNICIPALITY = SearchAttributeKey.for_keyword("RopMunicipality")
RECEIVING_UNIT = SearchAttributeKey.for_keyword("RopReceivingUnit")
MEETING_DEADLINE = SearchAttributeKey.for_datetime("RopMeetingDeadline")
MEETING_INVITED_ON_TIME = SearchAttributeKey.for_bool("RopMeetingInvitedOnTime")
HAS_CRISIS_PLAN = SearchAttributeKey.for_bool("RopHasCrisisPlan")
NEXT_REVIEW_DUE = SearchAttributeKey.for_datetime("RopNextReviewDue")
OVERDUE = SearchAttributeKey.for_bool("RopOverdue")

ALL: tuple[SearchAttributeKey[Any], ...] = (
    PHASE,
    HEALTH_TRUST,
    MUNICIPALITY,
    RECEIVING_UNIT,
    MEETING_DEADLINE,
    MEETING_INVITED_ON_TIME,
    HAS_CRISIS_PLAN,
    NEXT_REVIEW_DUE,
    OVERDUE,
)
"""Every key the worker writes; the dev server and test servers register these."""
