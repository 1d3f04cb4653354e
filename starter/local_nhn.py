"""The local stack's Norsk helsenett: the HelseID and Meldingstjener doubles of `nhn_local/`
(a part of the source tree, not of the wheel) in a process of their own, and the settings and
routes that send the demo's GP and municipality their tasks as Dialogmelding through them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from rop_domain.routing import Channel, Route, RoutingTable
from rop_runtime.settings import RopSettings

NHN_PORT = 8235
SENDER_HER_ADDRESS = "8142987/8143060"
"""The local stack's own HER address (invented: example data, as the directory's)."""
DEMO_ROUTES = (
    Route(
        recipient="9000001",
        channel=Channel.DIALOGMELDING,
        address="112374/8094866",
        name="Eksempel legekontor, fastlege 9000001",
    ),
    Route(
        recipient="fastlege.9000001@example.invalid",
        channel=Channel.DIALOGMELDING,
        address="112374/8094866",
        name="Eksempel legekontor, fastlege 9000001",
    ),
    Route(
        recipient="rop.bergen@example.invalid",
        channel=Channel.DIALOGMELDING,
        address="8142987/8143099",
        name="Eksempel Bergen kommune, ROP-tjenesten",
    ),
)
"""The demo's GP (by HPR number and by the directory's address) and Bergen's municipal
service, at invented HER addresses."""


class LocalNhnError(RuntimeError):
    """The doubles could not start: named with what to do."""


def require_doubles(source: Path) -> None:
    """Raise `LocalNhnError` unless `source` holds `nhn_local/` (checked before any server
    starts)."""
    if not (source / "nhn_local" / "__main__.py").is_file():
        raise LocalNhnError(
            f"{source} holds no nhn_local/: the local Norsk helsenett comes with the source "
            "tree (make run), not with the wheel"
        )


@contextlib.asynccontextmanager
async def with_local_norsk_helsenett(
    settings: RopSettings, source: Path
) -> AsyncIterator[RopSettings]:
    """Run `python -m nhn_local` from `source` until the block ends; `settings` as the worker
    needs them to reach it (a routing file of the demo's routes unless one is configured)."""
    require_doubles(source)
    folder = settings.data_dir / "nhn"
    environment = {**os.environ, "PYTHONPATH": str(source.resolve())}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nhn_local",
        "--port",
        str(NHN_PORT),
        "--folder",
        str(folder),
        env=environment,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            line = await process.stdout.readline()
        if not line:
            raise LocalNhnError(
                f"the local Norsk helsenett stopped at its start (is port {NHN_PORT} taken?)"
            )
        ready = json.loads(line)
        routing_file = settings.routing_file
        if routing_file is None:
            routing_file = folder / "routes.json"
            routing_file.write_text(
                RoutingTable(routes=list(DEMO_ROUTES)).model_dump_json(indent=2),
                encoding="utf-8",
            )
        yield settings.model_copy(
            update={
                "nhn_meldingstjener_url": ready["nhn_meldingstjener_url"],
                "nhn_sender_her_address": settings.nhn_sender_her_address or SENDER_HER_ADDRESS,
                "helseid_token_endpoint": ready["helseid_token_endpoint"],
                "helseid_client_id": ready["helseid_client_id"],
                "helseid_key_file": Path(ready["helseid_key_file"]),
                "routing_file": routing_file,
            }
        )
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
