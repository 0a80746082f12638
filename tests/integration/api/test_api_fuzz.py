"""Fuzzing ``POST /api/subscriptions`` over real HTTP, with the real producer on the test
broker behind it: random JSON bodies built around a valid request (every field replaced by
anything JSON can hold), random bytes, non-UTF-8, deep nesting, oversize bodies and odd
content types. Every answer must be one of the documented statuses, never a 500.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import MAX_BODY_BYTES, run_api
from launcher.processes import free_port, wait_for_port
from pricewatch.db.engine import upgrade
from pricewatch.kafka import create_topics
from pricewatch.settings import Settings
from tests.conftest import Broker, fresh_database

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

JSON = "application/json"
DOCUMENTED = {201, 400, 413, 415, 422, 429, 503}  # 415: not sent as JSON
STATUSES: Counter[int] = Counter()


class ApiServer:
    """``run_api`` (the API process's own entry point) on its own event loop and thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        async def main() -> None:
            self.stop_event = asyncio.Event()
            await run_api(self.settings, self.stop_event)

        try:
            self.loop.run_until_complete(main())
        except BaseException as exc:  # reported by the fixture
            self.error = exc

    def __enter__(self) -> ApiServer:
        self.thread.start()
        wait_for_port(self.settings.api_host, self.settings.api_port, 30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)
        assert self.error is None, repr(self.error)


@pytest.fixture(scope="module")
def api_port(
    broker: Broker, postgres_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int]]:
    prefix = f"fuzz{free_port()}-"
    for database_url in fresh_database(postgres_server):
        upgrade(database_url)
        settings = Settings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            kafka_embedded=broker.embedded,
            topic_prefix=prefix,
            data_dir=tmp_path_factory.mktemp("api-fuzz"),
            database_url=database_url,
            secret_key="api-fuzz-test-secret-0123456789",  # type: ignore[arg-type]
            api_port=free_port(),
            allowed_private_hosts="127.0.0.1:8081",
            # Hundreds of requests from one address: the rate limits (tested in test_api)
            # would answer most of them 429 and hide what the handlers do.
            rate_limit_per_address_per_minute=1e9,
            rate_limit_per_email_per_hour=1e9,
        )
        asyncio.run(create_topics(settings))
        with ApiServer(settings):
            yield settings.api_host, settings.api_port
    print(f"statuses seen: {dict(sorted(STATUSES.items()))}")


def post(
    where: tuple[str, int], body: bytes, content_type: str = "application/json"
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(*where, timeout=30)
    try:
        connection.request(
            "POST", "/api/subscriptions", body=body, headers={"Content-Type": content_type}
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def check(where: tuple[str, int], body: bytes, content_type: str = "application/json") -> int:
    status, answer = post(where, body, content_type)
    STATUSES[status] += 1
    assert status in DOCUMENTED, (status, body[:300], answer[:500])
    if status != 201:
        problem = json.loads(answer)  # errors are JSON problems, not HTML pages
        assert problem["status"] == status
    return status


# --- Strategies -----------------------------------------------------------------------

ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=12,
)
NASTY_STRINGS = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "ann@example.com\r\nBcc: eve@example.com",
        "ann@@example.com",
        "ann@example.com" + "x" * 300,
        "ann@ex\u00e4mple.com",
        "https://shop.example/p/1",
        "http://127.0.0.1:8081/products/kettle",
        "http://127.0.0.1:22/",
        "http://localhost/admin",
        "http://[::1]/",
        "http://[::1",
        "http://shop.example:99999/p",
        "http://shop.example:-1/p",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "https://user:pw@shop.example/p",
        "https://xn--nxasmq6b.example/p",
        "https://\u0000.example/",
        "https://" + "a" * 64 + ".example/p",
        "https://shop.example/" + "p" * 3000,
        "12.99",
        "0",
        "-1",
        "1e999999",
        "1E-999999",
        "NaN",
        "sNaN",
        "Infinity",
        "-0",
        "99.999",
        "0.001",
        "100",
        "true",
    ]
)
FIELDS = [
    "email",
    "url",
    "target_price",
    "drop_percent",
    "notify_any_drop",
    "notify_back_in_stock",
    "notify_sold_out",
    "notify_removed",
]


@st.composite
def subscription_bodies(draw: st.DrawFn) -> Any:
    """A valid request with some fields replaced, removed or added."""
    body: dict[str, Any] = {
        "email": f"fuzz{draw(st.integers(0, 10**6))}@example.com",
        "url": "https://shop.example/products/kettle",
        "target_price": "79.00",
    }
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        body[field] = draw(NASTY_STRINGS | ANY_JSON)
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=2, unique=True)):
        body.pop(field, None)
    if draw(st.booleans()):
        body[draw(st.text(max_size=12))] = draw(ANY_JSON)
    return body


FUZZ = settings(
    max_examples=150,
    deadline=None,  # real HTTP on a loaded machine; the module timeout catches a hang
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(body=subscription_bodies())
def test_json_bodies(api_port: tuple[str, int], body: Any) -> None:
    check(api_port, json.dumps(body, allow_nan=True).encode())


@settings(FUZZ, max_examples=80)
@given(body=ANY_JSON | NASTY_STRINGS)
def test_any_json_document(api_port: tuple[str, int], body: Any) -> None:
    assert check(api_port, json.dumps(body, allow_nan=True).encode()) != 201


@settings(FUZZ, max_examples=80)
@given(
    body=st.binary(max_size=600)
    | st.text(max_size=300).map(lambda t: t.encode("utf-16"))
    | subscription_bodies().map(
        lambda b: json.dumps(b, ensure_ascii=False).encode("latin-1", "replace")
    )
    | subscription_bodies().map(lambda b: json.dumps(b).encode()[:-3]),
    content_type=st.sampled_from(
        [
            "application/json",
            "application/json; charset=latin-1",
            "application/json; charset=nonsense",
            "text/plain",
            "application/x-www-form-urlencoded",
            "",
        ]
    ),
)
def test_garbled_bytes(api_port: tuple[str, int], body: bytes, content_type: str) -> None:
    check(api_port, body, content_type)


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        # Each of the first three was a 500 before (RecursionError, LookupError).
        pytest.param(b"[" * 5000 + b"]" * 5000, JSON, 400, id="deep-array"),
        pytest.param(b'{"a":' * 2000 + b"1" + b"}" * 2000, JSON, 400, id="deep-object"),
        pytest.param(b"{}", "application/json; charset=nonsense", 400, id="unknown-charset"),
        pytest.param(b'{"email": "' + b"a" * MAX_BODY_BYTES + b'"}', JSON, 413, id="oversize"),
        pytest.param(b'{"email": "a@b.c", "email": 1}', JSON, 422, id="duplicate-key"),
        pytest.param(b"\xef\xbb\xbf{}", JSON, 400, id="utf8-bom"),
        pytest.param(b"", JSON, 400, id="empty"),
    ],
)
def test_edge_bodies(
    api_port: tuple[str, int], body: bytes, content_type: str, expected: int
) -> None:
    assert check(api_port, body, content_type) == expected


def test_the_fuzzed_api_still_subscribes(api_port: tuple[str, int]) -> None:
    body = {
        "email": "after-fuzz@example.com",
        "url": "https://shop.example/p/1",
        "target_price": "9",
    }
    assert check(api_port, json.dumps(body).encode()) == 201
