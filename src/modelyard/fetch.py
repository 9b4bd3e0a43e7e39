"""Fetching user-named URLs safely: http(s) only, bounded in size and time, and never to loopback,
private, link-local or otherwise internal addresses unless the settings allow it (SSRF guard).

Every host (the first and each redirect's) is resolved once and checked before it is contacted;
redirects are followed by hand (at most ``MAX_REDIRECTS``) so each hop is checked. The connection then
goes to an address that was checked: the client's network backend (``PinnedBackend``) connects to the
addresses the guard resolved for that host and port and never resolves the name itself, so a DNS server
that answers differently the second time (rebinding) cannot send it elsewhere. The URL keeps its name,
so the Host header, TLS SNI and the certificate check are for the name, not the address.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from urllib.parse import urljoin

import httpcore
import httpx

from modelyard.context import AppContext
from modelyard.errors import FetchFailed, ModelyardError, PayloadTooLarge, UrlRefused

MAX_REDIRECTS = 5
DEFAULT_PORTS = {"http": 80, "https": 443}
Resolver = Callable[[str, int], list[str]]
# (host, port) -> the addresses checked for it, for connections made in this context (thread)
_pins: ContextVar[dict[tuple[str, int], list[str]] | None] = ContextVar("fetch_pins", default=None)


class PinnedBackend(httpcore.SyncBackend):
    """A network backend that connects only to the addresses pinned for the host in this context (the
    ones the guard checked), and refuses a host with none: it never resolves a name."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        """A connection to the first pinned address of ``host:port`` that answers."""
        addresses = (_pins.get() or {}).get((host.lower(), port))
        if not addresses:
            raise httpcore.ConnectError(f"{host}:{port} was not checked by the URL guard; not connecting")
        failed: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                failed = exc
        assert failed is not None
        raise failed


class PinnedTransport(httpx.HTTPTransport):
    """httpx's transport whose connections go through ``PinnedBackend``."""

    def __init__(self, verify: ssl.SSLContext | bool = True) -> None:
        super().__init__(verify=verify, trust_env=False)
        # httpx offers no way to hand its pool a network backend: replace the pool it built by the same
        # pool with ours (the fetch tests fail if a connection ever bypasses it)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=PinnedBackend(),
        )


def new_client(*, verify: ssl.SSLContext | bool = True) -> httpx.Client:
    """A client for ``fetch_url``: pooled, no proxies from the environment, and connecting only to the
    addresses ``fetch_url`` checked (it refuses any other use)."""
    return httpx.Client(transport=PinnedTransport(verify), follow_redirects=False, trust_env=False)


def http_client(ctx: AppContext) -> httpx.Client:
    """This process's client for user-named URLs (see ``new_client``)."""
    return ctx.http.get()


def fetch(ctx: AppContext, url: str) -> Fetched:
    """GET a user-named URL under the settings' timeout, size cap and private-address rule."""
    s = ctx.settings
    return fetch_url(
        http_client(ctx),
        url,
        timeout=s.fetch_timeout_seconds,
        max_bytes=s.fetch_max_bytes,
        allow_private=s.allow_private_urls,
    )


@dataclass(frozen=True, slots=True)
class Fetched:
    """The body of a fetched URL and what the server said it is."""

    data: bytes
    content_type: str | None
    url: str


@dataclass(frozen=True, slots=True)
class Checked:
    """Where a checked URL may be fetched from: its host (as the client names it), port and addresses."""

    host: str
    port: int
    addresses: list[str]


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the resolver's order of preference."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchFailed(f"cannot resolve host {host!r}: {exc.strerror}", field="url") from None
    except UnicodeError:  # a label over 63 characters, a name over 253...
        raise UrlRefused(f"host {host[:100]!r} is not a valid DNS name", field="url") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public(address: str) -> bool:
    """Whether an IP address is a global unicast address (not loopback, private, link-local, reserved...)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _addresses(host: str, port: int, resolver: Resolver) -> list[str]:
    """An IP literal is its own address; a name is resolved (once)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        return resolver(host, port)


