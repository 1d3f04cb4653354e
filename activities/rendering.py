"""Task texts from templates, in bokmål or nynorsk, as plain text and HTML.

Each template (`activities/templates/<nb|nn>/<task kind>.txt`) has the subject on its
first line and the body after it. Dates come in as ISO strings and are written as
Norwegians write them, in Norwegian time: 20.04.2026, 20.04.2026 kl. 10:00.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

import jinja2

from rop_domain import calendar
from rop_domain.models import WrittenStandard

__all__ = ["RenderedMessage", "WrittenStandard", "render_task"]


@dataclass(frozen=True)
class RenderedMessage:
    """A task as a person reads it."""

    subject: str
    text: str
    html: str


def _date(value: object) -> str:
    value = str(value)  # a missing parameter raises here, naming itself
    parsed = datetime.fromisoformat(value)
    day = calendar.local_date(parsed) if parsed.tzinfo else date.fromisoformat(value[:10])
    return day.strftime("%d.%m.%Y")


def _date_time(value: object) -> str:
    return (
        datetime.fromisoformat(str(value)).astimezone(calendar.OSLO).strftime("%d.%m.%Y kl. %H:%M")
    )


# Templates ship with the package and change only with a deployment: no file check per
# render (auto_reload), which cost a stat per template on every task raised.
_TEXT = jinja2.Environment(
    loader=jinja2.PackageLoader("activities", "templates"),
    auto_reload=False,
    undefined=jinja2.StrictUndefined,
    autoescape=False,  # noqa: S701 - plain text; the HTML environment below escapes
    keep_trailing_newline=False,
)
_TEXT.filters["dato"] = _date
_TEXT.filters["dato_tid"] = _date_time
_HTML = jinja2.Environment(
    loader=jinja2.PackageLoader("activities", "templates"),
    auto_reload=False,
    undefined=jinja2.StrictUndefined,
    autoescape=True,
)


def render_task(
    kind: str,
    params: Mapping[str, str],
    standard: WrittenStandard = WrittenStandard.BOKMAL,
    *,
    redacted: bool = False,
    link: str | None = None,
) -> RenderedMessage:
    """The subject, text and HTML of a task. `redacted`: the generic text that carries no
    patient-related content (after the patient objected to sharing)."""
    name = "redacted" if redacted else kind
    rendered = _TEXT.get_template(f"{standard.value}/{name}.txt").render(
        **({} if redacted else params)
    )
    subject, _, body = rendered.partition("\n")
    link_text = "Åpne oppgaven" if standard is WrittenStandard.BOKMAL else "Opne oppgåva"
    html = _HTML.get_template("layout.html").render(
        lang=standard.value, subject=subject, body=body.strip(), link=link, link_text=link_text
    )
    text = body.strip() + (f"\n\n{link_text}: {link}" if link else "")
    return RenderedMessage(subject=subject.strip(), text=text, html=html)
