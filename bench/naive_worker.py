"""The baseline Faust worker: one table write per event, nothing else.

``python -m bench.naive_worker --metrics-port P`` with the same ``PRICEWATCH_*`` settings
as a real worker. It uses the real app configuration (``build_topology``: broker options,
RocksDB store, partitions) but registers only this agent, which decodes each observation's
JSON and writes ``table[key] = value`` for every event, changed or not. It counts what it
processed in ``pricewatch_stream_observations_total`` like the real detector, so the
harness measures both the same way.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from prometheus_client import CollectorRegistry, Counter, start_http_server

from pricewatch.settings import Settings
from streams.topology import build_topology

MODES = ("table", "noop", "take")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.naive_worker", description=__doc__)
    parser.add_argument("--worker-id", default="naive")
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="table",
        help="table: the baseline; noop: consume and count only (Faust's own ceiling); "
        "take: like noop, in batches of up to 1000 with stream.take_events",
    )
    args = parser.parse_args(argv)

    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr)
    (settings.data_dir / "workers" / args.worker_id).mkdir(parents=True, exist_ok=True)
    topology = build_topology(settings, args.worker_id)
    table = topology.product_state_table

    registry = CollectorRegistry()
    processed = Counter(
        "pricewatch_stream_observations_total",
        "Observations processed by the naive baseline agent, by outcome.",
        ["outcome"],
        registry=registry,
    )

    counted = processed.labels(outcome="any")

    async def naive_detector(stream: Any) -> None:
        async for key, value in stream.items():
            observation = json.loads(value)
            table[key] = value
            processed.labels(outcome=observation["outcome"]).inc()

    async def noop(stream: Any) -> None:
        async for _event in stream.events():
            counted.inc()

    async def take(stream: Any) -> None:
        async for events in stream.take_events(1000, within=0.05):
            counted.inc(len(events))

    agent = {"table": naive_detector, "noop": noop, "take": take}[args.mode]
    topology.app.agent(topology.price_observations_topic, name=f"naive-{args.mode}")(agent)

    start_http_server(args.metrics_port, addr=settings.metrics_host, registry=registry)

    import faust

    faust.Worker(
        topology.app, loglevel=settings.log_level, override_logging=True
    ).execute_from_commandline()


if __name__ == "__main__":
    main()
