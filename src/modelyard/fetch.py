"""Fetching user-named URLs safely: http(s) only, bounded in size and time, and never to loopback,
private, link-local or otherwise internal addresses unless the settings allow it (SSRF guard).

Every host (the first and each redirect's) is resolved and checked before it is contacted; redirects
are followed by hand (at most ``MAX_REDIRECTS``) so each hop is checked. A remaining gap: the HTTP
client resolves the name again to connect, so a DNS server that answers differently within that
moment (rebinding) is not caught.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from modelyard.context import AppContext
from modelyard.errors import FetchFailed, ModelyardError, PayloadTooLarge, UrlRefused

MAX_REDIRECTS = 5
Resolver = Callable[[str, int], list[str]]
CLIENT = "fetch.http_client"
_lock = threading.Lock()


def http_client(ctx: AppContext) -> httpx.Client:
    """This process's client for user-named URLs (pooled connections, no proxies from the environment)."""
    found: httpx.Client | None = ctx.extras.get(CLIENT)
    if found is None:
        with _lock:
            found = ctx.extras.get(CLIENT)
            if found is None:
                found = ctx.extras[CLIENT] = httpx.Client(follow_redirects=False, trust_env=False)
    return found


def close_client(ctx: AppContext) -> None:
    """Close this process's URL client, if one was opened."""
    found = ctx.extras.pop(CLIENT, None)
    if found is not None:
        found.close()


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


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchFailed(f"cannot resolve host {host!r}: {exc.strerror}", field="url") from None
    return sorted({str(info[4][0]) for info in infos})


def is_public(address: str) -> bool:
    """Whether an IP address is a global unicast address (not loopback, private, link-local, reserved...)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, *, allow_private: bool, resolver: Resolver = resolve) -> None:
    """Raise ``UrlRefused`` unless ``url`` is http(s) with a host that resolves only to public addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UrlRefused(f"only http and https URLs with a host are fetched, not {url[:200]!r}", field="url")
    if allow_private:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for address in resolver(parts.hostname, port):
        if not is_public(address):
            raise UrlRefused(
                f"{parts.hostname} resolves to {address}, a non-public address; private URLs are not fetched",
                field="url",
            )


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
    """GET ``url`` (following checked redirects) within ``timeout`` seconds overall and ``max_bytes``.

    Raises ``UrlRefused``, ``PayloadTooLarge``, or ``FetchFailed`` (``extra['upstream_status']`` holds
    the HTTP status when the server answered with an error).
    """
    deadline = time.monotonic() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        check_url(url, allow_private=allow_private, resolver=resolver)
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchFailed(f"fetching {url} took over {timeout:g} s", field="url")
        try:
            with client.stream("GET", url, timeout=left, follow_redirects=False) as resp:
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
