"""Websites an admin paused (``websites.paused`` in PostgreSQL): their pages are not fetched.

Scrape requests are keyed by host, so each host's requests reach one scraper; every scraper
keeps the set of paused hosts and re-reads it every ``paused_hosts_refresh_seconds``. A
database that cannot be read keeps the last set known (checks go on as they were; a log
line says so): pausing is an admin convenience, not a reason to stop every scraper.
"""

from __future__ import annotations

import asyncio
import logging

import sqlalchemy
from sqlalchemy import text

from pricewatch.db.engine import make_engine

log = logging.getLogger(__name__)

PAUSED_HOSTS_SQL = text("SELECT host FROM websites WHERE paused")


def load_paused_hosts(engine: sqlalchemy.Engine) -> frozenset[str]:
    with engine.connect() as connection:
        rows = connection.execute(PAUSED_HOSTS_SQL).all()
    return frozenset(str(host).lower() for (host,) in rows)


class PausedHosts:
    """The hosts not to fetch, refreshed in the background."""

    def __init__(self, database_url: str | None, refresh_seconds: float) -> None:
        # One pooled connection, reused every refresh (and reconnected after an outage).
        self.engine = None if database_url is None else make_engine(database_url, pool_size=1)
        self.refresh_seconds = refresh_seconds
        self.hosts: frozenset[str] = frozenset()

    def __contains__(self, host: object) -> bool:
        return isinstance(host, str) and host.lower() in self.hosts

    async def refresh(self) -> None:
        if self.engine is None:
            return
        try:
            hosts = await asyncio.to_thread(load_paused_hosts, self.engine)
        except (sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
            log.warning("could not read paused websites (keeping %d): %s", len(self.hosts), exc)
            return
        if hosts != self.hosts:
            log.info("paused websites: %s", ", ".join(sorted(hosts)) or "none")
        self.hosts = hosts

    async def refresh_forever(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.refresh_seconds)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
