"""The hostile-URL guard: URL shape, address classes, allow-list, and DNS answers."""

from __future__ import annotations

import ipaddress
import socket

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from pricewatch.urlguard import (
    GuardedResolver,
    UrlRefused,
    check_address,
    check_host,
    check_url,
    refusal_reason,
)

NOTHING_ALLOWED: frozenset[str] = frozenset()


@pytest.mark.parametrize(
    "url",
    [
        "http://shop.example/products/1",
        "https://shop.example:8443/p?id=1#reviews",
        "HTTPS://Shop.Example/",
        "http://93.184.215.14/",
        "http://bücher.example/café",
        "http://shop_1.example./p",
        "http://[2001:db8::1]:8080/",
    ],
)
def test_check_url_accepts_plain_http_urls(url: str) -> None:
    check_url(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://shop.example/file", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("gopher://127.0.0.1:6379/_INFO", "scheme"),
        ("/products/1", "scheme"),
        ("http:///products/1", "no host"),
        ("http://user:secret@shop.example/", "user info"),
        ("http://shop.example@127.0.0.1/", "user info"),
        ("http://2130706433/", "non-canonical"),
        ("http://127.1/", "non-canonical"),
        ("http://0x7f.0.0.1/", "non-canonical"),
        ("http://shop.example:99999/", "malformed"),
        ("http://shop.example:0/", "port 0"),
        ("https://shop.example:00/p", "port 0"),
        ("http://a..b/x", "invalid host name"),
        ("http://.example/", "invalid host name"),
        ("http://" + "a" * 64 + ".example/", "invalid host name"),
        ("http://" + ".".join(["a" * 60] * 5) + "/", "invalid host name"),
        ("http://-shop.example/", "invalid host name"),
        ("http://sh%6Fp.example/", "invalid host name"),
        ("http://[shop.example]/", "malformed"),
        ("http://a b.example/", "space"),
        ("http://shop.example/p\x00", "control character"),
        ("http://shop.example/p\tq", "control character"),
        ("http://shop.example\\@127.0.0.1/", "backslash"),
    ],
)
def test_check_url_refuses(url: str, reason: str) -> None:
    with pytest.raises(UrlRefused, match=reason):
        check_url(url)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.64.0.1", "non-global"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("64:ff9b::a00:1", "private"),
        ("2002:7f00:1::", "loopback"),
    ],
)
def test_refusal_reason_for_internal_addresses(address: str, reason: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


def test_allow_list_matches_host_or_host_and_port() -> None:
    check_address("demo-shop", 8081, "127.0.0.1", frozenset({"demo-shop"}))
    check_address("localhost", 8081, "127.0.0.1", frozenset({"localhost:8081"}))
    with pytest.raises(UrlRefused, match="loopback"):
        check_address("localhost", 9999, "127.0.0.1", frozenset({"localhost:8081"}))


def test_metadata_address_is_refused_even_for_an_allow_listed_host() -> None:
    with pytest.raises(UrlRefused, match="metadata"):
        check_address("demo-shop", 80, "169.254.169.254", frozenset({"demo-shop", "demo-shop:80"}))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8081/products/x",
        "http://[::1]:8081/products/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://[::ffff:127.0.0.1]/",
    ],
)
def test_literal_ip_hosts_are_checked_without_a_resolver(url: str) -> None:
    with pytest.raises(UrlRefused):
        check_host(url, NOTHING_ALLOWED)


def test_literal_ip_hosts_can_be_allow_listed_with_their_port() -> None:
    check_host("http://127.0.0.1:8081/products/x", frozenset({"127.0.0.1:8081"}))
    check_host("http://[::1]:8081/products/x", frozenset({"[::1]:8081"}))
    check_host("http://93.184.215.14/", NOTHING_ALLOWED)
    with pytest.raises(UrlRefused):
        check_host("http://127.0.0.1:8082/products/x", frozenset({"127.0.0.1:8081"}))


class ScriptedResolver(AbstractResolver):
    """A DNS server the attacker controls: each lookup gives the next scripted answer."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self.answers.pop(0)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        pass


async def test_dns_rebinding_is_refused_on_the_second_lookup() -> None:
    resolver = GuardedResolver(NOTHING_ALLOWED, ScriptedResolver(["93.184.215.14"], ["127.0.0.1"]))

    first = await resolver.resolve("rebind.example", 80)
    assert [r["host"] for r in first] == ["93.184.215.14"]
    with pytest.raises(UrlRefused, match="loopback"):
        await resolver.resolve("rebind.example", 80)


async def test_a_single_internal_address_among_public_ones_refuses_the_host() -> None:
    resolver = GuardedResolver(NOTHING_ALLOWED, ScriptedResolver(["93.184.215.14", "10.0.0.7"]))

    with pytest.raises(UrlRefused, match="private"):
        await resolver.resolve("mixed.example", 443)


async def test_default_resolver_refuses_localhost_unless_allow_listed() -> None:
    with pytest.raises(UrlRefused, match="loopback"):
        await GuardedResolver(NOTHING_ALLOWED).resolve("localhost", 8081)

    allowed = await GuardedResolver(frozenset({"localhost:8081"})).resolve("localhost", 8081)
    assert allowed


async def test_the_guard_runs_at_connect_time_inside_aiohttp() -> None:
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(NOTHING_ALLOWED))
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(UrlRefused, match="loopback"):
            await session.get("http://localhost:9/")
