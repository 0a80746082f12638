"""changedetection.io, the tracker people run today, driven as its users drive it.

Installed with pip into a virtual environment of its own, outside the repository (in
``$PRICEWATCH_BENCH_CACHE``, else ``~/.cache/pricewatch-bench/changedetection-<version>``),
once; started on a free loopback port with a throwaway datastore; watches created through
its REST API (``/api/v1/watch``, key from the datastore's ``changedetection.json``, or
``url-watches.json`` in older versions) with the restock/price processor and its
plain-HTTP fetcher; alerts through an Apprise ``json://`` URL to the harness's receiver.

``ALLOW_IANA_RESTRICTED_ADDRESSES=true`` lets it fetch the loopback shop and post to the
loopback receiver (it refuses both by default).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.processes import Process, free_port

VERSION = "0.60.10"
LOG_LEVEL = "INFO"  # its default is DEBUG; INFO as Pricewatch's processes log


def cache_dir() -> Path:
    configured = os.environ.get("PRICEWATCH_BENCH_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "pricewatch-bench"


def clean_env() -> dict[str, str]:
    """This environment without what points Python at Pricewatch's own packages."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("PRICEWATCH_")
    }


def ensure_installed(version: str = VERSION, log: Callable[[str], None] = print) -> Path:
    """The virtual environment's ``changedetection.io`` entry point; installs it the first
    time (pip, ~1-3 min)."""
    venv = cache_dir() / f"changedetection-{version}"
    entry = venv / "bin" / "changedetection.io"
    marker = venv / ".installed"
    if marker.exists() and entry.exists():
        return entry
    log(f"[capacity] installing changedetection.io=={version} into {venv} (once)")
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    # Python 3.11 as the benchmark's own: its wheels support it.
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean_env())
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", f"changedetection.io=={version}"],
        check=True,
        env=clean_env(),
    )
    marker.write_text(version + "\n")
    return entry


@dataclass
class ChangeDetection:
    """One running changedetection.io with a throwaway datastore."""

    entry: Path
    log_path: Path
    port: int = field(default_factory=free_port)
    datastore: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cdio-")))
    process: Process | None = None
    api_key: str = ""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 180.0) -> ChangeDetection:
        env = clean_env()
        env.update(
            {
                "ALLOW_IANA_RESTRICTED_ADDRESSES": "true",
                "LOGGER_LEVEL": LOG_LEVEL,
            }
        )
        self.process = Process(
            "changedetection.io",
            [str(self.entry), "-d", str(self.datastore), "-h", "127.0.0.1", "-p", str(self.port)],
            self.log_path,
            env=env,
        ).start()
        self.process.wait_ready(self._answers, timeout, f"serving on {self.base_url}")
        self.api_key = read_api_key(self.datastore)
        self.delete_all_watches()  # a fresh install adds two public example watches
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/", timeout=5) as response:
                return bool(response.status < 500)
        except urllib.error.HTTPError as error:
            return error.code < 500
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(30)
        shutil.rmtree(self.datastore, ignore_errors=True)

    # --- its REST API ---------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            self.base_url + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={"x-api-key": self.api_key, "Content-Type": "application/json"},
            method=method,
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read().decode()
        return json.loads(text) if text.strip() else None

    def watches(self) -> dict[str, Any]:
        answer = self._request("GET", "/api/v1/watch")
        return answer if isinstance(answer, dict) else {}

    def delete_all_watches(self) -> None:
        for uuid in self.watches():
            self._request("DELETE", f"/api/v1/watch/{uuid}")

    def create_watches(self, bodies: list[dict[str, Any]], threads: int = 4) -> list[str]:
        """POST every watch (a few connections in parallel); their UUIDs."""

        def post_all(chunk: list[dict[str, Any]]) -> list[str]:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            headers = {"x-api-key": self.api_key, "Content-Type": "application/json"}
            uuids = []
            try:
                for body in chunk:
                    connection.request("POST", "/api/v1/watch", json.dumps(body), headers)
                    response = connection.getresponse()
                    text = response.read().decode()
                    if response.status != 201:
                        raise RuntimeError(f"creating a watch: {response.status} {text[:500]}")
                    uuids.append(json.loads(text)["uuid"])
            finally:
                connection.close()
            return uuids

        chunks = [bodies[i::threads] for i in range(threads)]
        with ThreadPoolExecutor(threads) as pool:
            return [uuid for part in pool.map(post_all, chunks) for uuid in part]


def read_api_key(datastore: Path, timeout: float = 30.0) -> str:
    """The API key a fresh datastore was given (the file name changed across versions)."""
    deadline = time.monotonic() + timeout
    while True:
        for name in ("changedetection.json", "url-watches.json"):
            path = datastore / name
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            key = data.get("settings", {}).get("application", {}).get("api_access_token")
            if key:
                return str(key)
        if time.monotonic() > deadline:
            raise RuntimeError(f"no API key in {datastore} after {timeout:.0f} s")
        time.sleep(0.5)


def watch_body(url: str, interval: float, notify_url: str) -> dict[str, Any]:
    """A restock/price watch: plain HTTP, checked every ``interval`` s, a notification on
    every price change (stock tracking off: only prices change in this benchmark)."""
    return {
        "url": url,
        "title": url.rsplit("/", 1)[-1],
        "processor": "restock_diff",
        "fetch_backend": "html_requests",
        "time_between_check_use_default": False,
        "time_between_check": {"seconds": int(interval)},
        "notification_urls": [notify_url],
        "notification_title": "price change",
        "notification_body": "{{watch_url}}",
        "notification_format": "text",
        "processor_config_restock_diff": {
            "in_stock_processing": "off",
            "follow_price_changes": True,
        },
    }


def installed_version(entry: Path) -> str:
    out = subprocess.run(
        [str(entry), "--version"], capture_output=True, text=True, timeout=120, env=clean_env()
    )
    return out.stdout.strip() or out.stderr.strip()
