"""Run the whole pipeline as child processes: what ``pricewatch demo`` and the end-to-end
tests start. Embedded broker and PostgreSQL when none are configured."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from launcher.embedded.broker import EmbeddedBroker
from launcher.embedded.postgres import create_database_if_missing, start_embedded_postgres
from launcher.processes import Process, free_port, pricewatch_command
from pricewatch.kafka import create_topics, wait_for_broker
from pricewatch.settings import Settings
from pricewatch.tokens import local_secret_key

log = logging.getLogger(__name__)


@dataclass
class Stack:
    """Broker, database, stream workers, scrapers, sinks, API and (optionally) demo shop."""

    settings: Settings
    workers: int = 1
    scrapers: int = 1
    with_demo_shop: bool = True
    # One process for the scraper, every sink, the API and the demo shop (``pricewatch
    # together``), beside the workers: what the demo runs, light at rest. Off: one process
    # per role, as docker-compose deploys them.
    together: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    children: list[Process] = field(default_factory=list)
    broker: EmbeddedBroker | None = None
    postgres: Any = None
    # Child name -> the port of its /metrics endpoint (the API's too: never on its public
    # port). settings.metrics_port, when set, is the first port and each child takes the
    # next; unset, every child gets a free port.
    metrics_ports: dict[str, int] = field(default_factory=dict)

    @property
    def logs_dir(self) -> Path:
        return self.settings.data_dir / "logs"

    def start(self) -> Stack:
        settings = self.settings
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        updates: dict[str, Any] = {}
        if not settings.kafka_bootstrap_servers:
            self.broker = EmbeddedBroker(log_path=self.logs_dir / "broker.log").start()
            updates.update(
                kafka_bootstrap_servers=self.broker.bootstrap_servers, kafka_embedded=True
            )
            # The embedded broker keeps topics in memory: worker table stores from an
            # earlier run would describe topics that no longer exist.
            shutil.rmtree(settings.data_dir / "workers", ignore_errors=True)
        if settings.secret_key is None:
            updates["secret_key"] = SecretStr(local_secret_key(settings.data_dir))
        if not settings.database_url:
            self.postgres, server_url = start_embedded_postgres(settings.data_dir)
            updates["database_url"] = create_database_if_missing(server_url, "pricewatch")
        self.settings = settings = settings.model_copy(update=updates)

        asyncio.run(self._prepare())
        from pricewatch.db.engine import upgrade

        upgrade(settings.database())

        if self.together:
            return self._start_together()
        if self.with_demo_shop:
            shop = self._spawn("demo-shop", ["demo-shop"])
            shop.wait_for_port(settings.api_host, settings.demo_shop_port, 20)
        for i in range(self.workers):
            self._spawn_measured(f"worker-{i}", ["worker", "--worker-id", f"w{i}"])
        for i in range(self.scrapers):
            self._spawn_measured(f"scraper-{i}", ["scraper"])
        self._spawn_measured("postgres-sink", ["sink", "postgres"])
        self._spawn_measured("subscriptions-sink", ["sink", "subscriptions"])
        self._spawn_measured("events-sink", ["sink", "events"])
        self._spawn_measured("email-sink", ["sink", "email"])
        self._spawn_measured("channels-sink", ["sink", "channels"])
        if settings.s3_bucket:
            self._spawn_measured("archive-sink", ["sink", "archive"])
        api = self._spawn_measured("api", ["api"])
        api.wait_for_port(settings.api_host, settings.api_port, 30)
        return self

    def _start_together(self) -> Stack:
        settings = self.settings
        for i in range(self.workers):
            self._spawn_measured(f"worker-{i}", ["worker", "--worker-id", f"w{i}"])
        roles = ["sinks", "api"]
        roles += ["scraper"] if self.scrapers else []
        roles += ["demo-shop"] if self.with_demo_shop else []
        together = self._spawn_measured("together", ["together", *roles])
        for i in range(1, self.scrapers):
            self._spawn_measured(f"scraper-{i}", ["scraper"])
        if self.with_demo_shop:
            together.wait_for_port(settings.api_host, settings.demo_shop_port, 30)
        together.wait_for_port(settings.api_host, settings.api_port, 30)
        return self

    def metrics_urls(self) -> dict[str, str]:
        """Child name -> its /metrics URL."""
        return {
            name: f"http://{self.settings.metrics_host}:{port}/metrics"
            for name, port in self.metrics_ports.items()
        }

    def _spawn_measured(self, name: str, args: list[str]) -> Process:
        base = self.settings.metrics_port
        port = base + len(self.metrics_ports) if base else free_port()
        self.metrics_ports[name] = port
        return self._spawn(name, [*args, "--metrics-port", str(port)])

    async def _prepare(self) -> None:
        await wait_for_broker(self.settings.bootstrap())
        await create_topics(self.settings)

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        for name, value in self.settings.model_dump().items():
            key = f"PRICEWATCH_{name.upper()}"
            if value is None:
                env.pop(key, None)
            elif isinstance(value, SecretStr):
                env[key] = value.get_secret_value()
            elif isinstance(value, list):
                env[key] = ",".join(str(item) for item in value)  # e.g. trusted_proxies
            else:
                env[key] = str(value).lower() if isinstance(value, bool) else str(value)
        # One port per child, passed as --metrics-port: a shared PRICEWATCH_METRICS_PORT
        # would have every child bind the same port.
        env.pop("PRICEWATCH_METRICS_PORT", None)
        if self.settings.secret_key is None:
            # Children started without start() (benchmarks) share the demo's key too.
            env["PRICEWATCH_SECRET_KEY"] = local_secret_key(self.settings.data_dir)
        env.update(self.extra_env)
        return env

    def _spawn(self, name: str, args: list[str]) -> Process:
        child = Process(
            name, pricewatch_command(*args), self.logs_dir / f"{name}.log", env=self.child_env()
        )
        self.children.append(child.start())
        return child

    def dead_children(self) -> list[Process]:
        return [c for c in self.children if c.returncode is not None]

    def stop(self, timeout: float = 20.0) -> None:
        # Every child is told at once, in reverse start order, and has until one deadline.
        for child in reversed(self.children):
            child.terminate()
        deadline = time.monotonic() + timeout
        for child in reversed(self.children):
            child.stop(deadline - time.monotonic())
        self.children.clear()
        self.metrics_ports.clear()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        if self.postgres is not None:
            self.postgres.cleanup()
            self.postgres = None

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
