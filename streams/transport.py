"""Faust's aiokafka transport with a configurable fetch wait.

faust-streaming hard-codes ``fetch_max_wait_ms=1500`` for worker consumers. A real Kafka
broker answers a waiting fetch as soon as data arrives, so there the wait costs no latency;
the embedded tansu broker answers only when the wait runs out, which put ~0.4 s (up to
1.5 s) on every hop of an observation (bench/e2e.py measured it). The wait comes from
``Settings.fetch_max_wait_ms`` through ``PricewatchApp.fetch_max_wait_ms``.
"""

from __future__ import annotations

from typing import Any

from faust.transport import drivers
from faust.transport.drivers import aiokafka as faust_aiokafka

SCHEME = "pricewatch-kafka"


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            # Read by AIOKafkaConsumer.start() when it builds its fetcher.
            consumer._fetch_max_wait_ms = wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> Any:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


def broker_urls(bootstrap_servers: str) -> list[str]:
    """Faust broker URLs for ``host:port[,host:port]`` that select this transport."""
    return [f"{SCHEME}://{server.strip()}" for server in bootstrap_servers.split(",")]


drivers.TRANSPORTS.data[SCHEME] = f"{__name__}:Transport"