def check_url(url: str, *, allow_private: bool, resolver: Resolver = resolve) -> Checked:
    """Where ``url`` may be fetched from; ``UrlRefused`` unless it is http(s) with a host that resolves
    only to public addresses (any address, when ``allow_private``)."""
    try:
        target = httpx.URL(url)
        host = target.raw_host.decode("ascii").lower()  # as the client will name it (IDNA, no brackets)
    except (httpx.InvalidURL, UnicodeError, ValueError):
        host, target = "", None
    if target is None or target.scheme not in DEFAULT_PORTS or not host:
        raise UrlRefused(f"only http and https URLs with a host are fetched, not {url[:200]!r}", field="url")
    port = target.port or DEFAULT_PORTS[target.scheme]
    addresses = _addresses(host, port, resolver)
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise UrlRefused(
                    f"{target.host} resolves to {address}, a non-public address; private URLs are not "
                    "fetched unless MODELYARD_ALLOW_PRIVATE_URLS is true",
                    field="url",
                )
    return Checked(host, port, addresses)


@contextmanager
def pinned(checked: Checked) -> Iterator[None]:
    """Connections made in this block to ``checked.host`` go to ``checked.addresses`` only."""
    pins = dict(_pins.get() or {})
    pins[(checked.host, checked.port)] = checked.addresses
    token = _pins.set(pins)
    try:
        yield
    finally:
        _pins.reset(token)


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying a fetch that raised ``exc`` cannot help (a 4xx, a refused URL, too large)."""
    if isinstance(exc, FetchFailed):
        status = exc.extra.get("upstream_status")
        return isinstance(status, int) and 400 <= status < 500 and status not in (408, 425, 429)
    return isinstance(exc, ModelyardError) and 400 <= exc.status < 500


def fetch_url(
    client: httpx.Client,
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    allow_private: bool,
    resolver: Resolver = resolve,
) -> Fetched:
    """GET ``url`` (following checked redirects) within ``timeout`` seconds overall and ``max_bytes``,
    connecting only to addresses that were checked (``client`` comes from ``new_client``).

    Raises ``UrlRefused``, ``PayloadTooLarge``, or ``FetchFailed`` (``extra['upstream_status']`` holds
    the HTTP status when the server answered with an error).
    """
    deadline = time.monotonic() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        checked = check_url(url, allow_private=allow_private, resolver=resolver)
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchFailed(f"fetching {url} took over {timeout:g} s", field="url")
        try:
            with pinned(checked), client.stream("GET", url, timeout=left, follow_redirects=False) as resp:
                if resp.is_redirect and "location" in resp.headers:
                    url = urljoin(url, resp.headers["location"])
                    continue
                if resp.status_code >= 400:
                    raise FetchFailed(
                        f"{url} answered HTTP {resp.status_code}",
                        field="url",
                        extra={"upstream_status": resp.status_code},
                    )
                declared = resp.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                    raise PayloadTooLarge(f"{url} is {declared} bytes, over the {max_bytes}-byte limit")
                chunks, size = [], 0
                for chunk in resp.iter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise PayloadTooLarge(f"{url} is over the {max_bytes}-byte limit")
                    if time.monotonic() > deadline:
                        raise FetchFailed(f"fetching {url} took over {timeout:g} s", field="url")
                    chunks.append(chunk)
                return Fetched(b"".join(chunks), resp.headers.get("content-type"), url)
        except httpx.TimeoutException:
            raise FetchFailed(f"fetching {url} took over {timeout:g} s", field="url") from None
        except httpx.HTTPError as exc:
            raise FetchFailed(f"fetching {url} failed: {exc}", field="url") from None
    raise FetchFailed(f"{url}: more than {MAX_REDIRECTS} redirects", field="url")
