"""What the `rop` commands share: the one-line usage error, the API client, output."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

from starter.pathways import Pathways
from starter.settings import RopSettings


class UsageError(Exception):
    """The command line itself is wrong; the message says how."""


def print_model(model: BaseModel) -> None:
    print(model.model_dump_json(indent=2))


async def connect_pathways(settings: RopSettings) -> Pathways:
    from starter.client import connect

    try:
        client = await connect(settings)
    except RuntimeError as error:
        raise UsageError(
            f"cannot reach Temporal at {settings.temporal_address} (is `make run` running?): "
            f"{str(error).splitlines()[0]}"
        ) from None
    return Pathways(
        client,
        task_queue=settings.task_queue,
        pathway_settings=settings.pathway_settings(),
        answer_timeout=timedelta(seconds=settings.answer_timeout_seconds),
    )


def require_database(settings: RopSettings) -> str:
    if not settings.database_url:
        raise UsageError("set DATABASE_URL (make run prints it)")
    return settings.database_url
