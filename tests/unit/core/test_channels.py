"""Channels as a person describes them: the URL each kind becomes, what is refused, how it is
shown back (masked), and sealing at rest."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from pricewatch.channels import (
    ChannelKind,
    ChannelRefused,
    new_webhook_secret,
    target_for,
    webhook_signature,
)
from pricewatch.sealing import Sealer, Unsealable
from pricewatch.settings import DEFAULT_NOTIFY_SCHEMES, Settings

SCHEMES = Settings(notify_schemes=DEFAULT_NOTIFY_SCHEMES).notify_scheme_set
BOT = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
DISCORD = (
    "https://discord.com/api/webhooks/112233445566778899/AbCdEfGhIjKlMnOpQrStUvWxYz_0123456789-xyz"
)
SLACK = "https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdefghijklmnopqrstuvwx"


@pytest.mark.parametrize(
    ("kind", "fields", "url", "masked"),
    [
        (
            "webhook",
            {"url": "https://hooks.example.org/pricewatch/9f8e"},
            "https://hooks.example.org/pricewatch/9f8e",
            "https://hooks.example.org/…9f8e",
        ),
        ("ntfy", {"topic": "my-prices"}, "ntfys://ntfy.sh/my-prices", "ntfys://ntfy.sh/…ices"),
        (
            "ntfy",
            {"topic": "t1", "server": "http://ntfy.lan:8080", "token": "tk_abcdef"},
            "ntfy://ntfy.lan:8080/t1?auth=token&token=tk_abcdef",
            "ntfy://ntfy.lan:8080/…cdef",
        ),
        (
            "telegram",
            {"bot_token": BOT, "chat_id": "-1001234567"},
            f"tgram://{BOT}/-1001234567",
            "tgram://api.telegram.org/…4567",
        ),
        (
            "discord",
            {"webhook_url": DISCORD},
            "discord://112233445566778899/AbCdEfGhIjKlMnOpQrStUvWxYz_0123456789-xyz",
            "discord://discord.com/…-xyz",
        ),
        (
            "slack",
            {"webhook_url": SLACK},
            "slack://T0123ABCD/B0456EFGH/abcdefghijklmnopqrstuvwx",
            "slack://hooks.slack.com/…uvwx",
        ),
        (
            "apprise",
            {"url": "gotifys://push.example.org/AbCdEf0123456"},
            "gotifys://push.example.org/AbCdEf0123456",
            "gotifys://push.example.org/…3456",
        ),
    ],
)
def test_each_kind_becomes_one_url_shown_masked(
    kind: str, fields: dict[str, str], url: str, masked: str
) -> None:
    target = target_for(ChannelKind(kind), fields, SCHEMES)
    assert (target.url, target.masked) == (url, masked)
    # The mask never holds the secret part (a bot token, a webhook token).
    for secret in (BOT, "AbCdEfGhIjKlMnOpQrStUvWxYz", "abcdefghijklmnopqrst", "AbCdEf012"):
        assert secret not in target.masked


@pytest.mark.parametrize(
    ("kind", "fields", "field"),
    [
        ("webhook", {"url": "ftp://hooks.example.org/x"}, "url"),
        ("webhook", {"url": "https://user:pw@hooks.example.org/x"}, "url"),
        ("webhook", {}, "url"),
        ("ntfy", {"topic": "no spaces"}, "topic"),
        ("ntfy", {"topic": "t", "server": "https://ntfy.example.org/extra/path"}, "server"),
        ("ntfy", {"topic": "t", "token": "password"}, "token"),
        ("telegram", {"bot_token": "nope", "chat_id": "1"}, "bot_token"),
        ("telegram", {"bot_token": BOT, "chat_id": "1; drop"}, "chat_id"),
        ("discord", {"webhook_url": "https://evil.example/api/webhooks/1/2"}, "webhook_url"),
        (
            "slack",
            {"webhook_url": "https://hooks.slack.com.evil.example/services/T/B/C"},
            "webhook_url",
        ),
        # Not an allowed scheme: mail, a local file, scripts, an unknown service.
        ("apprise", {"url": "mailto://user:pass@gmail.com"}, "url"),
        ("apprise", {"url": "file:///etc/passwd"}, "url"),
        ("apprise", {"url": "javascript:alert(1)"}, "url"),
        ("apprise", {"url": "json://"}, "url"),  # allowed scheme, nothing Apprise can send to
        ("apprise", {"url": "json://host/a b"}, "url"),
    ],
)
def test_what_cannot_be_a_channel_is_refused_by_field(
    kind: str, fields: dict[str, str], field: str
) -> None:
    with pytest.raises(ChannelRefused) as refused:
        target_for(ChannelKind(kind), fields, SCHEMES)
    assert refused.value.field == field


def test_the_admin_chooses_the_other_schemes() -> None:
    only_gotify = Settings(notify_schemes="gotify").notify_scheme_set
    with pytest.raises(ChannelRefused, match="json:// is not allowed"):
        target_for(ChannelKind.APPRISE, {"url": "json://hooks.example.org/x"}, only_gotify)
    target = target_for(ChannelKind.APPRISE, {"url": "json://hooks.example.org/x"}, SCHEMES)
    assert (target.host, target.custom_host) == ("hooks.example.org", True)


def test_a_plugin_host_that_is_a_token_is_neither_shown_nor_taken_for_a_host() -> None:
    target = target_for(ChannelKind.APPRISE, {"url": "pover://ukey12345@atoken67890"}, SCHEMES)
    assert target.custom_host is False
    assert "ukey" not in target.masked and target.masked.endswith("…7890")


def test_sealed_values_open_only_with_the_same_key_and_row() -> None:
    sealer = Sealer(b"k" * 32, "channel-url")
    sealed = sealer.seal("tgram://secret-token/1", "row-1")
    assert b"secret-token" not in sealed
    assert sealer.open(sealed, "row-1") == "tgram://secret-token/1"
    assert sealer.seal("tgram://secret-token/1", "row-1") != sealed  # a fresh nonce each time
    with pytest.raises(Unsealable):
        sealer.open(sealed, "row-2")  # copied into another row
    with pytest.raises(Unsealable):
        Sealer(b"x" * 32, "channel-url").open(sealed, "row-1")  # another secret key
    with pytest.raises(Unsealable):
        Sealer(b"k" * 32, "channel-secret").open(sealed, "row-1")  # another purpose
    with pytest.raises(Unsealable):
        sealer.open(sealed[:-1] + bytes([sealed[-1] ^ 1]), "row-1")  # tampered
    assert sealer.digest("a") == sealer.digest("a") != Sealer(b"x" * 32, "p").digest("a")


def test_webhook_signatures_follow_the_standard_webhooks_scheme() -> None:
    secret = new_webhook_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    body = b'{"specversion":"1.0"}'
    signature = webhook_signature(secret, "msg_1", 1700000000, body)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = hmac.new(key, b"msg_1.1700000000." + body, hashlib.sha256).digest()
    assert signature == "v1," + base64.b64encode(expected).decode()
    assert webhook_signature(secret, "msg_1", 1700000001, body) != signature
