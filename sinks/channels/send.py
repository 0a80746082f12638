"""Sending one message to one channel, and what came of it (``Outcome``).

Two ways out: a ``webhook`` channel gets Pricewatch's own signed POST (aiohttp, the URL
guard's resolver, no redirects); every other kind goes through Apprise, watched by the URL
guard (``sinks.channels.guard``). Either way the outcome says whether to record the message
sent, retry it later (timeouts, connection errors, 5xx, 408, 429) or record it failed for
good (the guard refused the address, a redirect, any other 4xx, a channel Apprise cannot
send to).

Webhook signatures follow the Standard Webhooks scheme: headers ``webhook-id`` (the event
id, the same on every retry), ``webhook-timestamp`` (Unix seconds) and ``webhook-signature:
v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``, keyed with the channel's secret
(``whsec_<base64 key>``, shown once when the channel is added).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final, Literal

import aiohttp

from pricewatch.channels import apprise_plugin, webhook_signature
from pricewatch.urlguard import UrlRefused, check_host
from sinks.channels.guard import watching

USER_AGENT: Final = "Pricewatch-Webhook/1"
# Statuses worth trying again: the receiver is busy or briefly unwell.
RETRY_STATUSES: Final = frozenset({408, 425, 429})
MAX_DETAIL_CHARS: Final = 300


@dataclass(frozen=True)
class Outcome:
    status: Literal["sent", "retry", "failed"]
    reason: str  # short, for a metric label
    detail: str = ""

    @property
    def refused(self) -> bool:
        return self.reason == "refused"


SENT = Outcome("sent", "sent")


def of_http_status(status: int, detail: str = "") -> Outcome:
    if 200 <= status < 300:
        return SENT
    if 300 <= status < 400:
        return Outcome("failed", "redirect", f"HTTP {status}: redirects are not followed")
    if status in RETRY_STATUSES:
        return Outcome("retry", "throttled", f"HTTP {status} {detail}".strip())
    if 400 <= status < 500:
        return Outcome("failed", "http_4xx", f"HTTP {status} {detail}".strip())
    return Outcome("retry", "http_5xx", f"HTTP {status} {detail}".strip())


# --- webhooks ------------------------------------------------------------------------


async def send_webhook(
    session: aiohttp.ClientSession,
    url: str,
    secret: str,
    message_id: str,
    body: bytes,
    *,
    allowed: frozenset[str],
    timeout_seconds: float,
) -> Outcome:
    """POST the event to ``url``; the session's resolver is the URL guard's."""
    try:
        check_host(url, allowed)  # a literal IP never reaches a resolver
    except UrlRefused as exc:
        return Outcome("failed", "refused", str(exc))
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/cloudevents+json; charset=utf-8",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": webhook_signature(secret, message_id, timestamp, body),
    }
    try:
        async with session.post(
            url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        ) as response:
            detail = (await response.content.read(MAX_DETAIL_CHARS)).decode(errors="replace")
            return of_http_status(response.status, " ".join(detail.split()))
    except UrlRefused as exc:
        return Outcome("failed", "refused", str(exc))
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, UrlRefused):
            return Outcome("failed", "refused", str(exc.os_error))
        return Outcome("retry", "network", str(exc)[:MAX_DETAIL_CHARS])
    except TimeoutError:
        return Outcome("retry", "timeout", f"no answer within {timeout_seconds:g}s")
    except aiohttp.ClientError as exc:
        return Outcome("retry", "network", f"{type(exc).__name__}: {exc}"[:MAX_DETAIL_CHARS])


# --- Apprise -------------------------------------------------------------------------


def send_apprise(
    url: str, title: str, body: str, *, allowed: frozenset[str], timeout_seconds: float
) -> Outcome:
    """Send through Apprise, in this (worker) thread, with every connection watched."""
    plugin = apprise_plugin(url)
    if plugin is None:
        return Outcome("failed", "invalid_channel", "Apprise cannot read this channel's URL")
    plugin.socket_connect_timeout = min(plugin.socket_connect_timeout, timeout_seconds)
    plugin.socket_read_timeout = min(plugin.socket_read_timeout, timeout_seconds)
    with watching(allowed) as watch:
        try:
            delivered = bool(plugin.notify(body=body, title=title))
        except Exception as exc:  # a plugin bug must not stop the sink
            if watch.refused:
                return Outcome("failed", "refused", watch.refused)
            return Outcome("retry", "network", f"{type(exc).__name__}: {exc}"[:MAX_DETAIL_CHARS])
    if watch.refused:
        return Outcome("failed", "refused", watch.refused)
    if delivered:
        return SENT
    for status in reversed(watch.statuses):
        if not 200 <= status < 300:
            return of_http_status(status)
    if watch.errors:
        return Outcome("retry", "network", watch.errors[-1])
    if watch.statuses:
        # The service answered 2xx but Apprise read a refusal in the body (Telegram's
        # "ok": false, say): try again, and give up after the usual attempts.
        return Outcome("retry", "service_refused", "the service did not accept the message")
    return Outcome("failed", "not_sent", "Apprise sent nothing for this channel")
