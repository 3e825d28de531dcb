"""The SSRF-safe fetcher against a real local HTTP(S) server (issue 19, acceptance 2, and its faults).

The server listens on 127.0.0.1, which the fetcher refuses unless a test allow-lists it: every
test here passes ``AddressPolicy.allowing(["127.0.0.1/32"])`` and nothing wider, so a redirect
or a name pointing anywhere else (127.0.0.2, 10/8, metadata) must still be refused.
"""

from __future__ import annotations

import time

import pytest

from mimamori.media.addresses import AddressPolicy
from mimamori.media.fetcher import USER_AGENT, Fetcher, FetchFailure, FetchLimits
from tests.support.http_server import LocalServer, Route, make_tls_files

LOCAL = AddressPolicy.allowing(["127.0.0.1/32"])


def resolver(table: dict[str, list[str]]):
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"no such host {host}")
        return table[host]

    return resolve


@pytest.fixture
def site():
    with LocalServer() as server:
        yield server


def fetcher(**limits) -> Fetcher:
    return Fetcher(FetchLimits(**{"timeout_s": 5.0, **limits}), policy=LOCAL,
                   resolver=resolver({"site.test": ["127.0.0.1"], "inner.test": ["10.0.0.9"],
                                      "rebind.test": ["127.0.0.1", "192.168.1.1"]}))


def test_a_page_is_fetched_by_name_from_the_checked_address_with_our_user_agent(site):
    site.routes["/page"] = Route(body=b"<html>hello</html>")
    result = fetcher().fetch(site.url("/page", host="site.test"))
    assert result.ok and result.status == 200 and result.body == b"<html>hello</html>"
    assert result.address == "127.0.0.1" and result.content_type.startswith("text/html")
    path, agent, host = site.requests[-1]
    assert (path, agent, host) == ("/page", USER_AGENT, f"site.test:{site.port}")


def test_without_the_allow_list_the_local_server_is_refused(site):
    site.routes["/page"] = Route(body=b"x")
    result = Fetcher(FetchLimits(timeout_s=5)).fetch(site.url("/page"))
    assert result.failure is FetchFailure.REFUSED_ADDRESS
    assert site.requests == []


@pytest.mark.parametrize("target", ["http://10.0.0.1/", "http://169.254.169.254/latest/meta-data/",
                                    "http://[::ffff:127.0.0.1]/", "http://127.0.0.2/", "http://[::1]/",
                                    "http://[fe80::1]/", "http://inner.test/", "http://rebind.test/",
                                    "file:///etc/passwd"])
def test_a_redirect_to_a_refused_address_is_refused(site, target):
    site.routes["/jump"] = Route(location=target)
    result = fetcher().fetch(site.url("/jump"))
    expected = FetchFailure.BAD_URL if target.startswith("file:") else FetchFailure.REFUSED_ADDRESS
    assert result.failure is expected, result
    assert result.redirects == [target] and len(site.requests) == 1


def test_redirects_are_followed_up_to_the_limit_and_loops_are_named(site):
    site.routes["/a"] = Route(location="/b")
    site.routes["/b"] = Route(status=301, location=site.url("/c"))
    site.routes["/c"] = Route(body=b"arrived")
    result = fetcher().fetch(site.url("/a"))
    assert result.ok and result.body == b"arrived" and result.final_url == site.url("/c")
    site.routes["/loop1"] = Route(location="/loop2")
    site.routes["/loop2"] = Route(location="/loop1")
    assert fetcher().fetch(site.url("/loop1")).failure is FetchFailure.REDIRECT_LOOP
    for i in range(8):
        site.routes[f"/chain{i}"] = Route(location=f"/chain{i + 1}")
    result = fetcher(max_redirects=5).fetch(site.url("/chain0"))
    assert result.failure is FetchFailure.TOO_MANY_REDIRECTS and len(result.redirects) == 5


def test_a_slow_host_times_out_at_the_total_limit(site):
    site.routes["/slow"] = Route(delay_s=10, body=b"late")
    site.routes["/drip"] = Route(drip_s=0.2, body=b"x" * 100)  # 20 s in all, each byte well within any read timeout
    for path in ("/slow", "/drip"):
        began = time.monotonic()
        result = fetcher(timeout_s=1.5).fetch(site.url(path))
        assert result.failure is FetchFailure.TIMEOUT, (path, result)
        assert time.monotonic() - began < 3.0, path


