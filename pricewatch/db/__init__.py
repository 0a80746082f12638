"""Pricewatch's PostgreSQL database, shared by every role that reads or writes it: engines and
migrations (``engine``), the schema (``schema``) and the subscription writes the API and the
subscriptions sink both make (``subscriptions``)."""


def without_nul(value: str) -> str:
    """``value`` without NUL characters: PostgreSQL text cannot hold them, and one must not
    fail a sink's batch on every retry."""
    return value.replace("\x00", "")
