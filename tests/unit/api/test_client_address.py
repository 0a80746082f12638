"""Which address the per-client limits key on: the TCP peer, or behind a trusted proxy the
client it forwarded for (``api.context.forwarded_client``)."""

from __future__ import annotations

import ipaddress

import pytest

from api.context import forwarded_client
from pricewatch.settings import Settings

ALB = [ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("10.0.1.0/24")]


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        # Not from a trusted proxy: X-Forwarded-For is anyone's words.
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
        ("10.0.2.7", ["198.51.100.1"], "10.0.2.7"),
        # From the load balancer: the address it appended.
        ("10.0.0.5", ["198.51.100.1"], "198.51.100.1"),
        ("::ffff:10.0.0.5", ["198.51.100.1"], "198.51.100.1"),
        # A client writing its own X-Forwarded-For changes nothing: the rightmost
        # untrusted address is the one the load balancer saw.
        ("10.0.0.5", ["1.2.3.4, 5.6.7.8, 198.51.100.1"], "198.51.100.1"),
        # Two trusted hops (a proxy behind the load balancer), two headers.
        ("10.0.1.9", ["198.51.100.1, 10.0.0.5"], "198.51.100.1"),
        ("10.0.1.9", ["1.2.3.4", "198.51.100.1, 10.0.0.5"], "198.51.100.1"),
        # A trusted proxy that sent none, or only proxies: the nearest one.
        ("10.0.0.5", [], "10.0.0.5"),
        ("10.0.0.5", ["10.0.1.2"], "10.0.1.2"),
        ("10.0.0.5", [" , "], "10.0.0.5"),
        # Garbage right of every real address is a key of its own, never a proxy.
        ("10.0.0.5", ["198.51.100.1, garbage"], "garbage"),
        ("2001:db8::1", ["198.51.100.1"], "2001:db8::1"),
    ],
)
def test_the_client_is_the_rightmost_address_outside_the_trusted_proxies(
    peer: str, forwarded_for: list[str], client: str
) -> None:
    assert forwarded_client(peer, forwarded_for, ALB) == client


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert forwarded_client("127.0.0.1", ["198.51.100.1"], []) == "127.0.0.1"


def test_the_setting_reads_a_comma_separated_list_of_networks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRICEWATCH_TRUSTED_PROXIES", "10.0.0.0/24, 10.0.1.7,2001:db8::/64")
    assert Settings().trusted_proxies == [
        ipaddress.ip_network("10.0.0.0/24"),
        ipaddress.ip_network("10.0.1.7/32"),
        ipaddress.ip_network("2001:db8::/64"),
    ]
    monkeypatch.setenv("PRICEWATCH_TRUSTED_PROXIES", "")
    assert Settings().trusted_proxies == []
    monkeypatch.setenv("PRICEWATCH_TRUSTED_PROXIES", "10.0.0.0/33")
    with pytest.raises(ValueError, match="does not appear"):
        Settings()
