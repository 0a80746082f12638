"""What a channel gets: a short text for chat and push services (the same words as the
email, ``pricewatch.wording``), or a CloudEvent for a webhook.

Webhooks get CloudEvents 1.0 in structured mode (``application/cloudevents+json``): the
event's ``data`` is the ``notifications`` record itself, every field as on the topic.
Types: ``org.pricewatch.alert.<name>`` by the main rule's name in ``ALERT_NAMES``
(``org.pricewatch.alert.target_price``), with every rule's name in the extension attribute
``pricewatchalerts``; and ``org.pricewatch.channel.confirmation`` for the test message.

Chat messages carry no manage or unsubscribe link: a chat channel may be shared, and those
links let whoever holds them change the subscriptions.
"""

from __future__ import annotations

import json
from typing import Any, Final

from pricewatch.contract.records import ALERT_NAMES, ChannelConfirmation, Notification
from pricewatch.wording import alert_text, format_money

SPEC_VERSION: Final = "1.0"
ALERT_TYPE_PREFIX: Final = "org.pricewatch.alert."
CONFIRMATION_TYPE: Final = "org.pricewatch.channel.confirmation"


def chat_alert(notification: Notification) -> tuple[str, str]:
    """(title, body) of an alert for a chat or push service."""
    text = alert_text(notification)
    lines = list(text.lines)
    if notification.new_price is not None:
        lines.append(f"Now: {format_money(notification.new_price, notification.currency)}")
    lines.append(notification.url)
    return text.subject, "\n".join(lines)


def chat_confirmation(confirmation: ChannelConfirmation) -> tuple[str, str]:
    return (
        "Pricewatch: confirm this channel",
        "This channel was added to a Pricewatch account to receive price alerts.\n"
        f"To start them, open this link and press Confirm: {confirmation.link}\n"
        "If you did not expect this, ignore it: nothing more is sent here.",
    )


def alert_event(notification: Notification, source: str) -> dict[str, Any]:
    return {
        "specversion": SPEC_VERSION,
        "id": notification.idempotency_key,
        "source": source,
        "type": ALERT_TYPE_PREFIX + ALERT_NAMES[notification.kind],
        "subject": notification.product_id,
        "time": notification.created_at.isoformat(),
        "datacontenttype": "application/json",
        "pricewatchalerts": " ".join(ALERT_NAMES[kind] for kind in notification.kinds),
        "data": json.loads(notification.model_dump_json()),
    }


def confirmation_event(confirmation: ChannelConfirmation, source: str) -> dict[str, Any]:
    return {
        "specversion": SPEC_VERSION,
        "id": confirmation.idempotency_key,
        "source": source,
        "type": CONFIRMATION_TYPE,
        "subject": confirmation.channel_id,
        "time": confirmation.created_at.isoformat(),
        "datacontenttype": "application/json",
        "data": {
            "channel_id": confirmation.channel_id,
            "confirm_url": confirmation.link,
            "message": "Open confirm_url and press Confirm to start Pricewatch alerts here.",
        },
    }


def event_bytes(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
