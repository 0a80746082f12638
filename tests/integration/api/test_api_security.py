"""Issue 19 over real HTTP against a running API (real broker and PostgreSQL): what an
outside probe found, each closed and kept closed."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.integration.api.test_api import SHOP, Api, only_the_sentinel_was_published

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def raw_exchange(api: Api, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as bytes on a socket (no client to tidy it up); the answer's status,
    headers (lower-case names) and body."""
    server = api.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in header_lines)
    }
    return int(status_line.split()[1]), headers, body


# --- 8: small ones ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /<script>alert(1)</script> HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header<script>: 1\r\n\r\n",
        b"POST /api/subscriptions HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GET / HTTP/9.9<b>\r\n\r\n",
    ],
    ids=["request-line", "header-name", "content-length", "version"],
)
async def test_requests_aiohttp_cannot_parse_get_a_problem_with_the_security_headers(
    api: Api, request_bytes: bytes
) -> None:
    status, headers, body = await raw_exchange(api, request_bytes)
    assert status == 400
    assert headers["content-type"].startswith("application/json"), headers
    assert json.loads(body) == {"title": "Bad Request", "status": 400}
    assert b"<" not in body  # nothing of the input comes back
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    # The API still answers afterwards.
    assert (await api.client.get("/healthz")).status == 200


async def test_port_zero_is_refused_and_dot_segments_are_one_product(api: Api) -> None:
    response = await api.client.post(
        "/api/subscriptions",
        json={"email": "ann@example.com", "url": "https://shop.example:0/p", "target_price": "5"},
    )
    assert response.status == 422
    problem = await response.json()
    assert [e["field"] for e in problem["errors"]] == ["url"]
    assert "port 0" in problem["errors"][0]["message"]
    assert await only_the_sentinel_was_published(api)

    first = await api.subscribe("ann@example.com", SHOP)
    for spelling in (
        "https://shop.example/products/../products/kettle",
        "https://shop.example/products/./kettle",
        "https://shop.example/x/%2e%2E/products/kettle",
    ):
        again = await api.subscribe("ann@example.com", spelling)
        assert again["subscription_id"] == first["subscription_id"], spelling
        assert again["url"] == SHOP
    assert api.rows("SELECT DISTINCT url FROM subscriptions") == [{"url": SHOP}]
