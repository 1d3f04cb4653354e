"""What the `rop` commands share: the one-line usage error, the API client, output."""

from __future__ import annotations

import argparse
import uuid
from datetime import timedelta

from pydantic import BaseModel

from rop_runtime.settings import RopSettings
from starter.pathways import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    Pathways,
    is_idempotency_key,
    keyed_update_id,
)


class UsageError(Exception):
    """The command line itself is wrong; the message says how."""


def print_model(model: BaseModel) -> None:
    print(model.model_dump_json(indent=2))


async def connect_pathways(settings: RopSettings) -> Pathways:
    from rop_runtime.client import connect

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
        workflow_task_timeout=timedelta(seconds=settings.workflow_task_timeout_seconds),
    )


def require_database(settings: RopSettings) -> str:
    if not settings.database_url:
        raise UsageError("set DATABASE_URL (make run prints it)")
    return settings.database_url


def update_id(args: argparse.Namespace) -> str:
    """The step's Temporal Update id, from `--idempotency-key` (one is made if none is given).

    Running the command again with the same key after a timeout cannot apply the step
    twice (`keyed_update_id`).
    """
    key = getattr(args, "idempotency_key", None)
    if key is None:
        key = args.idempotency_key = uuid.uuid4().hex
    if not is_idempotency_key(key):
        raise UsageError(
            f"--idempotency-key: 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable characters"
        )
    return keyed_update_id("cli", key)
