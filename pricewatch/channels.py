"""Channels: where alerts go besides email. What a person fills in becomes the URL messages
are sent to, checked here once for the API (when a channel is added) and for the channels
sink (which reads it back sealed, ``pricewatch.sealing``).

Kinds: ``webhook`` (Pricewatch's own signed CloudEvents POST to an https URL), ``ntfy``,
``telegram``, ``discord``, ``slack`` (each an Apprise URL built from the service's own
fields), and ``apprise``: any other Apprise URL whose scheme the admin allows
(``PRICEWATCH_NOTIFY_SCHEMES``, ``Settings.notify_scheme_set``). A channel URL holds
secrets (bot tokens, webhook tokens): it is shown back masked, as its scheme, the host
messages go to and its last four characters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any, Final
from urllib.parse import quote, urlsplit

from pricewatch.urlguard import UrlRefused, ascii_host_name, check_url

MAX_CHANNEL_URL_CHARS: Final = 2048
MASK: Final = "…"
# pricewatch.sealing purposes: the API seals, the channels sink opens.
URL_SEAL: Final = "channel-url"
SECRET_SEAL: Final = "channel-secret"
WEBHOOK_SECRET_PREFIX: Final = "whsec_"


class ChannelKind(StrEnum):
    WEBHOOK = "webhook"
    NTFY = "ntfy"
    TELEGRAM = "telegram"
    DISCORD = "discord"
    SLACK = "slack"
    APPRISE = "apprise"


class ChannelRefused(ValueError):
    """What a person gave cannot be a channel; ``field`` says which input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ChannelTarget:
    """A channel as Pricewatch sends to it."""

    kind: ChannelKind
    url: str  # the https URL of a webhook, else an Apprise URL: a secret
    host: str  # where messages go, for the URL guard and the masked display
    port: int
    custom_host: bool  # the person chose the host (a fixed service's host is public)

    @property
    def masked(self) -> str:
        return masked(self)

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme.lower()

    def probe_url(self) -> str:
        """An http(s) URL of the target host, for the URL guard's checks."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}/"


def masked(target: ChannelTarget) -> str:
    """``scheme://host/…abcd``: enough to recognise a channel, never its secret."""
    shown = target.host if target.port in (80, 443) else f"{target.host}:{target.port}"
    tail = target.url.rstrip("/")[-4:]
    return f"{target.scheme}://{shown}/{MASK}{tail}"


def new_webhook_secret() -> str:
    """A webhook's signing secret, Standard Webhooks style: ``whsec_`` + base64(32 bytes)."""
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: ``v1,`` + base64 HMAC-SHA256 of
    ``<message id>.<timestamp>.<body>`` keyed with the secret's bytes. A receiver computes
    the same and compares (and refuses a timestamp far from its clock)."""
    key = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def _https_url(field: str, value: str) -> tuple[str, str, int]:
    """(url, host, port) of an absolute http(s) URL the guard accepts."""
    value = value.strip()
    if len(value) > MAX_CHANNEL_URL_CHARS:
        raise ChannelRefused(field, f"longer than {MAX_CHANNEL_URL_CHARS} characters")
    try:
        check_url(value)
    except UrlRefused as exc:
        raise ChannelRefused(field, str(exc)) from None
    parts = urlsplit(value)
    host = parts.hostname or ""
    try:
        host = host if ":" in host else ascii_host_name(host)
    except UrlRefused as exc:
        raise ChannelRefused(field, str(exc)) from None
    return value, host, parts.port or (443 if parts.scheme.lower() == "https" else 80)


def webhook_target(url: str) -> ChannelTarget:
    url, host, port = _https_url("url", url)
    return ChannelTarget(ChannelKind.WEBHOOK, url, host, port, custom_host=True)


_NTFY_TOPIC = re.compile(r"^[-_A-Za-z0-9]{1,64}$")
_NTFY_TOKEN = re.compile(r"^tk_[A-Za-z0-9]{1,64}$")


def ntfy_target(topic: str, server: str | None = None, token: str | None = None) -> ChannelTarget:
    """An ntfy topic on ntfy.sh or one's own server (https, or http for a local one)."""
    topic = topic.strip()
    if not _NTFY_TOPIC.match(topic):
        raise ChannelRefused("topic", "an ntfy topic is 1-64 letters, digits, - or _")
    parts = urlsplit((server or "https://ntfy.sh").strip())
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ChannelRefused("server", "give the server only, e.g. https://ntfy.example.org")
    _, host, port = _https_url("server", f"{parts.scheme}://{parts.netloc}/")
    secure = parts.scheme.lower() == "https"
    netloc = host if port == (443 if secure else 80) else f"{host}:{port}"
    url = f"{'ntfys' if secure else 'ntfy'}://{netloc}/{topic}"
    if token:
        if not _NTFY_TOKEN.match(token.strip()):
            raise ChannelRefused("token", "an ntfy access token looks like tk_...")
        url += f"?auth=token&token={token.strip()}"
    return ChannelTarget(ChannelKind.NTFY, url, host, port, custom_host=True)


_TELEGRAM_TOKEN = re.compile(r"^[0-9]{1,20}:[A-Za-z0-9_-]{20,100}$")
_TELEGRAM_CHAT = re.compile(r"^(-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{3,64})$")


