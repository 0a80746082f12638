"""The channels sink: alerts to chat, push and webhook channels, exactly once per
(notification, channel), on the same kind of ledger as email (``sinks.ledger``)."""
