from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from pricewatch.contract.records import (
    Availability,
    EventType,
    Notification,
    NotificationKind,
    PriceObservation,
    Subscription,
)
from pricewatch.ids import subscription_id_for
from streams.domain.alerts import (
    AlertRules,
    AlertState,
    evaluate,
    new_alert_state,
    newest_applied,
    with_subscription,
)
from streams.domain.detector import DetectedEvent, DetectorConfig, ProductState, detect
from tests.factories import PRODUCT_ID, URL, at, gone, observation

RULES = AlertRules(cooldown=timedelta(hours=24), stock_flap_window=timedelta(hours=1))


def subscription(target: str | None = "85.00", **options: object) -> Subscription:
    options.setdefault("verified", True)  # the rules below are about verified subscribers
    return Subscription(
        subscription_id=subscription_id_for("a@example.com", PRODUCT_ID),
        email="a@example.com",
        product_id=PRODUCT_ID,
        url=URL,
        target_price=None if target is None else Decimal(target),
        created_at=at(0),
        **options,  # type: ignore[arg-type]
    )


def entry(target: str | None = "85.00", **options: object) -> AlertState:
    return new_alert_state(subscription(target, **options), None)


def known(price: str, availability: Availability | None = Availability.IN_STOCK) -> ProductState:
    """What the detector knows of a product seen once, at ``price``."""
    state, _ = detect(
        None, observation(-60, price=price, availability=availability), DetectorConfig(), at(0)
    )
    assert state is not None
    return state


def alerts(
    observations: list[PriceObservation], state: AlertState, rules: AlertRules = RULES
) -> list[tuple[NotificationKind, str | None]]:
    """Feed observations through the detector and the rule; return (kind, new price)."""
    product: ProductState | None = None
    sent: list[tuple[NotificationKind, str | None]] = []
    for obs in observations:
        product, events = detect(product, obs, DetectorConfig(), obs.observed_at)
        for event in events:
            state, notification = evaluate(state, event, rules, obs.observed_at)
            if notification is not None:
                price = None if notification.new_price is None else str(notification.new_price)
                sent.append((notification.kind, price))
    return sent


def prices(*values: str, step: float = 60) -> list[PriceObservation]:
    return [observation(i * step, price=v) for i, v in enumerate(values)]


TARGET = NotificationKind.TARGET_PRICE_REACHED
Kind = NotificationKind


def test_alert_when_price_drops_to_or_below_target() -> None:
    assert alerts(prices("100", "85.00"), entry()) == [(TARGET, "85.00")]


def test_no_alert_for_a_drop_above_target() -> None:
    assert alerts(prices("100", "90"), entry()) == []


def test_once_per_crossing_then_rearmed_above_target() -> None:
    assert alerts(prices("100", "80", "70", "60", "90", "80"), entry()) == [
        (TARGET, "80"),
        (TARGET, "80"),
    ]


def test_already_below_target_waits_for_a_crossing() -> None:
    assert alerts(prices("80", "70", "90", "85"), entry()) == [(TARGET, "85")]


def test_after_the_cooldown_a_lower_price_alerts_again() -> None:
    day = 24 * 3600
    observations = [
        observation(0, price="100"),
        observation(60, price="80"),  # crossing: alert
        observation(120, price="75"),  # a drop, but too soon after the alert
        observation(day + 60, price="74"),  # cooldown over and lower than 80: alert
        observation(day + 120, price="70"),  # too soon after the 74 alert
        observation(3 * day, price="80"),  # up, still below the target
        observation(3 * day + 60, price="79"),  # cooldown over but not lower than 74
    ]
    assert alerts(observations, entry()) == [(TARGET, "80"), (TARGET, "74")]


def test_a_target_in_one_currency_ignores_prices_in_another() -> None:
    # The page sells in EUR; 85 EUR is not the 85 USD this subscriber asked for.
    assert alerts(prices("100", "80"), entry(currency="USD")) == []
    assert alerts(prices("100", "80"), entry(currency="EUR")) == [(TARGET, "80")]
    assert alerts(prices("100", "80"), entry(currency="USD", notify_any_drop=True)) == []