def test_an_endless_body_is_cut_at_the_size_limit(site):
    """A 5 GB (or endless) answer: the fetcher stops reading at max_bytes."""
    site.routes["/huge"] = Route(endless=True, content_type="image/jpeg")
    site.routes["/declared"] = Route(body=b"x" * 5000, headers={})
    began = time.monotonic()
    result = fetcher(max_bytes=2 * 1024 * 1024).fetch(site.url("/huge"))
    assert result.failure is FetchFailure.TOO_LARGE and result.body == b""
    assert time.monotonic() - began < 3.0
    assert fetcher(max_bytes=1000).fetch(site.url("/declared")).failure is FetchFailure.TOO_LARGE


def test_http_errors_keep_status_and_body_for_the_gone_rules(site):
    site.routes["/removed"] = Route(status=410, body=b"This content has been removed")
    result = fetcher().fetch(site.url("/removed"))
    assert result.failure is FetchFailure.HTTP_STATUS and result.status == 410
    assert b"removed" in result.body
    assert fetcher().fetch(site.url("/nothing-here")).status == 404


def test_a_closed_port_is_a_connect_error():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert fetcher().fetch(f"http://127.0.0.1:{port}/").failure is FetchFailure.CONNECT_ERROR


def test_tls_is_verified_for_the_name_not_the_address(tmp_path):
    cert, key, ca = make_tls_files(tmp_path / "good", "site.test")
    with LocalServer(tls=(cert, key)) as site:
        site.routes["/p"] = Route(body=b"secure")
        trusted = Fetcher(FetchLimits(timeout_s=5), policy=LOCAL, resolver=resolver({"site.test": ["127.0.0.1"],
                                                                                       "other.test": ["127.0.0.1"]}),
                          ca_file=str(ca))
        assert trusted.fetch(site.url("/p", host="site.test")).body == b"secure"
        # Same address, another name: the certificate does not name it.
        assert trusted.fetch(site.url("/p", host="other.test")).failure is FetchFailure.TLS_ERROR
        # The system's trust store does not know the test CA.
        assert fetcher().fetch(site.url("/p", host="site.test")).failure is FetchFailure.TLS_ERROR


def test_a_self_signed_certificate_is_a_tls_error(tmp_path):
    cert, key, _ca = make_tls_files(tmp_path, "site.test", self_signed=True)
    with LocalServer(tls=(cert, key)) as site:
        site.routes["/p"] = Route(body=b"x")
        assert fetcher().fetch(site.url("/p", host="site.test")).failure is FetchFailure.TLS_ERROR


def test_through_a_proxy_the_proxy_is_dialled_and_given_the_absolute_url(site):
    """The local server stands in for an HTTP proxy: it sees the absolute URL of the target."""
    site.routes["http://far.example/page"] = Route(body=b"via proxy")
    proxied = Fetcher(FetchLimits(timeout_s=5), proxy=site.url(""))
    result = proxied.fetch("http://far.example/page")
    assert result.ok and result.body == b"via proxy" and result.address == f"proxy 127.0.0.1:{site.port}"
    assert site.requests[-1][0] == "http://far.example/page"


def test_a_tls_host_that_drips_its_headers_is_cut_at_the_total_limit(tmp_path):
    """HTTPS wraps the dialled socket (detaching it): the deadline must still end the fetch."""
    import socket
    import ssl
    import threading

    cert, key, ca = make_tls_files(tmp_path, "site.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:  # a status line, then one header byte every 0.2 s, for ever
        raw, _ = listener.accept()
        with context.wrap_socket(raw, server_side=True) as conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not stop.is_set():
                try:
                    conn.sendall(b"a")
                except OSError:
                    return
                time.sleep(0.2)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        client = Fetcher(FetchLimits(timeout_s=1.5), policy=LOCAL, resolver=resolver({"site.test": ["127.0.0.1"]}),
                         ca_file=str(ca))
        began = time.monotonic()
        result = client.fetch(f"https://site.test:{listener.getsockname()[1]}/")
        assert result.failure is FetchFailure.TIMEOUT and time.monotonic() - began < 4.0, result
    finally:
        stop.set()
        listener.close()
        thread.join(5)
