"""Signed link tokens: cannot be forged, reused for another purpose, or used after expiry."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pricewatch.tokens import (
    MAX_TOKEN_CHARS,
    InvalidToken,
    TokenPurpose,
    issue_token,
    local_secret_key,
    read_token,
)

SECRET = b"k" * 32
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def token(purpose: TokenPurpose = TokenPurpose.VERIFY, subject: str = "ann@example.com") -> str:
    return issue_token(SECRET, purpose, subject, now=NOW, ttl=DAY)


def reason(raw: str, purpose: TokenPurpose = TokenPurpose.VERIFY, **kwargs: object) -> str:
    secret = kwargs.get("secret", SECRET)
    now = kwargs.get("now", NOW)
    with pytest.raises(InvalidToken) as caught:
        read_token(secret, raw, purpose, now=now)  # type: ignore[arg-type]
    return caught.value.reason


def test_a_genuine_token_names_its_subject_until_it_expires() -> None:
    claims = read_token(SECRET, token(), TokenPurpose.VERIFY, now=NOW + DAY - timedelta(seconds=1))
    assert (claims.purpose, claims.subject) == (TokenPurpose.VERIFY, "ann@example.com")
    assert reason(token(), now=NOW + DAY) == "expired"
    assert token() == token()  # deterministic: the same email renders the same link


def test_another_purpose_is_refused_both_ways() -> None:
    for issued in TokenPurpose:
        for wanted in TokenPurpose:
            if issued is not wanted:
                assert reason(token(issued), wanted) == "bad_signature"


def test_forged_tokens_are_refused() -> None:
    genuine = token()
    payload, signature = genuine.split(".")
    # Another subject with the old signature.
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["s"] = "mallory@example.com"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert reason(f"{forged}.{signature}") == "bad_signature"
    # A later expiry with the old signature.
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["e"] += 10**9
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert reason(f"{forged}.{signature}") == "bad_signature"
    # Signed with another key.
    other = issue_token(b"x" * 32, TokenPurpose.VERIFY, "ann@example.com", now=NOW, ttl=DAY)
    assert reason(other) == "bad_signature"
    # One flipped signature character.
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    assert reason(f"{payload}.{flipped}") == "bad_signature"


@pytest.mark.parametrize(
    "raw", ["", ".", "abc", "a.b.c", "x" * 5000, "é.é", "ab\x00.cd", "%%%.###"]
)
def test_malformed_tokens_are_refused(raw: str) -> None:
    assert reason(raw) in {"malformed", "bad_signature"}


def test_a_signed_payload_of_the_wrong_shape_is_refused() -> None:
    # Validly signed (we hold the key) but not a claims object: still refused, not a crash.
    from pricewatch.tokens import _b64encode, _sign

    for body in (b"[]", b'{"p": "verify", "s": 1, "e": 1}', b"not json"):
        payload = _b64encode(body)
        signed = f"{payload}.{_sign(SECRET, TokenPurpose.VERIFY, payload)}"
        assert reason(signed) in {"malformed", "wrong_purpose"}


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError):
        issue_token(b"short", TokenPurpose.VERIFY, "a", now=NOW, ttl=DAY)


def test_local_secret_key_is_made_once_and_private(tmp_path: Path) -> None:
    first = local_secret_key(tmp_path)
    assert len(first) >= 32 and local_secret_key(tmp_path) == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_the_stacks_children_get_the_secret_key_itself() -> None:
    from pydantic import SecretStr

    from launcher.stack import Stack
    from pricewatch.settings import Settings

    key = "k" * 40
    env = Stack(Settings(secret_key=SecretStr(key))).child_env()
    assert env["PRICEWATCH_SECRET_KEY"] == key  # not pydantic's '**********'
    assert Settings(secret_key=SecretStr(key)).secret_key_bytes() == key.encode()


def test_a_short_secret_key_is_refused_at_start() -> None:
    from pydantic import SecretStr

    from pricewatch.settings import Settings

    with pytest.raises(RuntimeError, match="at least 16 bytes"):
        Settings(secret_key=SecretStr("short")).secret_key_bytes()


def test_a_token_too_long_to_read_back_is_refused_when_issued() -> None:
    with pytest.raises(ValueError, match="over"):
        issue_token(SECRET, TokenPurpose.CONFIRM, "x" * MAX_TOKEN_CHARS, now=NOW, ttl=DAY)


def test_the_largest_subscription_request_fits_a_confirm_token() -> None:
    """A confirm token carries the whole request: the longest valid one must still make a
    link that read_token accepts (non-ASCII is percent-encoded before the length check)."""
    from api.models import MAX_URL_CHARS, SubscribeRequest
    from api.services.subscriptions import confirm_subject, read_confirm_subject

    address = "a" * 64 + "@" + ".".join(["b" * 60, "c" * 60, "d" * 50]) + ".com"
    base = "https://shop.example/"
    for filler, encoded_chars in (("a", 1), ("é", 6), ('"', 3), ("%", 1)):
        # As many as fit once percent-encoded: the longest URL the API accepts.
        url = base + filler * ((MAX_URL_CHARS - len(base)) // encoded_chars)
        largest = SubscribeRequest.model_validate(
            {
                "email": address,
                "url": url,
                "target_price": "99999999.99",
                "drop_percent": "99.99",
                "currency": "CHF",
                "notify_any_drop": True,
                "notify_back_in_stock": True,
                "notify_sold_out": True,
                "notify_removed": True,
            }
        )
        assert len(largest.url) > MAX_URL_CHARS - encoded_chars
        subject = confirm_subject(largest, NOW)
        raw = issue_token(SECRET, TokenPurpose.CONFIRM, subject, now=NOW, ttl=DAY)
        assert len(raw) <= MAX_TOKEN_CHARS
        claims = read_token(SECRET, raw, TokenPurpose.CONFIRM, now=NOW)
        assert read_confirm_subject(claims.subject) == (largest, NOW)
