"""`python -m nhn_local --port P --folder DIR`: the HelseID and Meldingstjener doubles, serving
until SIGINT/SIGTERM, for the local stack (`rop stack --local-nhn`).

It writes the client's private key to DIR and prints one JSON line with what the worker's
settings need (`ROP_HELSEID_TOKEN_ENDPOINT`, `ROP_HELSEID_CLIENT_ID`, `ROP_HELSEID_KEY_FILE`,
`ROP_NHN_MELDINGSTJENER_URL`), then serves. Every receiver answers `Ok`, except those named
with `--reject HER_ID` (answered `Rejected`, code E10), so a refused message can be tried too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

from nhn_local.doubles import CLIENT_ID, norsk_helsenett

READY = "nhn-local ready"


async def serve(port: int, folder: Path, rejected: list[int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    async with norsk_helsenett(folder, port) as network:
        for her_id in rejected:
            network.meldingstjener.receipts[her_id] = ("Rejected", ["E10"])
        ready = {
            "ready": READY,
            "helseid_token_endpoint": network.helseid.token_endpoint,
            "helseid_client_id": CLIENT_ID,
            "helseid_key_file": str(network.client_key_file.resolve()),
            "nhn_meldingstjener_url": network.meldingstjener.url,
        }
        print(json.dumps(ready), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m nhn_local", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--reject", type=int, action="append", default=[], metavar="HER_ID")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.folder, args.reject))


if __name__ == "__main__":
    main()
