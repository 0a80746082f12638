"""Every kind of sink, by the name ``pricewatch sink KIND`` takes, and the module that
declares it (its ``SINK``: feeds and factory). A module is imported only when its sink
runs, so a process loads, and exposes the metrics of, its own sink only. Adding a kind is a
module declaring ``SINK`` and a line here.
"""

from __future__ import annotations

import importlib

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


def sink_kind(kind: str) -> SinkKind:
    """The declaration of sink ``kind`` (a KeyError names an unknown kind)."""
    declared = importlib.import_module(SINK_MODULES[kind]).SINK
    if not isinstance(declared, SinkKind):
        raise TypeError(f"{SINK_MODULES[kind]}.SINK is not a SinkKind")
    return declared
