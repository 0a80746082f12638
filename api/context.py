"""What a request handler finds on the aiohttp application, and the helpers every handler
(JSON route or page) shares."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import Counter

from api.problems import ApiProblem
from api.services import Services
from pricewatch.settings import Settings

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Work done after the answer (what a subscribe or manage-link request does for its
# address): a failure can no longer reach the caller, so it is counted and logged.
BACKGROUND_FAILURES = Counter(
    "pricewatch_api_background_failures_total",
    "Work done after answering (account emails, storing a request) that failed.",
)

SETTINGS_KEY = web.AppKey("settings", Settings)
SERVICES_KEY = web.AppKey("services", Services)
BACKGROUND_KEY = web.AppKey("background", set[asyncio.Future[None]])
# The OpenAPI document, built once from the route table when the app is made.
OPENAPI_KEY = web.AppKey("openapi", dict[str, Any])


def services(request: web.Request) -> Services:
    return request.app[SERVICES_KEY]


def client_address(request: web.Request) -> str:
    """The address the per-client limits key on: the TCP peer, unless the peer is one of
    ``PRICEWATCH_TRUSTED_PROXIES`` (the load balancer); then the client it forwarded for."""
    settings = request.app[SETTINGS_KEY]
    return forwarded_client(
        request.remote or "unknown",
        request.headers.getall("X-Forwarded-For", []),
        settings.trusted_proxies,
    )


def _within(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
    return any(ip.version == net.version and ip in net for net in networks)


def forwarded_client(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client's address: ``peer`` when it is not a trusted proxy (X-Forwarded-For is
    then anyone's words); else the rightmost X-Forwarded-For address that is not a trusted
    proxy. Every proxy appends the address it got the request from, so entries left of the
    first untrusted one were written by the client itself and are never believed."""
    if not _within(peer, trusted):
        return peer
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
    client = peer
    for hop in reversed(hops):
        if not hop:
            continue
        client = hop
        if not _within(hop, trusted):
            break
    return client


def run_in_background(app: web.Application, work: Awaitable[None]) -> None:
    async def guarded() -> None:
        try:
            await work
        except ApiProblem as exc:
            BACKGROUND_FAILURES.inc()
            log.warning("background request failed: %s", exc.title)
        except Exception:
            BACKGROUND_FAILURES.inc()
            log.exception("background request failed")

    task = asyncio.ensure_future(guarded())
    tasks = app[BACKGROUND_KEY]
    tasks.add(task)
    task.add_done_callback(tasks.discard)
