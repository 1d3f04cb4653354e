"""Every change made to the pathway's code under running pathways, by name, and what this
run does at each.

Pathways run for years, so code changes under them (README, "Changing workflow code under
running pathways"). A change to the commands a pathway issues is made behind
`workflow.patched(ID)`: a run started before it replays the old branch, a run started after
takes the new one. The IDs are written into histories: never renamed, never reused.

Most are asked once, at the run's start (`RunRules.of_this_run`, in a fixed order that every
history carries); a few where runs differ (`INVITE_TASK` in an assessment, `REVISION_CHASE`
and `ESCALATION_TO_THE_UNIT` in the timers, `DELIVERY_WINDOW_PATCH` and `UNDELIVERED_TASK` in
a delivery), through `RunRules.patched`. A run started since `RULES_OF_2026_12` asks that one
patch alone: all the others hold for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import workflow

RECORD_FIRST = "record-then-show"
"""Patch: a step's change shows (search attributes, status, timers) once it is recorded.
Runs started before it showed the change first, and replay them so."""

CONTINUE_WHEN_LONG = "continue-as-new-when-long"
"""Patch: a run continues as new after a review only once its history is long, and watches
one review cycle after another. Runs started before it continued after every review."""

REVISION_CHASE = "crisis-plan-revision-chase"
"""Patch: a crisis plan's revision is chased like a deadline: its task has a due date, and a
plan past it is overdue, reminded of and escalated. Runs started before it only raised the
revision task."""

ANSWERS_BOUNDED_BY_BYTES = "answers-bounded-by-bytes"
"""Patch: the answers kept for repeated Update ids are bounded by age and bytes
(`state.MAX_ANSWER_BYTES`), packed. Runs started before it kept the newest 25."""

DEADLINE_DAY_AT_NOON = "deadline-day-at-noon-utc"
"""Deprecated patch (71fcfd7, removed in 39f5f56 without deprecation): runs started between
them carry its marker at their first publish, so the call stays, as
`workflow.deprecate_patch`, until no running pathway can carry the marker. Which rule a
pathway keeps is decided by its search attributes (`_store_days_at_noon`)."""

ASSESSMENT_DEADLINE = "assessment-deadline"
"""Patch: the referral's assessment deadline (`assessment_working_days` from receipt) is
chased like the meeting's: reminded, escalated, overdue. Runs from before chased the meeting
deadline alone."""

INVITE_TASK = "invite-task-after-assessment"
"""Patch: an assessment that finds the patient in the target group gives the receiving
clinician a task to invite to the avklaringsmøte, due on the meeting deadline. Runs from
before left the clinician's list empty until the reminder."""

OBJECTION_ASKS_CONSENT = "objection-asks-consent"
"""Patch: after an objection to sharing, a task leaving the receiving unit is withheld (not
sent redacted, which still told the party a pathway exists), unless the invite records the
patient's consent for that party; the inviter gets a task to reach the others otherwise.
Runs from before followed `objection_mode` (redact by default)."""

ESCALATION_TO_THE_UNIT = "escalation-to-the-unit"
"""Patch: an escalation for a unit with no leader in the directory goes to the unit itself
and flags the pathway (`RopEscalatedToUnit`). Runs from before sent it to a made-up
`leder:<trust>:<unit>` address nobody receives."""

RECORD_RETRIES_ON_TIMERS = "record-retries-on-timers"
"""Patch: a record-service call that fails is tried again after a durable timer, one attempt
at a time, not in local retries that hold the workflow task open (a query waited for the
task, up to its timeout, while the database was down). Runs started before it retried
locally, within the stall bound, and replay so."""

DELIVERY_WINDOW_PATCH = "delivery-window"
"""Patch: deliveries end with a window in time, not after eight attempts."""


UNDELIVERED_TASK = "task-undelivered-to-the-clinician"
"""Patch: a task no channel delivered (its receiver's AppRec rejected it, or its delivery
window ended) gives the receiving clinician a task to reach the recipient another way. Runs
from before only flagged the pathway (`RopDeliveryFailed`)."""


RULES_OF_2026_12 = "rules-of-2026-12"
"""Patch: a run started since asks one patch where it asked each of the above: every change
above holds for it. Each patch marker comes with an upsert of the `TemporalChangeVersion`
search attribute (the SDK's), so asking twelve patches cost a run twelve markers and twelve
visibility writes. Runs started before it ask each, as their histories carry."""


@dataclass(frozen=True)
class RunRules:
    """What this run does where the code changed under running pathways: each flag is true
    for runs started since its patch, and each branch on an old behaviour reads it here."""

    record_first: bool
    """`RECORD_FIRST`"""
    continue_when_long: bool
    """`CONTINUE_WHEN_LONG`"""
    answers_by_bytes: bool
    """`ANSWERS_BOUNDED_BY_BYTES`"""
    retries_on_timers: bool
    """`RECORD_RETRIES_ON_TIMERS`"""
    objection_withholds: bool
    """`OBJECTION_ASKS_CONSENT`"""
    chases_assessment: bool
    """`ASSESSMENT_DEADLINE`"""
    all_current: bool = False
    """`RULES_OF_2026_12`: every patch holds, asked as one."""

    @classmethod
    def of_this_run(cls) -> RunRules:
        """A run of today's rules asks one patch; one started before asks each, in the order
        runs have always asked them (the markers' order is part of every history since)."""
        if workflow.patched(RULES_OF_2026_12):
            return cls(True, True, True, True, True, True, all_current=True)
        return cls(
            record_first=workflow.patched(RECORD_FIRST),
            continue_when_long=workflow.patched(CONTINUE_WHEN_LONG),
            answers_by_bytes=workflow.patched(ANSWERS_BOUNDED_BY_BYTES),
            retries_on_timers=workflow.patched(RECORD_RETRIES_ON_TIMERS),
            objection_withholds=workflow.patched(OBJECTION_ASKS_CONSENT),
            chases_assessment=workflow.patched(ASSESSMENT_DEADLINE),
        )

    def patched(self, patch_id: str) -> bool:
        """A patch asked where runs differ (in an assessment, a timer, a delivery): true for a
        run of today's rules without a marker of its own, else as `workflow.patched`."""
        return self.all_current or workflow.patched(patch_id)

    def keeps_deprecated_markers(self) -> bool:
        """Whether the run may carry markers of deprecated patches (`DEADLINE_DAY_AT_NOON`):
        only runs started before `RULES_OF_2026_12`."""
        return not self.all_current