def test_drop_percent_from_reference_price() -> None:
    state = new_alert_state(subscription(None, drop_percent=Decimal("10")), known("100"))
    assert alerts(prices("100", "95", "90", "80"), state) == [
        (NotificationKind.DROP_PERCENT_REACHED, "90")
    ]


def test_drop_percent_learns_its_reference_from_the_first_event() -> None:
    state = entry(None, drop_percent=Decimal("20"))
    assert state.reference_price is None
    assert alerts(prices("100", "99", "79"), state) == [
        (NotificationKind.DROP_PERCENT_REACHED, "79")
    ]


def test_any_drop_and_target_give_one_notification_per_event() -> None:
    state = entry("85", notify_any_drop=True)
    assert alerts(prices("100", "95", "85", "84"), state) == [
        (NotificationKind.PRICE_DROPPED, "95"),
        (TARGET, "85"),
        (NotificationKind.PRICE_DROPPED, "84"),
    ]


def test_stock_alerts_only_when_asked_and_flapping_sends_one() -> None:
    def stock(t: float, availability: Availability) -> PriceObservation:
        return observation(t, availability=availability)

    out, back = Availability.OUT_OF_STOCK, Availability.IN_STOCK
    flapping = [stock(0, back), stock(60, out), stock(120, back), stock(180, out), stock(240, back)]
    both = entry(None, notify_back_in_stock=True, notify_sold_out=True)
    # Sold out, then the first change back: both told. The flapping after that (a sold-out
    # and a restock within the window of the alert of their kind) is held back, and the
    # restock it ends in is what the subscriber was told last: nothing more is owed.
    assert alerts(flapping, both) == [
        (NotificationKind.SOLD_OUT, "100.00"),
        (NotificationKind.BACK_IN_STOCK, "100.00"),
    ]
    back_only = entry(None, notify_back_in_stock=True)
    assert alerts(flapping, back_only) == [(NotificationKind.BACK_IN_STOCK, "100.00")]
    hours_apart = [stock(h * 7200, a) for h, a in enumerate([back, out, back, out])]
    assert [k for k, _ in alerts(hours_apart, both)] == [
        NotificationKind.SOLD_OUT,
        NotificationKind.BACK_IN_STOCK,
        NotificationKind.SOLD_OUT,
    ]
    assert alerts(flapping, entry(None)) == []


def test_removed_only_when_asked_and_once() -> None:
    observations = [observation(0), gone(1), gone(2), gone(3)]
    # The last known price travels with the removal (the email says what it cost).
    assert alerts(observations, entry(None, notify_removed=True)) == [
        (NotificationKind.REMOVED, "100.00")
    ]
    assert alerts(observations, entry(None)) == []


def test_inactive_subscription_gets_nothing() -> None:
    state = entry("85", notify_any_drop=True, active=False)
    assert alerts(prices("100", "50"), state) == []


def test_unverified_subscription_gets_nothing_until_verified() -> None:
    stock = [
        observation(0),
        observation(60, availability=Availability.OUT_OF_STOCK),
        observation(120),
    ]
    everything = {
        "notify_any_drop": True,
        "notify_sold_out": True,
        "notify_back_in_stock": True,
        "notify_removed": True,
    }
    unverified = entry("85", verified=False, **everything)
    assert alerts(prices("100", "50", "120", "40"), unverified) == []
    assert alerts(stock, unverified) == []
    assert alerts([observation(0), gone(60, 410)], unverified) == []
    # The same subscription, verified later (the API republishes it): alerts from then on,
    # measured against the prices learned while it was unverified.
    product, _ = detect(None, observation(0), DetectorConfig(), at(0))
    product, events = detect(product, observation(60, price="80"), DetectorConfig(), at(60))
    state, note = evaluate(entry("85", verified=False), events[0], RULES, at(60))
    assert note is None and state.reference_price == Decimal("100.00")
    assert state.buyable_price == Decimal("80")  # below the target, but nobody was told
    verified = with_subscription(state, subscription("85", verified=True))
    config = DetectorConfig()
    lower, events = detect(product, observation(120, price="75"), config, at(120))
    state, note = evaluate(verified, events[0], RULES, at(120))
    assert note is None  # no crossing: it was below the target already when verified
    above, events = detect(lower, observation(150, price="110"), config, at(150))
    state, _ = evaluate(state, events[0], RULES, at(150))
    _, events = detect(above, observation(180, price="75"), config, at(180))
    _, note = evaluate(state, events[0], RULES, at(180))
    assert note is not None and note.kind is TARGET