def telegram_target(bot_token: str, chat_id: str) -> ChannelTarget:
    bot_token, chat_id = bot_token.strip(), chat_id.strip()
    if not _TELEGRAM_TOKEN.match(bot_token):
        raise ChannelRefused("bot_token", "a bot token looks like 123456789:AA... (from BotFather)")
    if not _TELEGRAM_CHAT.match(chat_id):
        raise ChannelRefused("chat_id", "a chat id is a number (or @channelname)")
    url = f"tgram://{bot_token}/{quote(chat_id, safe='@-')}"
    return ChannelTarget(ChannelKind.TELEGRAM, url, "api.telegram.org", 443, custom_host=False)


_DISCORD_HOOK = re.compile(
    r"^https://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/api/(?:v[0-9]+/)?webhooks/"
    r"([0-9]{5,30})/([A-Za-z0-9_-]{20,120})/?$"
)


def discord_target(webhook_url: str) -> ChannelTarget:
    found = _DISCORD_HOOK.match(webhook_url.strip())
    if not found:
        raise ChannelRefused(
            "webhook_url", "a Discord webhook URL: https://discord.com/api/webhooks/ID/TOKEN"
        )
    url = f"discord://{found.group(1)}/{found.group(2)}"
    return ChannelTarget(ChannelKind.DISCORD, url, "discord.com", 443, custom_host=False)


_SLACK_HOOK = re.compile(
    r"^https://hooks\.slack\.com/services/([A-Z0-9]{5,20})/([A-Z0-9]{5,20})/([A-Za-z0-9]{10,40})/?$"
)


def slack_target(webhook_url: str) -> ChannelTarget:
    found = _SLACK_HOOK.match(webhook_url.strip())
    if not found:
        raise ChannelRefused(
            "webhook_url",
            "a Slack incoming-webhook URL: https://hooks.slack.com/services/T.../B.../...",
        )
    url = "slack://{}/{}/{}".format(*found.groups())
    return ChannelTarget(ChannelKind.SLACK, url, "hooks.slack.com", 443, custom_host=False)


@cache
def _apprise() -> Any:
    import apprise  # imported when first needed: it loads its plugins

    return apprise


def apprise_plugin(url: str) -> Any:
    """The Apprise plugin for ``url``, redirects off (the URL guard also checks every hop),
    or None when Apprise cannot read it."""
    apprise = _apprise()
    plugin = apprise.Apprise.instantiate(
        url, asset=apprise.AppriseAsset(http_redirects=False), suppress_exceptions=True
    )
    if plugin is not None:
        plugin.redirects = False  # a ?redirect=yes in the URL does not turn them back on
    return plugin


_HOSTISH = re.compile(r"^(localhost|[a-z0-9_-]+(\.[a-z0-9_-]+)+)$", re.IGNORECASE)


def apprise_target(url: str, schemes: frozenset[str]) -> ChannelTarget:
    """Any Apprise URL whose scheme the admin allows."""
    url = url.strip()
    if len(url) > MAX_CHANNEL_URL_CHARS:
        raise ChannelRefused("url", f"longer than {MAX_CHANNEL_URL_CHARS} characters")
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if not scheme:
        raise ChannelRefused("url", "an Apprise URL starts with its service, e.g. gotify://")
    if scheme not in schemes:
        allowed = ", ".join(sorted(schemes)) or "none"
        raise ChannelRefused("url", f"{scheme}:// is not allowed here (allowed: {allowed})")
    if re.search(r"[\x00-\x20\x7f]", url):
        raise ChannelRefused("url", "the URL contains a space or a control character")
    plugin = apprise_plugin(url)
    if plugin is None:
        raise ChannelRefused("url", f"not a {scheme}:// URL Apprise can send to")
    host = str(getattr(plugin, "host", "") or "")
    secure = bool(getattr(plugin, "secure", False))
    port = int(getattr(plugin, "port", None) or (443 if secure else 80))
    # A plugin's "host" is a token for some services: only a host name is shown and checked.
    if not _HOSTISH.match(host) and not _is_ip(host):
        return ChannelTarget(ChannelKind.APPRISE, url, MASK, port, custom_host=False)
    return ChannelTarget(ChannelKind.APPRISE, url, host.lower(), port, custom_host=True)


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def target_for(kind: ChannelKind, fields: dict[str, Any], schemes: frozenset[str]) -> ChannelTarget:
    """The channel a person described with the fields of one kind's form."""

    def text(name: str, required: bool = True) -> str:
        value = fields.get(name)
        if value is None or not str(value).strip():
            if required:
                raise ChannelRefused(name, "required")
            return ""
        return str(value)

    if kind is ChannelKind.WEBHOOK:
        return webhook_target(text("url"))
    if kind is ChannelKind.NTFY:
        return ntfy_target(
            text("topic"), text("server", False) or None, text("token", False) or None
        )
    if kind is ChannelKind.TELEGRAM:
        return telegram_target(text("bot_token"), text("chat_id"))
    if kind is ChannelKind.DISCORD:
        return discord_target(text("webhook_url"))
    if kind is ChannelKind.SLACK:
        return slack_target(text("webhook_url"))
    return apprise_target(text("url"), schemes)
