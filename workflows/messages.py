"""What each task says, as the parameters of its template.

The workflow decides what a task is about (which referral, which deadline, which
measure); the texts themselves are templates in `activities/templates/`, in bokmål
and nynorsk, rendered outside the workflow. Parameters name the pathway by its
referral id and never carry the patient's name, national id or clinical content.
"""

from __future__ import annotations

from datetime import date, datetime

Message = dict[str, str]
"""A task's template parameters: dates as ISO strings, formatted by the template."""


def assess_referral(referral_id: str, deadline: date) -> Message:
    return {"referral_id": referral_id, "deadline": deadline.isoformat()}


def referral_not_accepted(referral_id: str) -> Message:
    return {"referral_id": referral_id}


def meeting_invitation(referral_id: str, meeting_at: datetime, place: str) -> Message:
    return {"referral_id": referral_id, "meeting_at": meeting_at.isoformat(), "place": place}


def reach_party(referral_id: str, role: str, meeting_at: datetime) -> Message:
    return {"referral_id": referral_id, "role": role, "meeting_at": meeting_at.isoformat()}


def meeting_reminder(referral_id: str, deadline: date) -> Message:
    return {"referral_id": referral_id, "deadline": deadline.isoformat()}


invite_to_meeting = meeting_reminder
assessment_reminder = meeting_reminder
assessment_escalation = meeting_reminder
meeting_escalation = meeting_reminder
make_crisis_plan = meeting_reminder
crisis_plan_reminder = meeting_reminder
crisis_plan_escalation = meeting_reminder


def revise_crisis_plan(referral_id: str, version: int, due: date) -> Message:
    return {"referral_id": referral_id, "version": str(version), "deadline": due.isoformat()}


crisis_plan_revision_reminder = revise_crisis_plan
crisis_plan_revision_escalation = revise_crisis_plan


def start_measure(referral_id: str, measure_id: str, kind: str) -> Message:
    return {"referral_id": referral_id, "measure_id": measure_id, "measure_kind": kind}


def hold_review(referral_id: str, number: int, due: date) -> Message:
    return {"referral_id": referral_id, "review": str(number), "deadline": due.isoformat()}


review_reminder = hold_review
review_escalation = hold_review


def pathway_closed(referral_id: str, reason: str) -> Message:
    return {"referral_id": referral_id, "reason": reason}
