"""The API refuses to start with a secret key anyone can read, unless it is a demo."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr

from api.app import run_api
from pricewatch.settings import PUBLIC_SECRET_KEYS, Settings


def settings(tmp_path: Path, key: str, **extra: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        # Nothing listens here: a start that got past the key check would fail differently.
        kafka_bootstrap_servers="127.0.0.1:9",
        secret_key=SecretStr(key),
        **extra,
    )


@pytest.mark.parametrize("key", [*sorted(PUBLIC_SECRET_KEYS), "insecure-but-long-enough-key"])
def test_a_public_secret_key_stops_the_api_before_it_serves(tmp_path: Path, key: str) -> None:
    with pytest.raises(RuntimeError, match="public default"):
        asyncio.run(run_api(settings(tmp_path, key), asyncio.Event()))


def test_a_demo_may_use_the_public_key_and_an_own_key_needs_no_flag(tmp_path: Path) -> None:
    [public] = PUBLIC_SECRET_KEYS
    settings(tmp_path, public, demo=True).refuse_public_secret_key()
    settings(tmp_path, "0123456789abcdef-own-key").refuse_public_secret_key()
