"""The User dashboard: one person's products, as support sees them.

Chosen with the ``user`` variable (and optionally narrowed with ``product``). This is an
admin/support tool: end users never reach Grafana (see ``grafana`` package docstring).
"""

from __future__ import annotations

from grafana.model import Dashboard, Panel, QueryVariable, Row, SqlQuery

USER_VARIABLE = QueryVariable(
    "user",
    "User",
    """
SELECT u.email AS __text, u.id AS __value
FROM users u
WHERE EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = u.id)
ORDER BY u.email
""",
)

PRODUCT_VARIABLE = QueryVariable(
    "product",
    "Product",
    """
SELECT coalesce(p.title, s.url) AS __text, s.product_id AS __value
FROM subscriptions s
LEFT JOIN products p ON p.product_id = s.product_id
WHERE s.user_id = $user
ORDER BY 1
""",
    multi=True,
    include_all=True,
)

# The user's chosen subscriptions, with a display name per product.
CHOSEN = """
chosen AS (
  SELECT s.subscription_id, s.product_id, s.target_price, s.active,
         coalesce(p.title, s.url) AS name
  FROM subscriptions s
  LEFT JOIN products p ON p.product_id = s.product_id
  WHERE s.user_id = $user AND s.product_id IN ($product)
)"""

# Prices are stored as changes, so a line over the range needs the price in force when the
# range starts and the latest price carried to its end (or now); the target is a flat
# second series per product, drawn dashed.
PRICE_HISTORY = Panel(
    "Price history and target",
    "timeseries",
    (
        SqlQuery(
            f"""
WITH {CHOSEN.strip()},
range_end AS (SELECT least($__timeTo()::timestamptz, now()) AS at),
points AS (
  SELECT pr.observed_at AS time, c.name, pr.price
  FROM prices pr
  JOIN chosen c ON c.product_id = pr.product_id
  WHERE $__timeFilter(pr.observed_at)
  UNION ALL
  SELECT $__timeFrom()::timestamptz, c.name, before.price
  FROM chosen c
  CROSS JOIN LATERAL (
    SELECT price FROM prices
    WHERE product_id = c.product_id AND observed_at < $__timeFrom()
    ORDER BY observed_at DESC LIMIT 1
  ) before
  UNION ALL
  SELECT range_end.at, c.name, latest.price
  FROM chosen c
  CROSS JOIN range_end
  CROSS JOIN LATERAL (
    SELECT price, observed_at FROM prices
    WHERE product_id = c.product_id AND observed_at <= range_end.at
    ORDER BY observed_at DESC LIMIT 1
  ) latest
  WHERE latest.observed_at < range_end.at
  UNION ALL
  SELECT edge.at, c.name || ' (target)', c.target_price
  FROM chosen c
  CROSS JOIN LATERAL (
    VALUES ($__timeFrom()::timestamptz), ((SELECT at FROM range_end))
  ) edge(at)
  WHERE c.target_price IS NOT NULL AND c.active
)
SELECT time, name AS metric, price AS value
FROM points
ORDER BY time, metric
""",
            format="time_series",
        ),
    ),
    width=24,
    height=10,
    custom={"lineInterpolation": "stepAfter", "showPoints": "always", "pointSize": 4},
    options={"legend": {"displayMode": "table", "placement": "right", "calcs": ["min", "last"]}},
    overrides=(
        {
            "matcher": {"id": "byRegexp", "options": ".* \\(target\\)$"},
            "properties": [
                {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                {"id": "custom.lineInterpolation", "value": "linear"},
                {"id": "custom.showPoints", "value": "never"},
            ],
        },
    ),
)

CURRENT_PRICES = Panel(
    "Current price and availability",
    "table",
    (
        SqlQuery(
            f"""
WITH {CHOSEN.strip()}
SELECT c.name AS "product",
       coalesce(w.name, 'no website record') AS "website",
       p.current_price AS "price",
       p.currency AS "currency",
       c.target_price AS "target",
       (p.current_price <= c.target_price) AS "at or below target",
       p.availability AS "availability",
       coalesce(p.status, 'not checked yet') AS "status",
       c.active AS "subscribed",
       p.last_checked_at AS "last checked",
       p.url AS "url"
FROM chosen c
LEFT JOIN products p ON p.product_id = c.product_id
LEFT JOIN websites w ON w.id = p.website_id
ORDER BY c.name
"""
        ),
    ),
    width=24,
    height=7,
)

EVENTS = Panel(
    "Events on these products",
    "table",
    (
        SqlQuery(
            f"""
WITH {CHOSEN.strip()}
SELECT e.observed_at AS "time",
       c.name AS "product",
       e.event_type AS "event",
       e.old_price AS "old price",
       e.new_price AS "new price",
       e.new_currency AS "currency",
       e.old_availability AS "was",
       e.new_availability AS "now"
FROM price_events e
JOIN (SELECT DISTINCT product_id, name FROM chosen) c ON c.product_id = e.product_id
WHERE $__timeFilter(e.observed_at)
ORDER BY e.observed_at DESC
LIMIT 200
"""
        ),
    ),
    width=12,
    height=10,
)

ALERTS = Panel(
    "Alerts sent to this user",
    "table",
    (
        SqlQuery(
            f"""
WITH {CHOSEN.strip()}
SELECT n.created_at AS "time",
       c.name AS "product",
       n.kind AS "rule",
       n.status AS "status",
       n.sent_at AS "sent at",
       n.last_error AS "error"
FROM notifications n
JOIN chosen c ON c.subscription_id = n.subscription_id
WHERE $__timeFilter(n.created_at)
ORDER BY n.created_at DESC
LIMIT 200
"""
        ),
    ),
    width=12,
    height=10,
)

USER = Dashboard(
    uid="pricewatch-user",
    title="Pricewatch / User (support)",
    description="One user's products: price history with their target, current prices, the "
    "events that fired and the alerts sent. For admins and support; end users see their "
    "own chart on the API's signed-link manage page.",
    rows=(Row("Products", (PRICE_HISTORY, CURRENT_PRICES, EVENTS, ALERTS)),),
    variables=(USER_VARIABLE, PRODUCT_VARIABLE),
    time_from="now-30d",
    refresh="1m",
)
