"""The published JSON Schemas are what the code produces, and records validate against them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import jsonschema
import pytest

from pricewatch.contract.jsonschema import render, schema_for, schema_path
from pricewatch.contract.records import Subscription
from pricewatch.contract.topics import ALL_TOPICS, PRICE_OBSERVATIONS, SUBSCRIPTIONS, TopicSpec
from pricewatch.ids import partition_for, product_id_for, subscription_id_for
from tests.factories import observation


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=lambda s: s.name)
def test_committed_schema_matches_the_records(spec: TopicSpec) -> None:
    path = schema_path(spec)
    assert path.exists(), f"run `pricewatch contract schemas` to create {path.name}"
    assert path.read_text() == render(spec), (
        f"{path.name} is stale: run `pricewatch contract schemas`"
    )


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=lambda s: s.name)
def test_every_record_carries_a_schema_version(spec: TopicSpec) -> None:
    assert "schema_version" in schema_for(spec)["properties"]


def test_wire_records_validate_against_their_schema() -> None:
    obs = observation(0, price="1226.00")
    wire = json.loads(obs.model_dump_json())
    assert wire["price"] == "1226.00"  # money is a string on the wire, never a float
    jsonschema.validate(wire, schema_for(PRICE_OBSERVATIONS))
    sub = Subscription(
        subscription_id=subscription_id_for("a@b.example", obs.product_id),
        email="a@b.example",
        product_id=obs.product_id,
        url=obs.url,
        target_price=Decimal("9.99"),
        created_at=datetime.now(UTC),
    )
    jsonschema.validate(json.loads(sub.model_dump_json()), schema_for(SUBSCRIPTIONS))


def test_unknown_fields_are_ignored_but_wrong_versions_rejected() -> None:
    wire = json.loads(observation(0).model_dump_json())
    wire["added_later"] = 1
    assert observation(0).model_validate(wire).product_id == wire["product_id"]
    wire["schema_version"] = 2
    with pytest.raises(ValueError):
        observation(0).model_validate(wire)


def test_ids_are_deterministic_and_canonical() -> None:
    assert product_id_for("HTTPS://Shop.Example:443/p?x=1#frag") == product_id_for(
        "https://shop.example/p?x=1"
    )
    assert subscription_id_for("A@Example.com ", "p") == subscription_id_for("a@example.com", "p")
    # The same partition as Kafka's default murmur2 partitioner (Java client, aiokafka).
    from aiokafka.partitioner import DefaultPartitioner

    partitions = list(range(6))
    for key in ("abc", "product-1", product_id_for("https://a.example/x")):
        assert partition_for(key, 6) == DefaultPartitioner()(key.encode(), partitions, partitions)


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("http://bücher.example/café?q=é", "http://xn--bcher-kva.example/caf%C3%A9?q=%C3%A9"),
        ("http://xn--bcher-kva.example/caf%C3%A9?q=%C3%A9", None),
        ("https://shop.example./p", "https://shop.example/p"),
        ('https://shop.example/a"b<c>', "https://shop.example/a%22b%3Cc%3E"),
        ("http://[2001:DB8::1]:8080/p", "http://[2001:db8::1]:8080/p"),
        ("https://shop.example/%zz?a=b&c=%2F", None),
        # Dot segments (RFC 3986 5.2.4, and their percent-encoded forms as browsers read
        # them): one page, one product.
        (
            "https://shop.example/products/../products/kettle",
            "https://shop.example/products/kettle",
        ),
        ("https://shop.example/a/./b/%2E%2e/c?x=/../", "https://shop.example/a/c?x=/../"),
        ("https://shop.example/../../etc", "https://shop.example/etc"),
        ("https://shop.example/a/b/..", "https://shop.example/a/"),
    ],
)
def test_canonical_urls_are_ascii_and_canonical_once(written: str, canonical: str | None) -> None:
    from pricewatch.ids import canonical_url

    expected = canonical or written
    assert canonical_url(written) == expected
    assert canonical_url(expected) == expected  # a second pass changes nothing
    assert expected.isascii()
    assert product_id_for(written) == product_id_for(expected)


def test_detected_events_are_written_as_valid_price_event_records() -> None:
    from pricewatch.contract.records import Availability, PriceEvent
    from pricewatch.contract.topics import PRICE_EVENTS
    from streams.codec import encode_price_event
    from streams.domain.detector import DetectorConfig, detect

    state, _ = detect(None, observation(0, price="1226.00"), DetectorConfig(), datetime.now(UTC))
    _, events = detect(
        state,
        observation(60, price="999.5", availability=Availability.OUT_OF_STOCK),
        DetectorConfig(),
        datetime.now(UTC),
    )
    assert len(events) == 3  # drop, new lowest, sold out
    for event in events:
        wire = encode_price_event(event)
        jsonschema.validate(json.loads(wire), schema_for(PRICE_EVENTS))
        record = PriceEvent.model_validate_json(wire)
        assert record.model_dump() == {
            "schema_version": 1,
            **{
                name: getattr(event, name)
                for name in PriceEvent.model_fields
                if name != "schema_version"
            },
        }


def _subscription(**options: object) -> Subscription:
    obs = observation(0)
    return Subscription(
        subscription_id=subscription_id_for("a@b.example", obs.product_id),
        email="a@b.example",
        product_id=obs.product_id,
        url=obs.url,
        created_at=datetime.now(UTC),
        **options,  # type: ignore[arg-type]
    )


def test_subscription_options_of_price_increase_and_minimum_change() -> None:
    sub = _subscription(
        notify_price_increase=True,
        min_change_amount=Decimal("0.50"),
        min_change_percent=Decimal("2.5"),
    )
    wire = json.loads(sub.model_dump_json())
    assert (wire["min_change_amount"], wire["min_change_percent"]) == ("0.50", "2.5")
    jsonschema.validate(wire, schema_for(SUBSCRIPTIONS))
    assert Subscription.model_validate(wire) == sub
    assert sub.wants_alerts() and sub.wants_price_alerts()
    assert not _subscription(notify_sold_out=True).wants_price_alerts()
    assert not _subscription().wants_alerts()
    # A record from before these options (or from a producer that does not know them).
    del wire["notify_price_increase"], wire["min_change_amount"], wire["min_change_percent"]
    old = Subscription.model_validate(wire)
    assert (old.notify_price_increase, old.min_change_amount, old.min_change_percent) == (
        False,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"notify_any_drop": True, "min_change_amount": Decimal("0")}, "greater than 0"),
        ({"notify_any_drop": True, "min_change_amount": Decimal("-1")}, "greater than 0"),
        ({"notify_any_drop": True, "min_change_percent": Decimal("0")}, "greater than 0"),
        ({"notify_any_drop": True, "min_change_percent": Decimal("100")}, "less than 100"),
        ({"notify_any_drop": True, "min_change_percent": Decimal("1.234")}, "decimal places"),
        ({"notify_sold_out": True, "min_change_amount": Decimal("1")}, "only apply to price"),
        ({"min_change_percent": Decimal("5")}, "only apply to price alerts"),
    ],
)
def test_subscription_minimum_change_is_validated(options: dict, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        _subscription(**options)


def test_notification_kinds_of_older_records_are_their_kind() -> None:
    from pricewatch.contract.records import Notification, NotificationKind
    from pricewatch.contract.topics import NOTIFICATIONS

    obs = observation(0)
    wire = {
        "schema_version": 1,
        "idempotency_key": "k1",
        "kind": "price_dropped",
        "subscription_id": "s1",
        "email": "a@b.example",
        "product_id": obs.product_id,
        "url": obs.url,
        "event_id": "e1",
        "event_type": "price_drop",
        "observed_at": obs.observed_at.isoformat(),
        "created_at": obs.observed_at.isoformat(),
    }
    jsonschema.validate(wire, schema_for(NOTIFICATIONS))
    assert Notification.model_validate(wire).kinds == [NotificationKind.PRICE_DROPPED]
    wire["kinds"] = ["target_price_reached", "price_dropped"]
    wire["kind"] = "target_price_reached"
    jsonschema.validate(wire, schema_for(NOTIFICATIONS))
    assert Notification.model_validate(wire).kinds == [
        NotificationKind.TARGET_PRICE_REACHED,
        NotificationKind.PRICE_DROPPED,
    ]
