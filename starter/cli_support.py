"""What the `rop` commands share: the one-line usage error, the API client, output."""

from __future__ import annotations

import argparse
import hashlib
import uuid
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
        workflow_task_timeout=timedelta(seconds=settings.workflow_task_timeout_seconds),
    )


def require_database(settings: RopSettings) -> str:
    if not settings.database_url:
        raise UsageError("set DATABASE_URL (make run prints it)")
    return settings.database_url


MAX_KEY_LENGTH = 255


def update_id(args: argparse.Namespace) -> str:
    """The step's Temporal Update id, from `--idempotency-key` (one is made if none is given).

    A pathway applies an Update id once, so running the command again with the same key
    after a timeout cannot apply the step twice. Hashed: Update ids are stored
    unencrypted in the pathway's history.
    """
    key = getattr(args, "idempotency_key", None)
    if key is None:
        key = args.idempotency_key = uuid.uuid4().hex
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise UsageError(f"--idempotency-key: 1 to {MAX_KEY_LENGTH} printable characters")
    return "cli-" + hashlib.sha256(key.encode()).hexdigest()[:40]
