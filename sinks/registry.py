"""Every kind of sink, by the name ``pricewatch sink KIND`` takes, and the module that
declares it (its ``SINK``: feeds and factory). A module is imported only when its sink
runs, so a process loads, and exposes the metrics of, its own sink only. Adding a kind is a
module declaring ``SINK`` and a line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from pricewatch.settings import Settings
from sinks.contract import SinkKind

SINK_MODULES: dict[str, str] = {
    "postgres": "sinks.postgres.prices",
    "email": "sinks.email.sink",
    "channels": "sinks.channels.sink",
    "archive": "sinks.archive.sink",
    "subscriptions": "sinks.postgres.subscriptions",
    "events": "sinks.postgres.events",
}
KINDS: tuple[str, ...] = tuple(SINK_MODULES)
ALL = "all"


def expand_kinds(requested: Sequence[str], settings: Settings) -> list[str]:
    """The kinds ``pricewatch sink`` runs for ``requested`` (kind names, or ``all``: every
    kind the settings can run; the archive only with an S3 bucket), each once, in order."""
    wanted = [k for k in KINDS if k != "archive" or settings.s3_bucket] if ALL in requested else []
    wanted += [k for k in requested if k != ALL]
    return list(dict.fromkeys(wanted))


def sink_kind(kind: str) -> SinkKind:
    """The declaration of sink ``kind`` (a KeyError names an unknown kind)."""
    declared = importlib.import_module(SINK_MODULES[kind]).SINK
    if not isinstance(declared, SinkKind):
        raise TypeError(f"{SINK_MODULES[kind]}.SINK is not a SinkKind")
    return declared
