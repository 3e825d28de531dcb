"""A fetcher of untrusted URLs that cannot be turned against the network it runs in (SSRF).

Re-checks fetch URLs that reached mimamori from scrapers and staff: anyone who can put a URL
there could aim it at the metadata service or an internal admin page. So:

- only ``http`` and ``https``, ``GET`` only, no cookies, no compression (no decompression bombs);
- the name is resolved here (``resolver``, injectable for tests) and every address checked by
  :class:`~mimamori.media.addresses.AddressPolicy`; the connection goes to the checked address
  itself, so there is no second resolution and no DNS-rebinding window. TLS still sends SNI and
  verifies the certificate for the *name*;
- every redirect is checked the same way, up to ``max_redirects``; a URL seen twice is a loop;
- the body is streamed and cut at ``max_bytes``; the whole fetch (connect, headers, body, all
  redirects) ends at ``timeout_s`` wall time: a watchdog shuts the socket at the deadline, so a
  server that drips a byte a second cannot hold a worker. Name resolution is the system
  resolver's and keeps its own timeouts (resolv.conf): the watchdog cannot cut ``getaddrinfo``;
- with ``proxy`` set, the proxy connects and resolves names: it must then enforce the egress
  policy itself (public addresses only). Literal IP addresses in URLs are still checked here.

Every failure is a :class:`FetchResult` with a :class:`FetchFailure` reason, never an exception,
so one bad host never stops a batch.

Why the standard library (``http.client``, ``ssl``, ``socket``) and not requests/urllib3: the
check-then-connect-to-that-address rule needs the socket's dialling in hand (connect to an IP,
verify TLS for a name). ``http.client`` dials through one hook, ``_create_connection``
(:func:`_dialer`), and then does SNI and the hostname check for ``host`` itself (or for the
CONNECT tunnel's host behind a proxy); urllib3 would need its pool and connection classes
subclassed for the same, and redirects, which must be re-checked hop by hop, are ours anyway.
"""

from __future__ import annotations

import contextlib
import enum
import heapq
import http.client
import ipaddress
import itertools
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from mimamori.media.addresses import AddressPolicy

USER_AGENT = "mimamori-recheck/1.0 (takedown verification; +https://github.com/mimamori)"
REDIRECTS = (301, 302, 303, 307, 308)
CHUNK = 64 * 1024

# host, port -> addresses (strings); socket.getaddrinfo by default.
Resolver = Callable[[str, int], Sequence[str]]


class FetchFailure(enum.StrEnum):
    REFUSED_ADDRESS = "refused_address"
    BAD_URL = "bad_url"
    DNS_FAILURE = "dns_failure"
    CONNECT_ERROR = "connect_error"
    TLS_ERROR = "tls_error"
    TIMEOUT = "timeout"
    TOO_LARGE = "too_large"
    REDIRECT_LOOP = "redirect_loop"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    HTTP_STATUS = "http_status"
    PROTOCOL_ERROR = "protocol_error"


@dataclass
class FetchResult:
    url: str
    final_url: str
    failure: FetchFailure | None = None
    detail: str = ""
    status: int | None = None
    content_type: str = ""
    body: bytes = b""
    redirects: list[str] = field(default_factory=list)
    address: str | None = None
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 20 * 1024 * 1024
    timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    max_redirects: int = 5


class _Failed(Exception):
    def __init__(self, failure: FetchFailure, detail: str, status: int | None = None):
        super().__init__(detail)
        self.failure, self.detail, self.status = failure, detail, status


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (IPv4 and IPv6)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


