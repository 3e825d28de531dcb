"""SSRF refusals that need no socket: the address policy and refusals before any connection.

The fetches against a real local HTTP server (redirects to private addresses, slow, huge and
TLS-broken hosts) are in tests/contract/test_fetcher.py.
"""

from __future__ import annotations

import pytest

from mimamori.media.addresses import AddressPolicy
from mimamori.media.fetcher import Fetcher, FetchFailure, FetchLimits

REFUSED = [
    "127.0.0.1", "127.8.9.10", "::1", "0.0.0.0", "::",               # loopback, unspecified
    "10.1.2.3", "172.16.0.1", "192.168.1.1", "fd12::1",              # private
    "169.254.1.1", "fe80::1",                                        # link-local
    "169.254.169.254", "fd00:ec2::254", "100.100.100.200",           # cloud metadata
    "100.64.0.1",                                                    # CGNAT
    "224.0.0.1", "239.1.1.1", "ff02::1",                             # multicast
    "240.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1",       # reserved, documentation, benchmark
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", # IPv4-mapped
    "::127.0.0.1", "::10.0.0.1",                                     # IPv4-compatible
    "2002:7f00:1::1", "2002:a00:1::1",                               # 6to4 of 127.0.0.1, 10.0.0.1
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::1",         # NAT64 of loopback, metadata; local use
    "2001:0:4136:e378:8000:63bf:80ff:fffe",                          # Teredo (of 127.0.0.1)
    # A public IPv4 address in IPv6 clothing is refused too (Python calls ::/8 reserved): no host
    # mimamori re-checks is reachable only that way, and refusing the whole form is the safe rule.
    "::ffff:8.8.8.8", "64:ff9b::808:808",
]
PUBLIC = ["93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001::200e"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address):
    assert AddressPolicy().refusal(address) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address):
    assert AddressPolicy().refusal(address) is None


def test_the_allow_list_admits_only_what_it_names_and_never_metadata():
    policy = AddressPolicy.allowing(["127.0.0.1/32", "169.254.0.0/16"])
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("127.0.0.2") is not None
    assert policy.refusal("10.0.0.1") is not None
    assert "metadata" in policy.refusal("169.254.169.254")


def _resolver(table: dict[str, list[str]], asked: list[str]):
    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        if host not in table:
            raise OSError(f"unknown host {host}")
        return table[host]

    return resolve


@pytest.mark.parametrize("url", ["http://127.0.0.1/", "http://[::1]:8080/x", "http://[::ffff:127.0.0.1]/",
                                 "https://169.254.169.254/latest/meta-data/", "http://10.0.0.1/",
                                 "http://[fe80::1]/", "http://0.0.0.0:22/"])
def test_literal_non_public_urls_are_refused_without_a_connection(url):
    result = Fetcher(resolver=_resolver({}, [])).fetch(url)
    assert result.failure is FetchFailure.REFUSED_ADDRESS, result
    assert result.address is None  # nothing was dialled (the unit tier would also fail a connect)


def test_a_name_that_resolves_to_a_private_address_is_refused():
    asked: list[str] = []
    fetcher = Fetcher(resolver=_resolver({"evil.example": ["10.0.0.7"]}, asked))
    result = fetcher.fetch("http://evil.example/page")
    assert result.failure is FetchFailure.REFUSED_ADDRESS and "10.0.0.7" in result.detail
    assert asked == ["evil.example"]


def test_one_private_address_among_public_ones_refuses_the_name():
    """A name with a public and a private record is refused whole: the connect might use either."""
    fetcher = Fetcher(resolver=_resolver({"mixed.example": ["93.184.215.14", "::ffff:192.168.0.1"]}, []))
    assert fetcher.fetch("https://mixed.example/").failure is FetchFailure.REFUSED_ADDRESS


def test_localhost_by_name_is_refused_even_when_it_resolves():
    fetcher = Fetcher(resolver=_resolver({"localhost": ["127.0.0.1", "::1"]}, []))
    assert fetcher.fetch("http://localhost:9000/").failure is FetchFailure.REFUSED_ADDRESS


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://x.example/", "ftp://x.example/f", "x.example/a",
                                 "http://user:pw@x.example/", "http:///nohost", "http://x.example:99999/"])
def test_other_schemes_credentials_and_broken_urls_are_bad_urls(url):
    assert Fetcher(resolver=_resolver({"x.example": ["93.184.215.14"]}, [])).fetch(url).failure is FetchFailure.BAD_URL


def test_dns_failure_is_an_outcome():
    result = Fetcher(resolver=_resolver({}, [])).fetch("https://gone.example/")
    assert result.failure is FetchFailure.DNS_FAILURE and "gone.example" in result.detail
    assert Fetcher(resolver=_resolver({"empty.example": []}, [])).fetch("http://empty.example/").failure \
        is FetchFailure.DNS_FAILURE


def test_a_proxy_must_be_http_and_literal_private_addresses_are_refused_before_it():
    with pytest.raises(ValueError, match="http://"):
        Fetcher(proxy="socks5://proxy.internal:1080")
    fetcher = Fetcher(proxy="http://proxy.internal:3128", limits=FetchLimits(timeout_s=1))
    assert fetcher.fetch("http://127.0.0.1/").failure is FetchFailure.REFUSED_ADDRESS
