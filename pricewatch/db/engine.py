"""Engines and migrations for Pricewatch's PostgreSQL database (psycopg 3 through SQLAlchemy)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import sqlalchemy
from alembic import command
from alembic.config import Config
from sqlalchemy import make_url, text

from pricewatch.settings import Settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Every process that starts a sink upgrades the schema; this lock serialises them so two
# processes never race to create the same tables. Any constant unique to Pricewatch works.
_MIGRATION_LOCK_ID = 0x5052_4943_4557  # "PRICEW"

_DEFAULT_CONNECT_TIMEOUT_SECONDS = 10


def sqlalchemy_url(url: str) -> str:
    """``postgres://`` / ``postgresql://`` (libpq style) to ``postgresql+psycopg://``.

    The rest of the URL, including a query such as ``?host=/run/postgresql``, is kept.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a database URL: {url!r}")
    dialect = scheme.split("+", 1)[0].lower()
    if dialect not in ("postgres", "postgresql"):
        raise ValueError(f"not a PostgreSQL URL: {scheme}://...")
    return f"postgresql+psycopg://{rest}"


def make_engine(url: str, **options: object) -> sqlalchemy.Engine:
    """An engine on psycopg 3 whose pooled connections survive a database restart."""
    parsed = make_url(sqlalchemy_url(url))
    connect_args: dict[str, object] = {}
    if "connect_timeout" not in parsed.query:
        # Without it an unreachable host blocks a connect for minutes instead of failing
        # fast into the sinks' retry loop.
        connect_args["connect_timeout"] = _DEFAULT_CONNECT_TIMEOUT_SECONDS
    return sqlalchemy.create_engine(
        parsed, pool_pre_ping=True, connect_args=connect_args, **options
    )


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration built in code: no alembic.ini is read or needed.

    Also usable for authoring revisions, e.g.
    ``alembic.command.revision(alembic_config(), "add users")``.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation would read a '%' (URL-encoded passwords) as a reference.
        config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Run the migrations up to ``revision``. Safe to call from several processes at once."""
    config = alembic_config(url)
    engine = make_engine(url, poolclass=sqlalchemy.NullPool)
    try:
        with engine.begin() as connection:
            # Held until this transaction ends; every migration runs in it.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:lock_id)"), {"lock_id": _MIGRATION_LOCK_ID}
            )
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()
    log.info("database schema at %s", revision)


@asynccontextmanager
async def migrated_engine(settings: Settings) -> AsyncIterator[sqlalchemy.Engine]:
    """Bring the database to the latest revision, then lend an engine (disposed after)."""
    url = settings.database()
    await asyncio.to_thread(upgrade, url)
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
