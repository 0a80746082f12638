"""Small helpers shared by integration tests."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from pricewatch.contract.topics import TopicSpec
from pricewatch.settings import Settings

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None], *, timeout: float, interval: float = 0.2, what: str = ""
) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def http_json(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


async def committed_offsets(settings: Settings, role: str, spec: TopicSpec, partitions: int) -> int:
    """The offsets consumer group ``role`` has committed on ``spec``, summed."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap(),
        group_id=settings.group(role),
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        topic = settings.topic(spec)
        total = 0
        for partition in range(partitions):
            total += await consumer.committed(TopicPartition(topic, partition)) or 0
        return total
    finally:
        await consumer.stop()


async def wait_for_commits(
    settings: Settings,
    role: str,
    spec: TopicSpec,
    partitions: int,
    expected: int,
    seconds: float = 60,
) -> None:
    deadline = time.monotonic() + seconds
    while (committed := await committed_offsets(settings, role, spec, partitions)) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"committed {committed} offsets, expected {expected}")
        await asyncio.sleep(0.2)


def verify_address(settings: Settings, email: str) -> None:
    """Confirm ``email`` as its verification link would: alerts go only to verified
    addresses. Tests hold the secret key (a Stack's settings carry the one it made)."""
    from datetime import UTC, datetime, timedelta
    from urllib.parse import quote

    from pricewatch.tokens import TokenPurpose, issue_token

    token = issue_token(
        settings.secret_key_bytes(),
        TokenPurpose.VERIFY,
        email.strip().lower(),
        now=datetime.now(UTC),
        ttl=timedelta(hours=1),
    )
    status, body = http_json("POST", f"{settings.api_base_url}/api/verify?token={quote(token)}")
    assert status == 200, body
