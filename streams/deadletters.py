"""Sending a rejected message to the dead-letter topic from inside an agent."""

from __future__ import annotations

import logging
from typing import Any

from pricewatch.deadletter import dead_letter
from streams import metrics
from streams.topology import Topology

log = logging.getLogger(__name__)


async def reject(topology: Topology, event: Any, *, stage: str, reason: str, error: str) -> None:
    """Dead-letter ``event`` (a Faust event).

    Not lost although not awaited: Faust flushes the producer before it commits the
    source offset, so a crash before delivery redelivers the bad message instead.
    """
    message = event.message
    record = dead_letter(
        source_topic=message.topic,
        source_partition=message.partition,
        source_offset=message.offset,
        stage=stage,
        reason=reason,
        error=error,
        key=event.key,
        value=event.value,
    )
    log.warning(
        "dead-lettered %s[%d]@%d (%s): %s",
        message.topic,
        message.partition,
        message.offset,
        reason,
        error[:300],
    )
    await topology.dead_letters_topic.send(
        key=message.topic.encode(), value=record.model_dump_json().encode()
    )
    metrics.dead_letters.labels(stage=stage, reason=reason).inc()
