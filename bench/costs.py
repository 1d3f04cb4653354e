"""`make bench-costs`: what each thing a pathway does costs the Temporal server, one at a time.

The pathway differs from the local-activity floor (`bench.baseline.FloorPathway`) in several
ways at once: it upserts search attributes, starts and cancels timers, answers each Update
with its whole status, asks a patch at its start, and records through PostgreSQL. `make
bench` measures the sum; this measures the parts. Each variant is the floor plus one feature
(per Update unless said), run on the same dev server and worker, the variants alternating
in rounds; it prints the Temporal server's CPU per pathway and the throughput of each, and
each one's difference to the floor. Not a test: what a feature costs is a number to quote.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import uuid
from collections import defaultdict

from temporalio.client import Client
from temporalio.worker import Worker

from bench.baseline import UPDATES_PER_PATHWAY, CostVariant, Feature, baseline_noop
from bench.pathways import Timer, cpu_seconds, drive, local_servers, temporal_server_process
from workflows.sandbox import workflow_runner

QUEUE = "rop-bench-costs"


def features_of(feature: Feature) -> list[Feature]:
    if feature is Feature.ALL:
        return [Feature.UPSERT, Feature.TIMER, Feature.ANSWER, Feature.PATCH]
    return [] if feature is Feature.NONE else [feature]


async def one_variant(client: Client, feature: Feature, timer: Timer) -> str:
    handle = await client.start_workflow(
        CostVariant.run,
        features_of(feature),
        id=f"cost-{uuid.uuid4().hex}",
        task_queue=QUEUE,
    )
    for _ in range(UPDATES_PER_PATHWAY):
        await timer(handle.execute_update(CostVariant.step))
    await handle.result()
    return handle.id


async def main(count: int, rounds: int) -> None:
    server_ms: dict[Feature, list[float]] = defaultdict(list)
    rates: dict[Feature, list[float]] = defaultdict(list)
    async with (
        local_servers("costs") as (client, _),
        Worker(
            client,
            task_queue=QUEUE,
            workflows=[CostVariant],
            activities=[baseline_noop],
            workflow_runner=workflow_runner(False),
        ),
    ):
        server = temporal_server_process()
        timer = Timer()
        features = list(Feature)
        for feature in features:  # warm
            await drive(4, 4, functools.partial(one_variant, client, feature, timer))
        for number in range(rounds):
            turn = number % len(features)
            for feature in features[turn:] + features[:turn]:
                before = cpu_seconds(server)
                seconds, _ = await drive(
                    count, 10, functools.partial(one_variant, client, feature, timer)
                )
                server_ms[feature].append((cpu_seconds(server) - before) / count * 1000)
                rates[feature].append(count / seconds)
    floor = statistics.median(server_ms[Feature.NONE])
    print(
        f"{count} workflows of each variant per round, {rounds} rotating rounds, "
        f"{UPDATES_PER_PATHWAY} Updates each; medians of rounds"
    )
    print(f"{'variant':48s} {'Temporal CPU ms/pathway':>24s} {'vs floor':>9s} {'pathways/s':>11s}")
    for feature in Feature:
        ms = statistics.median(server_ms[feature])
        print(
            f"{feature.value:48s} {ms:24.1f} {ms - floor:+9.1f} "
            f"{statistics.median(rates[feature]):11.1f}"
        )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pathways", type=int, default=200, help="of each variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.pathways, args.rounds))


if __name__ == "__main__":
    cli()
