"""Child processes, started and stopped one way: the stack's roles, the embedded broker, the
benchmarks' processes and the tests' workers all go through ``Process``.

A process runs in its own session (Ctrl-C reaches only the launcher, which stops its
children in order), appends its output to a log file, is waited on until it is ready (a
port answers, its log says so, or any other check), and is stopped by PID: SIGTERM, then
SIGKILL when it has not exited by a deadline.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

log = logging.getLogger(__name__)

PORT_POLL_SECONDS = 0.05
READY_POLL_SECONDS = 0.1


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def port_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not port_answers(host, port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing answered on {host}:{port} within {timeout}s")
        time.sleep(PORT_POLL_SECONDS)


def pricewatch_command(*args: str) -> list[str]:
    """``pricewatch ARGS`` as this interpreter runs it (no console script needed)."""
    return [sys.executable, "-m", "launcher.cli", *args]


class ProcessExited(RuntimeError):
    """The process ended while it was being waited on (its log says why)."""


@dataclass
class Process:
    """One child process. ``log_path`` is appended to (None: output discarded); ``env``
    None inherits this process's environment."""

    name: str
    argv: Sequence[str]
    log_path: Path | None = None
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    # Where this run's output starts in the log (a log is appended to across restarts).
    log_start: int = field(default=0, init=False)
    killed: bool = field(default=False, init=False)  # stopped by SIGKILL after its deadline
    _terminated: bool = field(default=False, init=False, repr=False)

    def start(self, banner: str | None = None) -> Process:
        """Start it; ``banner`` is written to the log first, as a line of its own."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.killed = self._terminated = False
        if self.log_path is None:
            self.popen = self._popen(subprocess.DEVNULL)
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            if banner is not None:
                out.write(f"\n===== {banner} =====\n".encode())
                out.flush()
            self.log_start = out.tell()
            self.popen = self._popen(out)
        return self

    def _popen(self, out: int | IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            list(self.argv),
            env=None if self.env is None else dict(self.env),
            cwd=self.cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise RuntimeError(f"{self.name} was not started")
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    # --- its log ---------------------------------------------------------------------
    def log_text(self, *, since_start: bool = True) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            if since_start:
                f.seek(self.log_start)
            return f.read().decode(errors="replace")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_text(since_start=False)[-chars:]

    # --- waiting ---------------------------------------------------------------------
    def wait_ready(self, ready: Callable[[], bool], timeout: float, what: str = "ready") -> None:
        """Until ``ready()``; ``ProcessExited`` if the process ends first, ``TimeoutError``
        at the deadline (both with the log's tail)."""
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.running:
                raise ProcessExited(
                    f"{self.name} exited with {self.returncode} before it was {what}:\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not {what} after {timeout}s:\n{self.log_tail()}")
            time.sleep(READY_POLL_SECONDS)

    def wait_for_log(self, marker: str, timeout: float) -> None:
        """Until this run's log shows ``marker``."""
        self.wait_ready(lambda: marker in self.log_text(), timeout, f"ready ({marker!r})")

    def wait_for_port(self, host: str, port: int, timeout: float) -> None:
        self.wait_ready(lambda: port_answers(host, port), timeout, f"answering on {port}")

    def wait(self, timeout: float | None = None) -> int:
        """Its exit code; ``subprocess.TimeoutExpired`` if it runs on past ``timeout``."""
        if self.popen is None:
            raise RuntimeError(f"{self.name} was not started")
        return self.popen.wait(timeout)

    # --- stopping (by PID) -----------------------------------------------------------
    def terminate(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Ask it to stop (SIGTERM, once): it stops cleanly in its own time."""
        if self.running and not self._terminated:
            os.kill(self.pid, sig)
            self._terminated = True

    def stop(self, timeout: float = 20.0, sig: signal.Signals = signal.SIGTERM) -> int | None:
        """``terminate`` (unless done already), wait up to ``timeout``, then SIGKILL.
        Returns the exit code (None if never started); ``killed`` says whether it had to
        be killed."""
        if self.popen is None:
            return None
        self.terminate(sig)
        try:
            return self.popen.wait(max(0.1, timeout))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0fs; killing it", self.name, timeout)
            self.kill()
            return self.popen.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would: no clean shutdown."""
        if self.running:
            os.kill(self.pid, signal.SIGKILL)
            self.killed = True
        if self.popen is not None:
            self.popen.wait()

    def __enter__(self) -> Process:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
