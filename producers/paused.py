"""Websites an admin paused (``websites.paused`` in PostgreSQL): their pages are not fetched.

Scrape requests are keyed by host, so each host's requests reach one scraper; every scraper
keeps the set of paused hosts and re-reads it every ``paused_hosts_refresh_seconds``. A
database that cannot be read keeps the last set known (checks go on as they were; a log
line says so): pausing is an admin convenience, not a reason to stop every scraper.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg

log = logging.getLogger(__name__)

PAUSED_HOSTS_SQL = "SELECT host FROM websites WHERE paused"


def _conninfo(database_url: str) -> str:
    # SQLAlchemy-style URLs name their driver; psycopg wants the plain scheme.
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def load_paused_hosts(database_url: str) -> frozenset[str]:
    with psycopg.connect(_conninfo(database_url), connect_timeout=5) as connection:
        rows = connection.execute(PAUSED_HOSTS_SQL).fetchall()
    return frozenset(str(host).lower() for (host,) in rows)


class PausedHosts:
    """The hosts not to fetch, refreshed in the background."""

    def __init__(self, database_url: str | None, refresh_seconds: float) -> None:
        self.database_url = database_url
        self.refresh_seconds = refresh_seconds
        self.hosts: frozenset[str] = frozenset()

    def __contains__(self, host: object) -> bool:
        return isinstance(host, str) and host.lower() in self.hosts

    async def refresh(self) -> None:
        if self.database_url is None:
            return
        try:
            hosts = await asyncio.to_thread(load_paused_hosts, self.database_url)
        except (psycopg.Error, OSError) as exc:
            log.warning("could not read paused websites (keeping %d): %s", len(self.hosts), exc)
            return
        if hosts != self.hosts:
            log.info("paused websites: %s", ", ".join(sorted(hosts)) or "none")
        self.hosts = hosts

    async def refresh_forever(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.refresh_seconds)
