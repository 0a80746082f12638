"""Signed, expiring, single-purpose tokens for the links Pricewatch emails.

A user never needs a password: following a link proves they read mail at that address. A
token is ``<payload>.<signature>``, both base64url without padding:

- payload: JSON ``{"p": purpose, "s": subject, "e": expiry (Unix seconds)}``. It is signed,
  not encrypted: it names the subject (an email address or a subscription id), which the
  person holding the link already knows.
- signature: HMAC-SHA256 over the encoded payload, with a key derived from the secret key
  *and the purpose*, so a token of one purpose can never pass as another even if the
  payload check were skipped.

Pure: no clock (``now`` is passed in), no I/O, except ``local_secret_key`` (the demo's
key file); the secret comes from the settings.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

# A confirm token carries a whole subscription request (a URL of up to 2048 characters).
MAX_TOKEN_CHARS: Final = 4096
MIN_SECRET_BYTES: Final = 16


class TokenPurpose(StrEnum):
    VERIFY = "verify"  # subject: the email address to mark verified
    UNSUBSCRIBE = "unsubscribe"  # subject: "subscription:<id>" or "user:<email>"
    MANAGE = "manage"  # subject: the email address whose subscriptions may be seen and edited
    CONFIRM = "confirm"  # subject: a subscription request (JSON) its address's owner must start
    CHANNEL_CONFIRM = "channel_confirm"  # subject: the id of a channel its test message reached


UNSUBSCRIBE_ONE_PREFIX: Final = "subscription:"
UNSUBSCRIBE_ALL_PREFIX: Final = "user:"


class InvalidToken(ValueError):
    """The token is malformed, forged, of another purpose, or expired. ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid token ({reason})")
        self.reason = reason  # short, for a metric label


@dataclass(frozen=True)
class TokenClaims:
    purpose: TokenPurpose
    subject: str
    expires_at: int  # Unix seconds


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(secret: bytes, purpose: TokenPurpose) -> bytes:
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the secret key must be at least {MIN_SECRET_BYTES} bytes")
    return hmac.new(secret, b"pricewatch-token:" + purpose.value.encode(), hashlib.sha256).digest()


def _sign(secret: bytes, purpose: TokenPurpose, payload: str) -> str:
    mac = hmac.new(_key(secret, purpose), payload.encode("ascii"), hashlib.sha256)
    return _b64encode(mac.digest())


def issue_token(
    secret: bytes, purpose: TokenPurpose, subject: str, *, now: datetime, ttl: timedelta
) -> str:
    """A token for ``subject`` valid for ``ttl`` from ``now`` (deterministic for equal input)."""
    expires_at = int((now + ttl).timestamp())
    body = json.dumps(
        {"p": purpose.value, "s": subject, "e": expires_at},
        separators=(",", ":"),
        sort_keys=True,
    )
    payload = _b64encode(body.encode())
    token = f"{payload}.{_sign(secret, purpose, payload)}"
    if len(token) > MAX_TOKEN_CHARS:
        # read_token would refuse it: fail here, where the subject is known, not at the click.
        raise ValueError(f"a token of {len(token)} characters is over {MAX_TOKEN_CHARS}")
    return token


def read_token(secret: bytes, token: str, purpose: TokenPurpose, *, now: datetime) -> TokenClaims:
    """The claims of a genuine, unexpired token of ``purpose``; ``InvalidToken`` otherwise."""
    if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise InvalidToken("malformed")
    payload, signature = token.split(".")
    try:
        expected = _sign(secret, purpose, payload)
    except UnicodeEncodeError:
        raise InvalidToken("malformed") from None
    # Constant time: a forger learns nothing from how long a wrong signature took.
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise InvalidToken("bad_signature")
    try:
        claims: Any = json.loads(_b64decode(payload))
    except (ValueError, binascii.Error):
        raise InvalidToken("malformed") from None
    if (
        not isinstance(claims, dict)
        or claims.get("p") != purpose.value
        or not isinstance(claims.get("s"), str)
        or not isinstance(claims.get("e"), int)
    ):
        raise InvalidToken("wrong_purpose")
    if now.timestamp() >= claims["e"]:
        raise InvalidToken("expired")
    return TokenClaims(purpose, claims["s"], claims["e"])


def local_secret_key(data_dir: Path) -> str:
    """The demo's secret key: made once in ``data_dir/secret_key`` (mode 0600), then reused,
    so every child process of a Stack, and the links of an earlier run, share it."""
    path = data_dir / "secret_key"
    try:
        existing = path.read_text().strip()
    except FileNotFoundError:
        existing = ""
    if len(existing) >= MIN_SECRET_BYTES:
        return existing
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key
