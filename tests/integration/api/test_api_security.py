"""Issue 19 over real HTTP against a running API (real broker and PostgreSQL): what an
outside probe found, each closed and kept closed."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from api.context import BACKGROUND_KEY
from launcher.processes import Process, free_port, pricewatch_command
from launcher.stack import Stack
from pricewatch.contract.records import AccountEmail, AccountEmailKind
from pricewatch.db.engine import upgrade
from pricewatch.kafka import create_topics
from pricewatch.links import unsubscribe_link
from pricewatch.settings import Settings
from pricewatch.tokens import TokenPurpose, issue_token
from sinks.email.render import render_account_email
from tests.conftest import Broker
from tests.integration.api.test_api import (
    ADMIN,
    HAT,
    SHOP,
    Api,
    account_emails,
    api_settings,
    metrics_text,
    only_the_sentinel_was_published,
    running_api,
    token_of,
)

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


# --- 2: nothing changes on a GET ---------------------------------------------------------------


def _path_and_query(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


async def test_the_list_unsubscribe_url_acts_only_on_the_one_click_post(api: Api) -> None:
    body = await api.subscribe("ann@example.com", SHOP)
    # The very URL the email sink writes into List-Unsubscribe.
    link = unsubscribe_link(
        api.settings, issued_at=datetime.now(UTC), subscription_id=body["subscription_id"]
    )
    assert urlsplit(link).path == "/api/unsubscribe"
    target = _path_and_query(link)

    # A scanner, a link preview or a person opening it: a page that asks, nothing stopped.
    for _ in range(2):
        opened = await api.client.get(target)
        assert opened.status == 200
        assert opened.headers["Content-Type"].startswith("text/html")
        assert "default-src 'none'" in opened.headers["Content-Security-Policy"]
        page = await opened.text()
        assert 'method="post"' in page.lower() and "/unsubscribe?token=" in page
    assert api.rows("SELECT active FROM subscriptions") == [{"active": True}]

    # A POST that is not the one-click body stops nothing either.
    for data in ("", "List-Unsubscribe=Yes", "unsubscribe=One-Click"):
        response = await api.client.post(
            target, data=data, headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert response.status == 400, data
    assert api.rows("SELECT active FROM subscriptions") == [{"active": True}]

    # The page's button, and the one-click POST, do.
    response = await api.client.post(
        target,
        data="List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 200 and await response.json() == {"unsubscribed": 1}
    assert api.rows("SELECT active FROM subscriptions") == [{"active": False}]


async def test_verifying_an_address_changes_nothing_on_a_get(api: Api) -> None:
    await api.subscribe("ann@example.com", SHOP)
    [mail] = [m for m in await account_emails(api.settings, 1) if m.email == "ann@example.com"]
    token = token_of(mail.link)
    unverified = [{"v": False}]

    response = await api.client.get("/api/verify", params={"token": token})
    assert response.status == 405 and response.headers["Allow"] == "POST"
    # The email's link opens a page whose button POSTs; the GET itself verifies nothing.
    opened = await api.client.get(_path_and_query(mail.link))
    assert opened.status == 200 and 'method="post"' in (await opened.text()).lower()
    assert api.rows("SELECT verified_at IS NOT NULL AS v FROM users") == unverified

    pressed = await api.client.post(_path_and_query(mail.link))
    assert pressed.status == 200 and "Address confirmed" in await pressed.text()
    assert api.rows("SELECT verified_at IS NOT NULL AS v FROM users") == [{"v": True}]
    # The JSON API for programs is the same POST.
    response = await api.client.post("/api/verify", params={"token": token})
    assert response.status == 200 and (await response.json())["verified"] is True


async def test_the_openapi_document_lists_only_the_state_changing_posts(api: Api) -> None:
    paths = (await (await api.client.get("/api/openapi.json")).json())["paths"]
    assert set(paths["/api/verify"]) == {"post"}
    assert set(paths["/api/unsubscribe"]) == {"get", "post"}
    one_click_body = paths["/api/unsubscribe"]["post"]["requestBody"]["content"]
    assert "application/x-www-form-urlencoded" in one_click_body
    assert "text/html" in paths["/api/unsubscribe"]["get"]["responses"]["200"]["content"]


# --- 5: cross-site requests ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",  # what a page of another site can send without asking
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
    ],
)
async def test_the_json_api_takes_only_json_bodies(api: Api, content_type: str | None) -> None:
    body = json.dumps({"email": "ann@example.com", "url": SHOP, "target_price": "5"})
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = await api.client.post(
        "/api/subscriptions",
        data=body.encode(),
        headers=headers,
        skip_auto_headers={"Content-Type"},
    )
    assert response.status == 415, await response.text()
    assert (await response.json())["status"] == 415
    response = await api.client.post(
        "/api/manage-link",
        data=b'{"email": "ann@example.com"}',
        headers=headers,
        skip_auto_headers={"Content-Type"},
    )
    assert response.status == 415
    assert await only_the_sentinel_was_published(api)
    # The same body as JSON is accepted (and a +json type is JSON too).
    response = await api.client.post(
        "/api/subscriptions",
        data=body.encode(),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status == 201


def _own_origin(api: Api) -> str:
    return str(api.client.make_url("/")).rstrip("/")


SUBSCRIBE_FORM = {"email": "ann@example.com", "url": SHOP, "target_price": "5"}


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "same-site"},
        # A browser's Sec-Fetch-Site wins over an Origin that looks like ours.
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://pricewatch.test"},
    ],
    ids=["origin", "origin-null", "fetch-site", "same-site", "fetch-site-wins"],
)
async def test_forms_posted_from_another_site_are_refused(
    api: Api, headers: dict[str, str]
) -> None:
    for path, form in (("/subscribe", SUBSCRIBE_FORM), ("/manage-link", {"email": "a@b.example"})):
        response = await api.client.post(path, data=form, headers=headers)
        assert response.status == 403, (path, await response.text())
        assert response.headers["Content-Type"].startswith("text/html")
        assert "other websites" in await response.text()
    assert api.rows("SELECT count(*) AS n FROM users") == [{"n": 0}]
    assert await only_the_sentinel_was_published(api)
    metrics = metrics_text()
    assert "pricewatch_api_cross_site_refused_total" in metrics


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no browser: curl, a script
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://pricewatch.test"},
        {"Sec-Fetch-Site": "none"},  # typed, bookmarked
        {"Origin": "http://pricewatch.test"},  # the public base URL (behind a proxy)
        {"Origin": "OWN"},  # the address the request came to
    ],
    ids=["no-browser", "same-origin", "none", "public-origin", "addressed-origin"],
)
async def test_forms_of_our_own_pages_and_non_browsers_are_accepted(
    api: Api, headers: dict[str, str]
) -> None:
    if headers.get("Origin") == "OWN":
        headers = {"Origin": _own_origin(api)}
    response = await api.client.post("/subscribe", data=SUBSCRIBE_FORM, headers=headers)
    assert response.status == 200, await response.text()
    assert "Check your inbox" in await response.text()


async def test_the_one_click_post_works_from_mail_software_anywhere(api: Api) -> None:
    body = await api.subscribe("ann@example.com", SHOP)
    link = unsubscribe_link(
        api.settings, issued_at=datetime.now(UTC), subscription_id=body["subscription_id"]
    )
    response = await api.client.post(
        _path_and_query(link),
        data="List-Unsubscribe=One-Click",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": "https://mail.example",  # a webmail page
            "Sec-Fetch-Site": "cross-site",
        },
    )
    assert response.status == 200 and await response.json() == {"unsubscribed": 1}


# --- 4: real client addresses behind a proxy ----------------------------------------------------


async def _statuses(api: Api, forwarded_for: str, emails: list[str]) -> list[int]:
    out = []
    for email in emails:
        response = await api.client.post(
            "/api/subscriptions",
            json={"email": email, "url": SHOP, "target_price": "5"},
            headers={"X-Forwarded-For": forwarded_for},
        )
        out.append(response.status)
    return out


@pytest.mark.parametrize("trusted", [True, False], ids=["behind-trusted-proxy", "direct"])
async def test_the_address_limit_keys_on_the_client_only_behind_a_trusted_proxy(
    broker: Broker, unique_prefix: str, tmp_path: Path, postgres_url: str, trusted: bool
) -> None:
    upgrade(postgres_url)
    settings = api_settings(
        broker,
        unique_prefix,
        tmp_path,
        postgres_url,
        rate_limit_per_address_per_minute=2,
        # The test client connects from loopback: here, loopback is the load balancer.
        trusted_proxies="127.0.0.0/8,::1" if trusted else "",
    )
    async with running_api(settings, postgres_url) as api:
        first = await _statuses(api, "198.51.100.1", ["a@example.com", "b@example.com"])
        assert first == [201, 201]
        # Another client behind the same proxy; a client forging an earlier hop is still
        # the address the proxy saw.
        other = await _statuses(api, "198.51.100.2", ["c@example.com"])
        forged = await _statuses(api, "9.9.9.9, 198.51.100.1", ["d@example.com"])
        if trusted:
            assert other == [201], "one client's limit must not lock out another"
            assert forged == [429], "a forged X-Forwarded-For hop must not evade the limit"
        else:
            # X-Forwarded-For from an untrusted peer is ignored: one peer, one bucket.
            assert other == [429] and forged == [429]


# --- 6: only addresses that can be delivered ------------------------------------------------------


async def test_an_internationalised_domain_is_kept_and_mailed_in_ascii(api: Api) -> None:
    body = await api.subscribe("Carol@Exämple.com", SHOP)
    assert body["email"] == "Carol@xn--exmple-cua.com"
    [mail] = await account_emails(api.settings, 1)
    assert mail.email == "carol@xn--exmple-cua.com"  # the stored address, lower-cased
    # What the email sink makes of that record: a To header every server reads.
    message = render_account_email(mail, api.settings)
    assert message["To"] == "carol@xn--exmple-cua.com"
    assert api.rows("SELECT email FROM users") == [{"email": "carol@xn--exmple-cua.com"}]
    # Written either way, it is one address.
    again = await api.subscribe("carol@xn--exmple-cua.com", SHOP)
    assert again["subscription_id"] == body["subscription_id"]


async def test_a_non_ascii_local_part_is_refused_with_a_clear_422(api: Api) -> None:
    response = await api.client.post(
        "/api/subscriptions",
        json={"email": "jösé@example.com", "url": SHOP, "target_price": "5"},
    )
    assert response.status == 422
    [error] = (await response.json())["errors"]
    assert error["field"] == "email" and "non-ASCII characters before the @" in error["message"]
    response = await api.client.post("/api/manage-link", json={"email": "jösé@example.com"})
    assert response.status == 422
    page = await api.client.post(
        "/subscribe", data={"email": "jösé@example.com", "url": SHOP, "target_price": "5"}
    )
    assert page.status == 422 and "non-ASCII characters before the @" in await page.text()
    assert await only_the_sentinel_was_published(api)


# --- 7: abuse limits --------------------------------------------------------------------------


def _limited(
    broker: Broker, prefix: str, tmp_path: Path, database_url: str, **extra: Any
) -> Settings:
    upgrade(database_url)
    return api_settings(
        broker,
        prefix,
        tmp_path,
        database_url,
        rate_limit_per_address_per_minute=1000,  # one test client plays many people
        **extra,
    )


async def _subscribe_statuses(api: Api, emails: list[str]) -> list[int]:
    out = []
    for email in emails:
        response = await api.client.post(
            "/api/subscriptions", json={"email": email, "url": SHOP, "target_price": "5"}
        )
        out.append(response.status)
        if response.status == 429:
            assert (await response.json())["reason"] == "email"
    return out


async def test_limits_count_per_mailbox_not_per_spelling(
    broker: Broker, unique_prefix: str, tmp_path: Path, postgres_url: str
) -> None:
    settings = _limited(
        broker, unique_prefix, tmp_path, postgres_url, rate_limit_per_email_per_hour=2
    )
    async with running_api(settings, postgres_url) as api:
        tagged = ["victim+1@example.com", "Victim+2@Example.com", "victim+3@example.com"]
        assert await _subscribe_statuses(api, tagged) == [201, 201, 429]
        assert await _subscribe_statuses(api, ["victim@example.com"]) == [429]
        dotted = ["v.ictim@gmail.com", "vic.tim+x@googlemail.com", "victim@gmail.com"]
        assert await _subscribe_statuses(api, dotted) == [201, 201, 429]
        # Another mailbox has its own share.
        assert await _subscribe_statuses(api, ["other+1@example.com"]) == [201]


async def test_others_cannot_use_up_the_owners_manage_link_or_channels(
    broker: Broker, unique_prefix: str, tmp_path: Path, postgres_url: str
) -> None:
    settings = _limited(
        broker, unique_prefix, tmp_path, postgres_url, rate_limit_per_email_per_hour=2
    )
    async with running_api(settings, postgres_url) as api:
        # Strangers use up the victim's sign-up share and ask for its manage link often.
        assert await _subscribe_statuses(api, ["victim@example.com"] * 3) == [201, 201, 429]
        for _ in range(5):
            response = await api.client.post(
                "/api/manage-link", json={"email": "victim@example.com"}
            )
            assert response.status == 202
        # The owner's own request still works ...
        response = await api.client.post("/api/manage-link", json={"email": "victim@example.com"})
        assert response.status == 202

        async def manage_links() -> list[AccountEmail]:
            mails = await account_emails(api.settings, 2)
            return [m for m in mails if m.kind is AccountEmailKind.MANAGE_LINK]

        # ... and however often anyone asked, one manage-link email went out this hour.
        deadline = asyncio.get_running_loop().time() + 60
        while not (links := await manage_links()):
            assert asyncio.get_running_loop().time() < deadline, "no manage link published"
        assert {m.idempotency_key for m in links} == {links[0].idempotency_key}
        # With that link the owner can add a channel: strangers did not use that up either.
        token = token_of(links[0].link)
        response = await api.client.post(
            "/api/manage/channels",
            params={"token": token},
            json={"kind": "webhook", "url": "https://hooks.example/x"},
        )
        assert response.status == 201, await response.text()


async def test_admin_token_guesses_are_limited_per_client(
    broker: Broker, unique_prefix: str, tmp_path: Path, postgres_url: str
) -> None:
    settings = _limited(
        broker,
        unique_prefix,
        tmp_path,
        postgres_url,
        rate_limit_admin_failures_per_hour=3,
        trusted_proxies="127.0.0.0/8,::1",  # X-Forwarded-For tells the two clients apart
    )
    async with running_api(settings, postgres_url) as api:

        async def admin_call(client: str, token: str) -> int:
            response = await api.client.get(
                "/api/admin/websites",
                headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": client},
            )
            return response.status

        guesses = [await admin_call("198.51.100.66", f"guess-{n}") for n in range(5)]
        assert guesses == [403, 403, 403, 429, 429]
        # Locked out, the right token is refused too: an answer never confirms a guess.
        assert await admin_call("198.51.100.66", ADMIN) == 429
        # The admin elsewhere is not locked out.
        assert await admin_call("198.51.100.7", ADMIN) == 200
        metrics = metrics_text()
        assert re.search(r'pricewatch_api_rate_limited_total\{scope="admin"\} [1-9]', metrics)


# --- 1: private metrics, and none that tells whether an address is known ----------------------


def _get(url: str, data: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _api_series(exposition: str) -> dict[str, float]:
    """Every pricewatch_api_* sample (name with labels -> value), _created ones left out."""
    out = {}
    for line in exposition.splitlines():
        if line.startswith("pricewatch_api_") and "_created" not in line.split(" ")[0]:
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _settled_api_series(metrics_url: str, deadline_seconds: float = 60.0) -> dict[str, float]:
    """The pricewatch_api_* samples once two scrapes in a row agree: work the API does after
    it has answered (a producer's delivery, an email handed on) must not land in the next
    request's window."""
    deadline = time.monotonic() + deadline_seconds
    previous = _api_series(_get(metrics_url)[1])
    while True:
        time.sleep(0.2)  # the polling interval, not a wait for an outcome
        current = _api_series(_get(metrics_url)[1])
        if current == previous:
            return current
        assert time.monotonic() < deadline, "the API's counters never settled"
        previous = current


def _moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {
        name: after[name] - before.get(name, 0.0)
        for name in after
        if after[name] != before.get(name, 0.0)
    }


def test_the_api_process_serves_metrics_only_on_its_own_port_and_they_do_not_tell_who_is_known(
    broker: Broker, unique_prefix: str, tmp_path: Path, postgres_url: str
) -> None:
    upgrade(postgres_url)
    settings = api_settings(broker, unique_prefix, tmp_path, postgres_url, api_port=free_port())
    asyncio.run(create_topics(settings))
    metrics_port = free_port()
    command = pricewatch_command("api", "--metrics-port", str(metrics_port))
    base = f"http://{settings.api_host}:{settings.api_port}"
    metrics_url = f"http://{settings.metrics_host}:{metrics_port}/metrics"
    with Process("api", command, tmp_path / "api.log", env=Stack(settings).child_env()) as api:
        api.start()
        api.wait_for_port(settings.api_host, settings.api_port, 60)
        status, body = _get(f"{base}/metrics")
        assert status == 404 and json.loads(body)["status"] == 404
        status, exposition = _get(metrics_url)
        assert status == 200 and "pricewatch_api_requests_total" in exposition
        assert "/metrics" not in json.loads(_get(f"{base}/api/openapi.json")[1])["paths"]

        # A new, an unverified and a verified address: the same answer, the same counters.
        verified = "verified@example.com"
        assert _get(f"{base}/api/subscriptions", _subscription(verified, HAT))[0] == 201
        token = issue_token(
            settings.secret_key_bytes(),
            TokenPurpose.VERIFY,
            verified,
            now=datetime.now(UTC),
            ttl=timedelta(hours=1),
        )
        assert _get(f"{base}/api/verify?token={token}", b"")[0] == 200
        assert _get(f"{base}/api/subscriptions", _subscription("known@example.com", HAT))[0] == 201
        moved = []
        for email in ("new@example.com", "known@example.com", verified):
            before = _settled_api_series(metrics_url)
            status, answer = _get(f"{base}/api/subscriptions", _subscription(email, SHOP))
            assert status == 201, answer
            moved.append(_moved(before, _settled_api_series(metrics_url)))
        assert moved[0] == moved[1] == moved[2], moved
        assert moved[0] == {
            'pricewatch_api_requests_total{route="/api/subscriptions",status="201"}': 1.0,
            'pricewatch_api_account_requests_total{request="subscribe"}': 1.0,
        }
        assert "pricewatch_api_account_emails_total" not in _get(metrics_url)[1]


def _subscription(email: str, url: str) -> bytes:
    return json.dumps({"email": email, "url": url, "target_price": "5"}).encode()


# --- 3: a slow DNS server cannot stall the API ---------------------------------------------------


async def test_hanging_name_lookups_get_422_and_database_calls_keep_working(
    broker: Broker,
    unique_prefix: str,
    tmp_path: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    released = threading.Event()
    hanging = []
    original = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if str(host).endswith(".hang.example"):
            hanging.append(host)
            released.wait(90)  # a DNS server that never answers (until the test ends)
            raise socket.gaierror(socket.EAI_AGAIN, "timed out")
        return original(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    upgrade(postgres_url)
    settings = api_settings(
        broker, unique_prefix, tmp_path, postgres_url, dns_lookup_timeout_seconds=1.0
    )
    try:
        async with running_api(settings, postgres_url) as api:
            # More hanging lookups at once than asyncio's default executor has threads.
            answers = await asyncio.gather(
                *(
                    api.client.post(
                        "/api/subscriptions",
                        json={
                            "email": f"slow{n}@example.com",
                            "url": f"https://shop{n}.hang.example/p",
                            "target_price": "5",
                        },
                    )
                    for n in range(10)
                )
            )
            for answer in answers:
                assert answer.status == 422, await answer.text()
                [error] = (await answer.json())["errors"]
                assert error["field"] == "url" and "did not resolve within 1 s" in error["message"]
            assert hanging, "the lookups never reached the resolver"
            # The lookups still hang; the database calls do not wait for them.
            ready = await api.client.get("/readyz")
            assert (await ready.json())["checks"]["database"] == "ok"
            body = await api.subscribe("fast@example.com", "http://127.0.0.1:8081/p")
            assert body["email"] == "fast@example.com"
            assert api.rows("SELECT email FROM users") == [{"email": "fast@example.com"}]
    finally:
        released.set()


async def test_the_answer_does_not_wait_for_the_addresss_own_part(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What differs between a new, an unverified and a verified address (reading it,
    storing, which email) runs after the answer: its timing cannot tell them apart."""
    from api import queries

    released = threading.Event()
    reached = threading.Event()
    ensure_user = queries.ensure_user

    def slow_ensure_user(*args: Any) -> Any:
        reached.set()
        released.wait(120)  # released by the test once the answer came
        return ensure_user(*args)

    monkeypatch.setattr(queries, "ensure_user", slow_ensure_user)
    try:
        # A plain session: the test client would wait for the work after the answer. If
        # answering waited for the held part (as it did), no answer comes in time.
        no_answer_after = aiohttp.ClientTimeout(total=60)
        async with (
            aiohttp.ClientSession(timeout=no_answer_after) as session,
            session.post(
                api.client.make_url("/api/subscriptions"),
                json={"email": "ann@example.com", "url": SHOP, "target_price": "5"},
            ) as response,
        ):
            assert response.status == 201
        assert not released.is_set()  # answered while the address's part still waits
        await asyncio.to_thread(reached.wait, 60)
    finally:
        released.set()
    await asyncio.gather(*api.client.server.app[BACKGROUND_KEY])
    assert api.rows("SELECT email FROM users") == [{"email": "ann@example.com"}]
    [mail] = await account_emails(api.settings, 1)
    assert mail.kind is AccountEmailKind.VERIFY
