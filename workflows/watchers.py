"""The pathway's clock: durable timers for reminders, escalations, revisions and reviews.

Each watcher waits until its step is settled or its instant comes, whichever is
first; the flags it sets live in the state, so nothing is sent twice, even across
continue-as-new. Watchers go by the state as recorded (`_visible()`): a step still
being recorded, which may yet be refused, settles nothing. They reach the state's parts
through `self._state` when they change them, never through a reference held across a wait,
since a refused step puts back the parts it changed.
"""

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import date, datetime, time

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from rop_domain import calendar, deadlines
    from rop_domain.commands import EventKind, SummaryChange
    from rop_domain.followup import CrisisPlan
    from rop_domain.models import (
        Phase,
    )
    from rop_domain.state import Chase, ReviewCycle
    from rop_domain.tasks import About, TaskKind
    from workflows import metrics
    from workflows.effects import SYSTEM_ACTOR
    from workflows.timers import settled_before

# Part of the workflow class: imported into the sandbox with it, not passed through.
from workflows.patches import ESCALATION_TO_THE_UNIT, REVISION_CHASE
from workflows.pathway_base import PathwayBase


class PathwayWatchers(PathwayBase):
    """The timers of one pathway, started by `RopPathway.run` for each run."""

    async def _watch_meeting_deadline(self) -> None:
        """Remind before the meeting deadline, escalate when it has passed."""
        if self._visible().phase not in (Phase.AWAITING_ASSESSMENT, Phase.AWAITING_INVITE):
            return
        await workflow.wait_condition(lambda: self._intake_done)
        about = About(deadline=self._deadline)
        await self._chase(
            deadline=self._deadline,
            settled=lambda: self._visible().invite is not None or self._ended(),
            chase=lambda: self._state.meeting_chase,
            label="invite to avklaringsmøte",
            remind=lambda: self._send_reminder(
                EventKind.MEETING_REMINDER_SENT, TaskKind.INVITE_TO_MEETING_REMINDER, about
            ),
            escalate=lambda: self._escalate(
                EventKind.MEETING_OVERDUE,
                TaskKind.MEETING_DEADLINE_ESCALATION,
                about,
                SummaryChange(overdue=True),
            ),
        )

    async def _watch_assessment_deadline(self) -> None:
        """Remind before the assessment deadline, escalate when it has passed."""
        if self._visible().phase is not Phase.AWAITING_ASSESSMENT:
            return
        await workflow.wait_condition(lambda: self._intake_done)
        day = self._assessment_deadline.day
        about = About(deadline=day)
        await self._chase(
            deadline=day,
            settled=lambda: self._visible().assessment is not None or self._ended(),
            chase=lambda: self._state.assessment_chase,
            label="assess the referral",
            remind=lambda: self._send_reminder(
                EventKind.ASSESSMENT_REMINDER_SENT, TaskKind.ASSESSMENT_REMINDER, about
            ),
            escalate=lambda: self._escalate(
                EventKind.ASSESSMENT_OVERDUE,
                TaskKind.ASSESSMENT_ESCALATION,
                about,
                SummaryChange(overdue=True),
            ),
        )

    async def _follow_up(self) -> None:
        """After the meeting: the crisis plan's deadline and revisions, and the review cycle."""
        await workflow.wait_condition(
            lambda: self._visible().phase is Phase.FOLLOW_UP or self._ended()
        )
        if self._ended():
            return
        await asyncio.gather(
            self._watch_crisis_plan_deadline(),
            self._watch_crisis_plan_revision(),
            self._watch_reviews(),
        )

    async def _chase(
        self,
        *,
        deadline: date,
        settled: Callable[[], bool],
        chase: Callable[[], Chase],
        label: str,
        remind: Callable[[], Awaitable[None]],
        escalate: Callable[[], Awaitable[None]],
    ) -> None:
        """Reminder at the reminder hour some working days before `deadline`; escalation at
        the end of the deadline day. Each is sent once, even across continue-as-new."""
        await self._chase_steps(
            settled,
            chase,
            [
                (
                    "reminded",
                    deadlines.reminder_at(deadline, self._settings),
                    f"remind: {label}",
                    remind,
                ),
                ("escalated", calendar.end_of_day(deadline), f"escalate: {label}", escalate),
            ],
        )

    async def _chase_steps(
        self,
        settled: Callable[[], bool],
        chase: Callable[[], Chase],
        steps: Sequence[tuple[str, datetime, str, Callable[[], Awaitable[None]]]],
    ) -> None:
        for flag, instant, summary, action in steps:
            if getattr(chase(), flag):
                continue
            when = instant.astimezone(calendar.OSLO)
            if await settled_before(instant, settled, f"{summary}, {when:%d.%m.%Y %H:%M}"):
                return
            async with self._applying():
                if settled():
                    return
                setattr(chase(), flag, True)
                self._publish_before_record()
                await action()

    async def _send_reminder(
        self,
        event: EventKind,
        task: TaskKind,
        about: About,
        *,
        change: SummaryChange | None = None,
        stage: str = "reminder",
        undated: bool = False,
    ) -> None:
        """A timer's step: its event, and the task the task table says."""
        await (
            self._effects.step(event, actor=SYSTEM_ACTOR, change=change)
            .raise_task(task, about, undated=undated)
            .commit()
        )
        metrics.count_chase(stage, task.value)

    async def _escalate(
        self, event: EventKind, task: TaskKind, about: About, change: SummaryChange
    ) -> None:
        """Raise the escalation to the unit's leader as the directory names it (due when what
        it chases was due, so it lists as overdue at once: a leader acts on what is already
        late)."""
        workflow.logger.warning("deadline escalated", extra={"escalation": task.value})
        recipient = await self._effects.unit_leader()
        if recipient is None:
            if self._rules.patched(ESCALATION_TO_THE_UNIT):
                workflow.logger.error("escalation without a unit leader: sent to the unit")
                recipient = self._effects.unit_itself()
                self._state.escalated_to_unit += 1
            else:
                recipient = self._effects.leader_role_address()
        await self._send_reminder(
            event, task, replace(about, leader=recipient), change=change, stage="escalation"
        )

    async def _watch_crisis_plan_deadline(self) -> None:
        recorded = self._visible()
        deadline, meeting = self._crisis_plan_deadline(recorded), recorded.meeting
        if deadline is None or meeting is None or recorded.crisis_plan is not None:
            return
        about = About(deadline=deadline)
        await self._chase(
            deadline=deadline,
            settled=lambda: self._visible().crisis_plan is not None or self._ended(),
            chase=lambda: self._state.crisis_chase,
            label="kriseplan",
            remind=lambda: self._send_reminder(
                EventKind.CRISIS_PLAN_REMINDER_SENT, TaskKind.CRISIS_PLAN_REMINDER, about
            ),
            escalate=lambda: self._escalate(
                EventKind.CRISIS_PLAN_OVERDUE,
                TaskKind.CRISIS_PLAN_ESCALATION,
                about,
                SummaryChange(crisis_plan_overdue=True, overdue=True),
            ),
        )

    async def _watch_crisis_plan_revision(self) -> None:
        """Raise a task when the current crisis plan's revision falls due."""
        meeting = self._visible().meeting
        if meeting is None:
            return
        while True:
            await workflow.wait_condition(
                lambda: self._visible().crisis_plan is not None or self._ended()
            )
            plan = self._visible().crisis_plan
            if plan is None or self._ended():
                return

            def replaced(version: int = plan.version) -> bool:
                current = self._visible().crisis_plan
                return self._ended() or current is None or current.version != version

            # Asked here, where runs from before the patch differ, not at the run's start.
            chased = self._rules.patched(REVISION_CHASE)
            if self._state.crisis_revision_raised_for != plan.version:
                due_at = calendar.at_local_time(
                    plan.next_revision, time(self._settings.reminder_hour)
                )
                when = due_at.astimezone(calendar.OSLO)
                summary = f"crisis plan version {plan.version} revision due, {when:%d.%m.%Y %H:%M}"
                if not await settled_before(due_at, replaced, summary):
                    async with self._applying():
                        if not replaced():
                            self._state.crisis_revision_raised_for = plan.version
                            await self._send_reminder(
                                EventKind.CRISIS_PLAN_REVISION_DUE,
                                TaskKind.REVISE_CRISIS_PLAN,
                                About(version=plan.version, deadline=plan.next_revision),
                                # Runs from before the patch raised it without a due date.
                                undated=not chased,
                            )
            if chased:
                await self._chase_revision(plan, replaced)
            await workflow.wait_condition(replaced)

    async def _chase_revision(self, plan: CrisisPlan, replaced: Callable[[], bool]) -> None:
        """A version not revised by the end of its revision day is overdue: remind its
        responsible then, escalate to the unit's leader some working days later."""
        due = plan.next_revision
        about = About(version=plan.version, deadline=due)
        escalation_day = calendar.add_working_days(
            due, self._settings.review_escalation_working_days, self._settings.working_day_rule
        )
        overdue = SummaryChange(crisis_plan_overdue=True, overdue=True)
        await self._chase_steps(
            replaced,
            lambda: self._state.revision_chase,
            [
                (
                    "reminded",
                    calendar.end_of_day(due),
                    f"crisis plan version {plan.version} revision overdue",
                    lambda: self._send_reminder(
                        EventKind.CRISIS_PLAN_REVISION_OVERDUE,
                        TaskKind.CRISIS_PLAN_REVISION_REMINDER,
                        about,
                        change=overdue,
                    ),
                ),
                (
                    "escalated",
                    calendar.end_of_day(escalation_day),
                    f"escalate: crisis plan version {plan.version} revision",
                    lambda: self._escalate(
                        EventKind.CRISIS_PLAN_REVISION_ESCALATED,
                        TaskKind.CRISIS_PLAN_REVISION_ESCALATION,
                        about,
                        overdue,
                    ),
                ),
            ],
        )

    async def _watch_reviews(self) -> None:
        """One review cycle after another, until the pathway ends or the run does."""
        while not self._ended():
            cycle = self._visible().review
            if cycle is None:
                return
            number = cycle.number
            await self._watch_review()
            if not self._rules.continue_when_long:
                return  # runs from before the patch continued as new after each review
            # After an escalation the watch is over but the review may still be open.
            await workflow.wait_condition(functools.partial(self._review_settled, number))

    def _review_settled(self, number: int) -> bool:
        """Review `number` is behind us: completed (the cycle moved on), or the pathway ended."""
        review = self._visible().review
        return self._ended() or review is None or review.number != number

    async def _watch_review(self) -> None:
        """Raise the review task when due; remind when overdue, escalate some days later."""
        recorded = self._visible()
        cycle, meeting = recorded.review, recorded.meeting
        if cycle is None or meeting is None:
            return

        done = functools.partial(self._review_settled, cycle.number)
        about = About(review=cycle.number, deadline=cycle.due)

        def current() -> ReviewCycle:
            # The cycle this watcher chases, as the state holds it now (not `done()`).
            review = self._state.review
            assert review is not None
            return review

        if not cycle.task_raised:
            due_at = calendar.at_local_time(cycle.due, time(self._settings.reminder_hour))
            when = due_at.astimezone(calendar.OSLO)
            if await settled_before(
                due_at, done, f"review {cycle.number} due, {when:%d.%m.%Y %H:%M}"
            ):
                return
            async with self._applying():
                if done():
                    return
                current().task_raised = True
                await self._send_reminder(EventKind.REVIEW_DUE, TaskKind.HOLD_REVIEW, about)
        escalation_day = calendar.add_working_days(
            cycle.due,
            self._settings.review_escalation_working_days,
            self._settings.working_day_rule,
        )
        await self._chase_steps(
            done,
            lambda: current().chase,
            [
                (
                    "reminded",
                    calendar.end_of_day(cycle.due),
                    f"review {cycle.number} overdue",
                    lambda: self._send_reminder(
                        EventKind.REVIEW_OVERDUE,
                        TaskKind.REVIEW_REMINDER,
                        about,
                        change=SummaryChange(review_overdue=True, overdue=True),
                    ),
                ),
                (
                    "escalated",
                    calendar.end_of_day(escalation_day),
                    f"escalate: review {cycle.number}",
                    lambda: self._escalate(
                        EventKind.REVIEW_ESCALATED,
                        TaskKind.REVIEW_ESCALATION,
                        about,
                        SummaryChange(review_overdue=True, overdue=True),
                    ),
                ),
            ],
        )
