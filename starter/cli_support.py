"""What the `rop` commands share: the one-line usage error, the API client, output."""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import NoReturn

from pydantic import BaseModel
from temporalio.client import Client

from rop_runtime.settings import RopSettings, running_stack_file
from starter.pathways import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    Pathways,
    is_idempotency_key,
    keyed_update_id,
    pathways_from_settings,
)


class UsageError(Exception):
    """The command line itself is wrong; the message says how."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit 1, as every other error
    of `rop` (argparse's own prints the whole usage block and exits 2)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(1)


def print_model(model: BaseModel) -> None:
    print(model.model_dump_json(indent=2))


async def connect_pathways(settings: RopSettings) -> Pathways:
    return pathways_from_settings(await connect_client(settings), settings)


async def connect_client(settings: RopSettings) -> Client:
    """A Temporal client as settings say, or one line saying why there is none."""
    from rop_runtime.client import TemporalConfigError, connect, connect_config

    try:
        address = connect_config(settings)["target_host"]
        client = await connect(settings)
    except TemporalConfigError as error:
        raise UsageError(str(error)) from None
    except RuntimeError as error:
        raise UsageError(
            f"cannot reach Temporal at {address} (is `make run` running?): "
            f"{str(error).splitlines()[0]}"
        ) from None
    return client


LOCAL_DATABASE_URL = "database-url"
"""Where a running local stack (`make run`) leaves its database URL, in its data folder."""


def require_database(settings: RopSettings) -> str:
    """DATABASE_URL, or the local stack's while it runs (as its API keys are found)."""
    if settings.database_url:
        return settings.database_url
    local = settings.data_dir / LOCAL_DATABASE_URL
    if local.is_file():
        return local.read_text(encoding="utf-8").strip()
    raise UsageError(
        f"set DATABASE_URL, or start the local stack (`make run`), which leaves its own in "
        f"{local} (not there) and names its folder in {running_stack_file()} (not there either)"
    )


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