def test_reprocessing_an_event_gives_the_same_notification_key() -> None:
    product, _ = detect(None, observation(0), DetectorConfig(), at(0))
    _, events = detect(product, observation(1, price="80"), DetectorConfig(), at(1))
    state = entry()
    after, first = evaluate(state, events[0], RULES, at(2))
    # Redelivered before the state write (a crash in between): the same notification.
    _, again = evaluate(state, events[0], RULES, at(3))
    assert first is not None and again is not None
    assert first.idempotency_key == again.idempotency_key
    assert again.model_copy(update={"created_at": first.created_at}) == first
    # Redelivered after it: the state knows the price was told (it was delivered before
    # the state was written), so nothing more.
    assert evaluate(after, events[0], RULES, at(4)) == (after, None)


def events_of(observations: list[PriceObservation]) -> list[DetectedEvent]:
    product: ProductState | None = None
    found: list[DetectedEvent] = []
    for obs in observations:
        product, events = detect(product, obs, DetectorConfig(), obs.observed_at)
        found.extend(events)
    return found


def fold(state: AlertState, events: list[DetectedEvent]) -> tuple[AlertState, list[Notification]]:
    told: list[Notification] = []
    for event in events:
        state, note = evaluate(state, event, RULES, event.observed_at)
        if note is not None:
            told.append(note)
    return state, told


def test_events_replayed_from_several_back_tell_nothing_again() -> None:
    # After a SIGKILL the matcher re-reads events from its committed offset against the
    # state its local store kept, which already includes them. The 95 is not a crossing
    # of the 100 target (the price came from 90), although the state now holds 105.
    events = events_of(prices("90.00", "95.00", "105.00", "80.00", "99.99"))
    state, told = fold(entry("100.00"), events)
    assert [(n.kind, n.new_price) for n in told] == [(TARGET, Decimal("80.00"))]
    for start in range(len(events)):
        assert fold(state, events[start:]) == (state, [])


def test_a_stock_change_replayed_after_its_alert_is_not_held_back() -> None:
    events = events_of([observation(0), observation(60, availability=OUT), observation(120)])
    state, told = fold(entry(None, notify_sold_out=True, notify_back_in_stock=True), events)
    assert [n.kind for n in told] == [Kind.SOLD_OUT, Kind.BACK_IN_STOCK]
    assert fold(state, events) == (state, [])  # not a sell-out within the window: a replay


def test_a_new_subscription_starts_after_the_events_its_product_had() -> None:
    events = events_of(prices("100.00", "80.00"))
    other, _ = fold(entry(None, notify_any_drop=True), events)
    newcomer = new_alert_state(subscription("85.00"), None, newest_applied([other]))
    # Those events, re-read after a crash, were before its time.
    assert fold(newcomer, events) == (newcomer, [])
    assert newest_applied([]) is None


def test_an_older_version_of_the_subscription_replayed_changes_nothing() -> None:
    state, _ = fold(entry("80.00", currency="EUR"), events_of(prices("100.00", "90.00")))
    newer = subscription("60.00", currency="USD").model_copy(update={"created_at": at(5)})
    moved = with_subscription(state, newer)
    assert moved.subscription == newer and moved.buyable_price is None
    assert with_subscription(moved, state.subscription) == moved  # the newest version wins


def test_subscription_change_keeps_what_was_already_said() -> None:
    state = replace(entry(), price_alert_at=at(5), price_alert_price=Decimal("80"))
    changed = replace(state, subscription=subscription("70"))
    assert changed.price_alert_at == at(5)


# --- Issue 18, part 1: the two faults found from outside ---------------------------

