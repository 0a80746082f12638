"""What the system tests share: a webhook receiver on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 keeping every POST as (headers, body)."""

    port: int
    received: list[tuple[dict[str, str], bytes]]


class _Recording(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    received: list[tuple[dict[str, str], bytes]] = []
    handler = type("RecordingHook", (_Recording,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield WebhookReceiver(server.server_address[1], received)
    finally:
        server.shutdown()
        server.server_close()
