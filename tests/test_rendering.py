"""Task texts: every kind in bokmål and nynorsk, plain text and HTML, and no personal data."""

from __future__ import annotations

import jinja2
import pytest

from activities.rendering import WrittenStandard, render_task
from rop_domain.tasks import TaskKind
from tests import factories

NATIONAL_ID = factories.national_id("150586951")
PATIENT_REFERENCE = "pseudo-123"


@pytest.mark.parametrize("standard", list(WrittenStandard))
@pytest.mark.parametrize("kind", list(TaskKind))
def test_every_task_renders_without_personal_data(
    kind: TaskKind, standard: WrittenStandard
) -> None:
    message = render_task(
        kind.value, factories.TASK_PARAMS, standard, link="https://rop.example/t/7"
    )
    assert message.subject
    assert message.text
    assert f'<html lang="{standard.value}">' in message.html
    assert "https://rop.example/t/7" in message.text
    assert "https://rop.example/t/7" in message.html
    for rendered in (message.subject, message.text, message.html):
        assert NATIONAL_ID not in rendered
        assert PATIENT_REFERENCE not in rendered
        assert "{{" not in rendered


def test_subjects_say_what_to_do_and_by_when() -> None:
    bokmal = render_task(TaskKind.INVITE_TO_MEETING_REMINDER.value, factories.TASK_PARAMS)
    assert bokmal.subject == "Påminnelse: kall inn til avklaringsmøte innen 20.04.2026"
    nynorsk = render_task(
        TaskKind.INVITE_TO_MEETING_REMINDER.value, factories.TASK_PARAMS, WrittenStandard.NYNORSK
    )
    assert nynorsk.subject == "Påminning: kall inn til avklaringsmøte innan 20.04.2026"


def test_meeting_time_is_written_in_norwegian_time() -> None:
    params = factories.TASK_PARAMS | {"meeting_at": "2026-12-01T09:30:00+00:00"}
    message = render_task(TaskKind.MEETING_INVITATION.value, params)
    assert message.subject == "Innkalling til avklaringsmøte 01.12.2026 kl. 10:30"


def test_html_escapes_what_it_is_given() -> None:
    params = factories.TASK_PARAMS | {"place": "<script>alert(1)</script>"}
    message = render_task(TaskKind.MEETING_INVITATION.value, params)
    assert "<script>" not in message.html
    assert "&lt;script&gt;" in message.html


def test_redacted_tasks_say_nothing_about_the_pathway() -> None:
    message = render_task(TaskKind.START_MEASURE.value, factories.TASK_PARAMS, redacted=True)
    assert message.subject == "Ny oppgave i ROP-forløp"
    for value in factories.TASK_PARAMS.values():
        assert value not in message.text


def test_a_missing_parameter_is_an_error_not_a_blank() -> None:
    with pytest.raises(jinja2.UndefinedError, match="deadline"):
        render_task(TaskKind.ASSESS_REFERRAL.value, {"referral_id": "R-1"})
