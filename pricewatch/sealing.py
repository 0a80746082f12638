"""Secrets at rest: what a person gives Pricewatch to reach them (a channel's URL, a webhook's
signing secret) is stored sealed, never in the clear.

The key is derived from ``PRICEWATCH_SECRET_KEY`` with HKDF-SHA256 and a purpose label, so it
is no key that signs links, and each purpose has its own. Sealing is AES-256-GCM (an AEAD)
with a random 96-bit nonce, and the row it belongs to as associated data: a sealed value
copied into another row does not open there. ``digest`` is a keyed hash (HMAC-SHA256) that
finds the same URL twice without storing it.

Rotating the secret key makes every sealed value unreadable: the channels must then be
added again (README, "Channels").
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT: Final = b"\x01"  # AES-256-GCM, 12-byte nonce, then ciphertext and tag
NONCE_BYTES: Final = 12


class Unsealable(ValueError):
    """A sealed value that does not open: another secret key, another row, or damaged."""


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A 256-bit key for one purpose, from the secret key (HKDF-SHA256, RFC 5869)."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=f"pricewatch:{purpose}".encode(),
    ).derive(secret)


class Sealer:
    """Seals and opens strings for one purpose (e.g. ``channel-url``)."""

    def __init__(self, secret: bytes, purpose: str) -> None:
        self._aead = AESGCM(derive_key(secret, f"{purpose}:seal"))
        self._digest_key = derive_key(secret, f"{purpose}:digest")

    def seal(self, plaintext: str, context: str) -> bytes:
        """``plaintext`` sealed for the row ``context`` (e.g. its id)."""
        nonce = os.urandom(NONCE_BYTES)
        return FORMAT + nonce + self._aead.encrypt(nonce, plaintext.encode(), context.encode())

    def open(self, sealed: bytes, context: str) -> str:
        if len(sealed) < 1 + NONCE_BYTES + 16 or sealed[:1] != FORMAT:
            raise Unsealable("not a sealed value of a known format")
        nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, context.encode()).decode()
        except InvalidTag:
            raise Unsealable("sealed with another key, or for another row") from None

    def digest(self, text: str) -> str:
        """A keyed hash of ``text``: equal texts, equal digests; nothing to read back."""
        return hmac.new(self._digest_key, text.encode(), hashlib.sha256).hexdigest()
