"""The URL guard on every connection Apprise makes while it sends to a channel.

Apprise sends with ``requests`` from a worker thread. While a send is watched
(``watching``), this module checks, in that thread:

- every name lookup (``socket.getaddrinfo``): each address a channel's host resolves to must
  be public (or its ``host[:port]`` allow-listed, ``PRICEWATCH_ALLOWED_PRIVATE_HOSTS``);
  metadata addresses never pass. The addresses that passed are the ones connected to, so a
  DNS answer changing in between (rebinding) changes nothing;
- every TCP connect (``socket.socket.connect``): an address that no checked lookup gave
  (a literal IP, a resolver of its own) is checked itself.

Redirects are off in Apprise (``pricewatch.channels.apprise_plugin``), and a redirect that
were followed would open a new connection, checked the same way. A refused connection is
an ``OSError`` to the library (it fails as a connection error would) and is remembered as
``Watch.refused``, so the send is recorded as refused for good. Each HTTP answer's status
is recorded too (``Watch.statuses``): Apprise only says whether it sent.

Only a watched send is checked: the sink's own connections (Kafka, PostgreSQL) are not.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from pricewatch.urlguard import UrlRefused, check_address

_original_getaddrinfo = socket.getaddrinfo
_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex


class ConnectionRefusedByGuard(OSError):
    """The URL guard refused to connect there."""


@dataclass
class Watch:
    allowed: frozenset[str]
    approved: set[tuple[str, int]] = field(default_factory=set)
    refused: str | None = None
    statuses: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def refuse(self, exc: UrlRefused) -> ConnectionRefusedByGuard:
        self.refused = self.refused or str(exc)
        return ConnectionRefusedByGuard(f"refused by the URL guard: {exc}")


_WATCH: ContextVar[Watch | None] = ContextVar("pricewatch_channel_watch", default=None)
_install_lock = threading.Lock()
_installed = False


def _guarded_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    infos = _original_getaddrinfo(host, port, *args, **kwargs)
    watch = _WATCH.get()
    if watch is None or host is None:
        return infos
    name = host.decode() if isinstance(host, bytes) else str(host)
    number = int(port) if isinstance(port, int | str) and str(port).isdigit() else 0
    for info in infos:
        address = str(info[4][0])
        try:
            check_address(name, number, address, watch.allowed)
        except UrlRefused as exc:
            raise watch.refuse(exc) from None
    watch.approved.update((str(info[4][0]), number) for info in infos)
    return infos


def _check_connect(sock: socket.socket, address: Any) -> None:
    watch = _WATCH.get()
    if watch is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    ip, port = str(address[0]), int(address[1])
    if (ip, port) in watch.approved:
        return
    try:
        check_address(ip, port, ip, watch.allowed)
    except UrlRefused as exc:
        raise watch.refuse(exc) from None


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_connect(self, address)
    _original_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_connect(self, address)
    return _original_connect_ex(self, address)


def _record_http(send: Any) -> Any:
    def recording_send(adapter: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        watch = _WATCH.get()
        try:
            response = send(adapter, request, *args, **kwargs)
        except Exception as exc:
            if watch is not None:
                watch.errors.append(type(exc).__name__)
            raise
        if watch is not None:
            watch.statuses.append(int(response.status_code))
        return response

    return recording_send


def install() -> None:
    """Put the checks in place (once per process); they act only inside ``watching``."""
    global _installed
    with _install_lock:
        if _installed:
            return
        import requests.adapters

        socket.getaddrinfo = _guarded_getaddrinfo
        socket.socket.connect = _guarded_connect  # type: ignore[method-assign, assignment]
        socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign, assignment]
        adapter = requests.adapters.HTTPAdapter
        adapter.send = _record_http(adapter.send)  # type: ignore[method-assign]
        _installed = True


@contextmanager
def watching(allowed: frozenset[str]) -> Iterator[Watch]:
    """Check every lookup and connection made in this thread until the block ends."""
    install()
    watch = Watch(frozenset(entry.lower() for entry in allowed))
    token = _WATCH.set(watch)
    try:
        yield watch
    finally:
        _WATCH.reset(token)