IN, OUT = Availability.IN_STOCK, Availability.OUT_OF_STOCK


def told(
    observations: list[PriceObservation], state: AlertState, rules: AlertRules = RULES
) -> list[tuple[float, NotificationKind, str | None]]:
    """Like ``alerts``, with the second (after T0) of the observation that sent each one."""
    product: ProductState | None = None
    sent: list[tuple[float, NotificationKind, str | None]] = []
    for obs in observations:
        product, events = detect(product, obs, DetectorConfig(), obs.observed_at)
        for event in events:
            state, notification = evaluate(state, event, rules, obs.observed_at)
            if notification is not None:
                price = None if notification.new_price is None else str(notification.new_price)
                seconds = (obs.observed_at - at(0)).total_seconds()
                sent.append((seconds, notification.kind, price))
    return sent


def test_a_restock_soon_after_a_sell_out_is_told() -> None:
    both = entry(None, notify_back_in_stock=True, notify_sold_out=True)
    pages = [observation(0), observation(600, availability=OUT), observation(1200)]
    assert [kind for _, kind, _ in told(pages, both)] == [
        NotificationKind.SOLD_OUT,
        NotificationKind.BACK_IN_STOCK,
    ]


def test_no_price_alert_while_sold_out_and_the_target_alert_at_the_restock() -> None:
    pages = [
        observation(0, price="100.00"),
        observation(60, price="60.00", availability=OUT),  # below the target, unbuyable
        observation(120, price="60.00"),  # back: the target alert now
        observation(180, price="60.00", availability=OUT),
        observation(240, price="60.00"),  # back again: already told for this crossing
    ]
    assert told(pages, entry("80")) == [(120, NotificationKind.TARGET_PRICE_REACHED, "60.00")]


def test_a_damped_change_that_lasts_is_told_when_the_stock_has_held_for_the_window() -> None:
    both = entry(None, notify_back_in_stock=True, notify_sold_out=True)
    pages = [observation(0), observation(600, availability=OUT), observation(1200)]
    # Sold out again 10 minutes after the restock email, within the sold-out window of
    # 600: held back. It then stays sold out; the page is checked every 10 minutes.
    pages += [observation(t, availability=OUT) for t in range(1800, 7200, 600)]
    assert [(t, kind) for t, kind, _ in told(pages, both)] == [
        (600, NotificationKind.SOLD_OUT),
        (1200, NotificationKind.BACK_IN_STOCK),
        (5400, NotificationKind.SOLD_OUT),  # held for the window since 1800: told now
    ]


def test_a_damped_change_is_told_by_the_first_event_after_its_window() -> None:
    both = entry(None, notify_back_in_stock=True, notify_sold_out=True)
    pages = [observation(0), observation(600, availability=OUT), observation(1200)]
    pages += [observation(1800, availability=OUT)]  # held back (sold-out window of 600)
    pages += [observation(4500, price="90.00", availability=OUT)]  # window over at 4200
    assert [(t, kind) for t, kind, _ in told(pages, both)] == [
        (600, NotificationKind.SOLD_OUT),
        (1200, NotificationKind.BACK_IN_STOCK),
        (4500, NotificationKind.SOLD_OUT),
    ]


def test_price_alerts_compare_prices_in_the_currency_the_subscription_started_in() -> None:
    # A page that shows another currency (a shop's geo-IP pricing, say): 84 USD is not
    # the 85 the subscriber asked for when the page showed EUR, nor 10% below 100 EUR.
    pages = [
        observation(0, price="100.00", currency="EUR"),
        observation(60, price="120.00", currency="USD"),
        observation(120, price="84.00", currency="USD"),
    ]
    assert told(pages, entry("85")) == []
    by_percent = entry(None, drop_percent=Decimal("10"))
    assert told(pages, by_percent) == []
    # Back in EUR, below the target: the buyable EUR price crossed it.
    pages.append(observation(180, price="80.00", currency="EUR"))
    assert told(pages, entry("85")) == [(180, NotificationKind.TARGET_PRICE_REACHED, "80.00")]


# --- Issue 18, part 2: kinds a program can read; price increases; a minimum change -----


