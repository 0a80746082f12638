"""Prometheus exposition for every process: one HTTP endpoint per process on its own port."""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

log = logging.getLogger(__name__)


def serve_metrics(port: int | None, host: str = "127.0.0.1") -> None:
    """Expose /metrics on ``port`` (None or 0: no endpoint, e.g. in-process tests)."""
    if port:
        start_http_server(port, addr=host)
        log.info("metrics on http://%s:%d/metrics", host, port)