class _Watchdog:
    """One thread that shuts the sockets of fetches past their deadline (unblocking their reads).

    It holds a duplicate of each socket: ``HTTPSConnection`` wraps the one it dialled in TLS, which
    detaches that object (its fd becomes -1), while a shutdown through the duplicate still ends
    the connection behind both, so a TLS peer that drips its answer is cut at the deadline too.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._sockets: dict[int, socket.socket] = {}
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._tokens = itertools.count()

    def watch(self, sock: socket.socket, deadline: float) -> int:
        with self._wake:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fetch-watchdog", daemon=True)
                self._thread.start()
            token = next(self._tokens)
            self._sockets[token] = sock.dup()
            heapq.heappush(self._heap, (deadline, token))
            self._wake.notify()
            return token

    def release(self, token: int) -> None:
        with self._wake:
            duplicate = self._sockets.pop(token, None)
        if duplicate is not None:
            duplicate.close()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._heap:
                    self._wake.wait()
                deadline, token = self._heap[0]
                if token not in self._sockets:  # released: the fetch ended in time
                    heapq.heappop(self._heap)
                    continue
                now = time.monotonic()
                if deadline > now:
                    self._wake.wait(deadline - now)
                    continue
                heapq.heappop(self._heap)
                duplicate = self._sockets.pop(token)
            with contextlib.suppress(OSError):
                duplicate.shutdown(socket.SHUT_RDWR)
            duplicate.close()


_WATCHDOG = _Watchdog()


def _dialer(address: str | None, watch: Callable[[socket.socket], None]) -> Callable[..., socket.socket]:
    """``http.client``'s ``_create_connection`` hook: dial the checked ``address`` (None: the one
    asked for, i.e. the proxy) and hand the socket to the watchdog."""

    def dial(asked: tuple[str, int], timeout: float, source_address: object = None) -> socket.socket:
        sock = socket.create_connection((address or asked[0], asked[1]), timeout)
        watch(sock)
        return sock

    return dial


class Fetcher:
    """Fetches one URL at a time per call; safe to share between threads."""

    def __init__(self, limits: FetchLimits = FetchLimits(), *, policy: AddressPolicy = AddressPolicy(),
                 resolver: Resolver = system_resolver, user_agent: str = USER_AGENT, proxy: str | None = None,
                 ca_file: str | None = None):
        self.limits, self.policy, self.resolver, self.user_agent = limits, policy, resolver, user_agent
        self.proxy = urlsplit(proxy) if proxy else None
        if self.proxy is not None and (self.proxy.scheme != "http" or not self.proxy.hostname):
            raise ValueError(f"proxy must be an http:// URL, not {proxy!r}")
        self.context = ssl.create_default_context(cafile=ca_file)

    def fetch(self, url: str) -> FetchResult:
        """GET ``url`` following checked redirects; the result says what happened, it never raises."""
        began = time.monotonic()
        deadline = began + self.limits.timeout_s
        result = FetchResult(url=url, final_url=url)
        seen = {url}
        current = url
        try:
            while True:
                status, location = self._one(current, deadline, result)
                if location is None:
                    return result
                target = urljoin(current, location)
                if target in seen:
                    raise _Failed(FetchFailure.REDIRECT_LOOP, f"{current} redirects back to {target}", status)
                if len(result.redirects) == self.limits.max_redirects:
                    raise _Failed(FetchFailure.TOO_MANY_REDIRECTS, f"more than {self.limits.max_redirects} redirects",
                                  status)
                seen.add(target)
                result.redirects.append(target)
                current = result.final_url = target
        except _Failed as failed:
            result.failure, result.detail = failed.failure, failed.detail
            result.status = failed.status if failed.status is not None else result.status
            if failed.failure is not FetchFailure.HTTP_STATUS:
                result.body = b""
            return result
        finally:
            result.elapsed_s = time.monotonic() - began

    # -- one request ------------------------------------------------------------------------
    def _one(self, url: str, deadline: float, result: FetchResult) -> tuple[int, str | None]:
        """One request; returns (status, redirect location or None), fills ``result`` for a final answer."""
        scheme, host, port, path = _parse(url)
        tokens: list[int] = []

        def watched(sock: socket.socket) -> None:
            tokens.append(_WATCHDOG.watch(sock, deadline))

        connection: http.client.HTTPConnection | None = None
        try:  # the connection too: http.client refuses some names (controls, spaces) with InvalidURL
            connection = self._connection(scheme, host, port, deadline, result, watched)
            target = url if (self.proxy is not None and scheme == "http") else path
            connection.request("GET", target, headers={"User-Agent": self.user_agent, "Accept": "*/*",
                                                       "Accept-Encoding": "identity", "Connection": "close"})
            response = connection.getresponse()
            if response.status in REDIRECTS and response.getheader("Location"):
                return response.status, response.getheader("Location")
            result.status = response.status
            result.content_type = response.getheader("Content-Type", "")
            result.body = self._body(response, deadline)
            if response.status >= 400:
                raise _Failed(FetchFailure.HTTP_STATUS, f"HTTP {response.status}", response.status)
            return response.status, None
        except _Failed:
            raise
        except ssl.SSLError as error:
            raise self._cut_or(deadline, FetchFailure.TLS_ERROR, str(error)) from None
        except TimeoutError:
            raise _Failed(FetchFailure.TIMEOUT, f"no answer within {self.limits.timeout_s:.0f} s") from None
        except (http.client.HTTPException, ValueError) as error:
            raise self._cut_or(deadline, FetchFailure.PROTOCOL_ERROR, f"{type(error).__name__}: {error}") from None
        except OSError as error:
            raise self._cut_or(deadline, FetchFailure.CONNECT_ERROR, f"{type(error).__name__}: {error}") from None
        finally:
            if connection is not None:
                connection.close()
            for token in tokens:
                _WATCHDOG.release(token)

    def _cut_or(self, deadline: float, failure: FetchFailure, detail: str) -> _Failed:
        """The error's failure, or a timeout when it came past the deadline (the watchdog shut the socket)."""
        if time.monotonic() >= deadline:
            return _Failed(FetchFailure.TIMEOUT, f"cut at the {self.limits.timeout_s:.0f} s limit")
        return _Failed(failure, detail)

    def _connection(self, scheme: str, host: str, port: int, deadline: float, result: FetchResult,
                    watch: Callable[[socket.socket], None]) -> http.client.HTTPConnection:
        """A connection pinned to the checked address (or to the proxy), TLS verified for ``host``."""
        timeout = max(0.01, min(self.limits.connect_timeout_s, deadline - time.monotonic()))
        if self.proxy is not None:
            self._check_literal(host)
            dial_host, dial_port, address = self.proxy.hostname or "", self.proxy.port or 80, None
            result.address = f"proxy {dial_host}:{dial_port}"
        else:
            address = self._checked_address(host, port)
            dial_host, dial_port = host, port
            result.address = address
        connection: http.client.HTTPConnection
        if scheme == "https":
            connection = http.client.HTTPSConnection(dial_host, dial_port, timeout=timeout, context=self.context)
            if self.proxy is not None:
                connection.set_tunnel(host, port)  # CONNECT; SNI and the certificate check use host
        else:
            connection = http.client.HTTPConnection(dial_host, dial_port, timeout=timeout)
        connection._create_connection = _dialer(address, watch)  # type: ignore[attr-defined]
        return connection

    def _check_literal(self, host: str) -> None:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return
        if (why := self.policy.refusal(ip)) is not None:
            raise _Failed(FetchFailure.REFUSED_ADDRESS, why)

    def _checked_address(self, host: str, port: int) -> str:
        """The first address of ``host`` if every one it resolves to is allowed (one bad one refuses all)."""
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                addresses = list(self.resolver(host, port))
            except (OSError, UnicodeError) as error:
                raise _Failed(FetchFailure.DNS_FAILURE, f"{host}: {error}") from None
        if not addresses:
            raise _Failed(FetchFailure.DNS_FAILURE, f"{host} has no address")
        for address in addresses:
            if (why := self.policy.refusal(address)) is not None:
                raise _Failed(FetchFailure.REFUSED_ADDRESS, f"{host} resolves to {why}")
        return addresses[0]

    def _body(self, response: http.client.HTTPResponse, deadline: float) -> bytes:
        length = response.getheader("Content-Length")
        if length and length.isdigit() and int(length) > self.limits.max_bytes:
            raise _Failed(FetchFailure.TOO_LARGE, f"Content-Length {length} over {self.limits.max_bytes} bytes",
                          response.status)
        parts, size = [], 0
        while True:
            chunk = response.read1(CHUNK)
            if not chunk:
                if time.monotonic() >= deadline:  # the watchdog shut the socket: not the real end
                    raise _Failed(FetchFailure.TIMEOUT, f"body not complete within {self.limits.timeout_s:.0f} s",
                                  response.status)
                if length and length.isdigit() and size < int(length):
                    raise _Failed(FetchFailure.PROTOCOL_ERROR, f"body ended after {size} of {length} bytes",
                                  response.status)
                return b"".join(parts)
            size += len(chunk)
            if size > self.limits.max_bytes:
                raise _Failed(FetchFailure.TOO_LARGE, f"body over {self.limits.max_bytes} bytes, cut",
                              response.status)
            if time.monotonic() >= deadline:
                raise _Failed(FetchFailure.TIMEOUT, f"body not complete within {self.limits.timeout_s:.0f} s",
                              response.status)
            parts.append(chunk)


def _parse(url: str) -> tuple[str, str, int, str]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise _Failed(FetchFailure.BAD_URL, f"{url!r}: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise _Failed(FetchFailure.BAD_URL, f"only http and https URLs are fetched, not {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise _Failed(FetchFailure.BAD_URL, f"{url!r} has no host")
    if parts.username or parts.password:
        raise _Failed(FetchFailure.BAD_URL, "URLs with credentials are not fetched")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path