def notes(
    observations: list[PriceObservation], state: AlertState, rules: AlertRules = RULES
) -> list[Notification]:
    product: ProductState | None = None
    sent: list[Notification] = []
    for obs in observations:
        product, events = detect(product, obs, DetectorConfig(), obs.observed_at)
        for event in events:
            state, notification = evaluate(state, event, rules, obs.observed_at)
            if notification is not None:
                sent.append(notification)
    return sent


def test_every_alert_names_its_rules_and_what_it_compared() -> None:
    state = entry("85", drop_percent=Decimal("10"), notify_any_drop=True)
    first, second = notes(prices("100", "95", "84.00"), state)
    assert (first.kind, first.kinds) == (Kind.PRICE_DROPPED, [Kind.PRICE_DROPPED])
    assert (first.baseline_price, first.old_price, first.threshold_price) == (
        Decimal("100"),
        Decimal("100"),
        None,
    )
    # One drop meets all three rules: one notification that lists them, the most
    # specific first; the threshold it crossed is the target's.
    assert second.kinds == [
        Kind.TARGET_PRICE_REACHED,
        Kind.DROP_PERCENT_REACHED,
        Kind.PRICE_DROPPED,
    ]
    assert second.kind is Kind.TARGET_PRICE_REACHED
    assert (second.threshold_price, second.baseline_price) == (Decimal("85"), Decimal("95"))
    assert second.availability is Availability.IN_STOCK and second.stock_changed_at is None
    by_percent = notes(prices("100", "89.00"), entry(None, drop_percent=Decimal("10")))
    assert by_percent[0].threshold_price == Decimal("90")


def test_price_increase_alerts_only_when_asked() -> None:
    state = entry(None, notify_price_increase=True)
    sent = notes(prices("100", "110", "105", "120"), state)
    assert [(n.kind, n.baseline_price, n.new_price) for n in sent] == [
        (Kind.PRICE_INCREASED, Decimal("100"), Decimal("110")),
        # From the lowest price since the last rise alert (105), not from 110.
        (Kind.PRICE_INCREASED, Decimal("105"), Decimal("120")),
    ]
    assert notes(prices("100", "110"), entry(None, notify_any_drop=True)) == []


def test_a_minimum_change_keeps_cent_moves_quiet_but_they_add_up() -> None:
    cents = ["100.00", "99.99", "99.98", "100.00", "99.50", "99.01", "99.00", "98.99"]
    state = entry(None, notify_any_drop=True, min_change_amount=Decimal("1.00"))
    assert [(n.baseline_price, n.new_price) for n in notes(prices(*cents), state)] == [
        (Decimal("100.00"), Decimal("99.00"))  # a euro below the highest since: told
    ]
    every = entry(None, notify_any_drop=True)
    assert len(notes(prices(*cents), every)) == 6  # without a minimum: every drop
    percent = entry(None, notify_price_increase=True, min_change_percent=Decimal("5"))
    rising = prices("100.00", "103.00", "104.99", "105.00", "108.00", "110.25")
    assert [n.new_price for n in notes(rising, percent)] == [Decimal("105.00"), Decimal("110.25")]
    both = entry(
        None,
        notify_any_drop=True,
        min_change_amount=Decimal("2"),
        min_change_percent=Decimal("1"),
    )
    # 1.50 is 1.5 % of 100 but less than 2; 2.00 from 100 is both.
    assert [n.new_price for n in notes(prices("100", "98.50", "98.00"), both)] == [Decimal("98.00")]


def test_a_restock_at_a_lower_price_is_one_email_about_both() -> None:
    pages = [
        observation(0, price="100.00"),
        observation(600, price="100.00", availability=OUT),
        observation(1200, price="90.00", availability=OUT),  # nobody can buy at 90
        observation(1800, price="90.00"),  # back, at 90: the buyable price fell
    ]
    state = entry(None, notify_any_drop=True, notify_back_in_stock=True)
    (note,) = notes(pages, state)
    assert note.kinds == [Kind.BACK_IN_STOCK, Kind.PRICE_DROPPED]
    assert note.event_type is EventType.BACK_IN_STOCK
    assert (note.baseline_price, note.new_price) == (Decimal("100.00"), Decimal("90.00"))
    assert note.stock_changed_at == note.observed_at == at(1800)
    # The price fell in the same observation as the restock: still one email.
    pages[2:] = [observation(1800, price="90.00")]
    assert [n.kinds for n in notes(pages, state)] == [[Kind.BACK_IN_STOCK, Kind.PRICE_DROPPED]]


