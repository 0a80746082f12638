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


# A wait that follows progress gives up only when nothing moved for its window, or at
# this many windows in all: generous on a loaded machine (a shared CI runner at a load of
# 9 ran the fault tests several times slower), and costing nothing when things go well.
OVERALL_WINDOWS = 10


class Progress:
    """When a wait gives up: ``window`` seconds after ``progress()`` last changed, and at
    the latest ``OVERALL_WINDOWS`` windows after the start (``overall`` overrides)."""

    def __init__(
        self,
        window: float,
        progress: Callable[[], object] | None = None,
        *,
        overall: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.progress = progress
        self.clock = clock
        start = clock()
        self.last_change = start
        self.end = start + (overall if overall is not None else window * OVERALL_WINDOWS)
        self.seen = progress() if progress is not None else None
        self.moves = 0

    def saw(self, value: object) -> None:
        """Progress reported by the caller (e.g. records read so far)."""
        if value != self.seen:
            self.seen, self.last_change = value, self.clock()
            self.moves += 1

    def expired(self) -> bool:
        if self.progress is not None:
            self.saw(self.progress())
        now = self.clock()
        return now > self.end or now > self.last_change + self.window

    def why(self, what: str) -> str:
        stalled = self.clock() > self.last_change + self.window
        return (
            f"waiting for {what}: no progress for {self.window:g}s ({self.moves} moves seen)"
            if stalled
            else f"waiting for {what}: still moving at the overall deadline"
        )


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.2,
    what: str = "",
    progress: Callable[[], object] | None = None,
    overall: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Poll ``probe`` until it returns something truthy. Without ``progress``: fail with
    ``what`` after ``timeout``. With it (a counter of work done: records written, messages
    processed): fail only when it has not changed for ``timeout`` seconds, or at the
    overall deadline (``overall``, else OVERALL_WINDOWS windows)."""
    if progress is None:
        overall = timeout
    waiting = Progress(timeout, progress, overall=overall, clock=clock)
    while True:
        value = probe()
        if value:
            return value
        if waiting.expired():
            raise AssertionError(f"timed out {waiting.why(what)}")
        sleep(interval)


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


async def wait_for_account_email(
    settings: Settings, email: str, kind: str, seconds: float = 120
) -> None:
    """Until the API has published a ``kind`` account email to ``email``."""
    from pricewatch.contract.records import AccountEmail
    from pricewatch.contract.topics import ACCOUNT_EMAILS

    consumer = AIOKafkaConsumer(
        settings.topic(ACCOUNT_EMAILS),
        bootstrap_servers=settings.bootstrap(),
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    mail = AccountEmail.model_validate_json(record.value or b"")
                    if mail.email == email.strip().lower() and mail.kind.value == kind:
                        return
        raise AssertionError(f"no {kind} email to {email} within {seconds}s")
    finally:
        await consumer.stop()


def verify_address(settings: Settings, email: str) -> None:
    """Confirm ``email`` as its verification link would: alerts go only to verified
    addresses. Tests hold the secret key (a Stack's settings carry the one it made)."""
    from datetime import UTC, datetime, timedelta
    from urllib.parse import quote

    from pricewatch.tokens import TokenPurpose, issue_token

    # The API does a subscribe request's own part after answering it (so the answer's
    # timing tells nothing about the address), and sends the verification email last: wait
    # for that email, as a person does, before following its link.
    asyncio.run(wait_for_account_email(settings, email, "verify"))
    token = issue_token(
        settings.secret_key_bytes(),
        TokenPurpose.VERIFY,
        email.strip().lower(),
        now=datetime.now(UTC),
        ttl=timedelta(hours=1),
    )
    status, body = http_json("POST", f"{settings.api_base_url}/api/verify?token={quote(token)}")
    assert status == 200, body
