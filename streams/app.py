"""Build the stream worker: the topology plus every agent and timer."""

from __future__ import annotations

import faust

from pricewatch.metrics import serve_metrics
from pricewatch.settings import Settings
from streams.agents import detector, gauges, matcher, scheduler
from streams.faust_compat import check_faust_version
from streams.topology import Topology, build_topology


def create_worker_topology(settings: Settings, worker_id: str = "w0") -> Topology:
    topology = build_topology(settings, worker_id)
    detector.register(topology)
    matcher.register(topology)
    scheduler.register(topology)
    gauges.register(topology)
    return topology


def run_worker(settings: Settings, worker_id: str = "w0", metrics_port: int | None = None) -> None:
    """Run one stream worker until SIGINT/SIGTERM (blocks; owns the event loop)."""
    check_faust_version()
    (settings.data_dir / "workers" / worker_id).mkdir(parents=True, exist_ok=True)
    topology = create_worker_topology(settings, worker_id)
    serve_metrics(metrics_port or settings.metrics_port, settings.metrics_host)
    worker = faust.Worker(
        topology.app,
        loglevel=settings.log_level,
        override_logging=True,
    )
    worker.execute_from_commandline()