def test_subscribing_while_sold_out_below_the_target_alerts_at_the_restock() -> None:
    state = new_alert_state(subscription("85"), known("80.00", OUT))
    assert state.buyable_price is None
    sent = notes(
        [observation(60, price="80.00", availability=OUT), observation(120, price="80.00")], state
    )
    assert [(n.kind, n.event_type) for n in sent] == [(TARGET, EventType.BACK_IN_STOCK)]
    # Subscribing while one can buy at 80 is different: the subscriber saw that price.
    in_stock = new_alert_state(subscription("85"), known("80.00"))
    assert notes([observation(60, price="79.00")], in_stock) == []


def test_a_held_change_is_told_with_when_it_happened() -> None:
    both = entry(None, notify_back_in_stock=True, notify_sold_out=True)
    pages = [observation(0), observation(600, availability=OUT), observation(1200)]
    pages += [observation(t, availability=OUT) for t in range(1800, 6000, 600)]
    last = notes(pages, both)[-1]
    assert (last.kind, last.event_type) == (Kind.SOLD_OUT, EventType.STOCK_SETTLED)
    assert last.stock_changed_at == at(1800) and last.observed_at == at(5400)


def test_a_removal_replaces_a_held_change() -> None:
    both = entry(None, notify_back_in_stock=True, notify_sold_out=True, notify_removed=True)
    pages = [observation(0), observation(600, availability=OUT), observation(1200)]
    pages += [observation(1800, availability=OUT), gone(2400, 410), observation(9000)]
    assert [n.kind for n in notes(pages, both)] == [
        Kind.SOLD_OUT,
        Kind.BACK_IN_STOCK,
        Kind.REMOVED,  # the held sell-out is not told after it: removed says more
        Kind.BACK_IN_STOCK,  # listed again, and in stock: it was sold out when it went
    ]


def test_a_new_currency_for_the_subscription_forgets_prices_in_the_old_one() -> None:
    state = new_alert_state(subscription("85"), known("100.00"))
    assert (state.currency, state.buyable_price) == ("EUR", Decimal("100.00"))
    same = with_subscription(state, subscription("80", currency="EUR"))
    assert (same.currency, same.buyable_price) == ("EUR", Decimal("100.00"))
    moved = with_subscription(state, subscription("80", currency="USD"))
    assert (moved.currency, moved.buyable_price, moved.reference_price) == ("USD", None, None)


def test_verifying_later_measures_moves_from_the_price_then() -> None:
    config = DetectorConfig()
    product, _ = detect(None, observation(0, price="200.00"), config, at(0))
    product, events = detect(product, observation(60, price="100.00"), config, at(60))
    unverified = entry(None, notify_any_drop=True, verified=False)
    state, note = evaluate(unverified, events[0], RULES, at(60))
    assert note is None
    state = with_subscription(state, subscription(None, notify_any_drop=True))
    _, events = detect(product, observation(120, price="99.00"), config, at(120))
    _, note = evaluate(state, events[0], RULES, at(120))
    assert note is not None and note.baseline_price == Decimal("100.00")  # not 200


def test_a_drop_percent_threshold_with_many_decimals_fits_the_record() -> None:
    # 99.999999 less 33.33 % is 66.6699993...: the record carries it to 6 places, and
    # the rule lets through exactly the prices it did before.
    state = new_alert_state(subscription(None, drop_percent=Decimal("33.33")), known("99.999999"))
    (note,) = notes(prices("99.999999", "66.669999"), state)
    assert note.threshold_price == Decimal("66.669999")
    assert notes(prices("99.999999", "66.670000"), state) == []
