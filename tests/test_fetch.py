"""The SSRF-guarded URL fetcher: schemes, private addresses (also behind redirects), size and time caps."""

from __future__ import annotations

import httpx
import pytest

from modelyard.errors import FetchFailed, PayloadTooLarge, UrlRefused
from modelyard.fetch import check_url, fetch_url, is_permanent, is_public
from tests.imageserver import ImageServer


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("100.64.0.1", False),
        ("224.0.0.1", False),
    ],
)
def test_only_global_unicast_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(address) is public


@pytest.mark.parametrize("url", ["ftp://example.org/a", "file:///etc/passwd", "http:///nohost", "gopher://x"])
def test_other_schemes_and_hostless_urls_are_refused(url: str) -> None:
    with pytest.raises(UrlRefused):
        check_url(url, allow_private=True)


def test_a_name_resolving_to_any_private_address_is_refused() -> None:
    def resolver(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.0.0.7"]

    with pytest.raises(UrlRefused, match=r"10\.0\.0\.7"):
        check_url("https://example.org/x", allow_private=False, resolver=resolver)
    check_url("https://example.org/x", allow_private=True, resolver=resolver)


def test_redirect_to_a_private_address_is_refused() -> None:
    with ImageServer() as server, httpx.Client() as client:

        def resolver(
            host: str, port: int
        ) -> list[str]:  # the test server passes as public; the target does not
            return ["93.184.216.34"] if host == "127.0.0.1" else ["169.254.169.254"]

        with pytest.raises(UrlRefused, match=r"169\.254\.169\.254"):
            fetch_url(
                client,
                f"{server.url}/redirect-private",
                timeout=5,
                max_bytes=10**6,
                allow_private=False,
                resolver=resolver,
            )
        assert server.hits["/redirect-private"] == 1


def test_status_size_and_time_limits() -> None:
    with ImageServer() as server, httpx.Client() as client:
        got = fetch_url(client, f"{server.url}/img/1.png", timeout=5, max_bytes=10**6, allow_private=True)
        assert got.data.startswith(b"\x89PNG") and got.content_type == "image/png"
        with pytest.raises(FetchFailed) as missing:
            fetch_url(client, f"{server.url}/nope", timeout=5, max_bytes=10**6, allow_private=True)
        assert missing.value.extra["upstream_status"] == 404 and is_permanent(missing.value)
        with pytest.raises(PayloadTooLarge):
            fetch_url(client, f"{server.url}/img/1.png", timeout=5, max_bytes=100, allow_private=True)
        server.delay = 0.5
        with pytest.raises(FetchFailed, match="took over") as slow:
            fetch_url(client, f"{server.url}/img/1.png", timeout=0.1, max_bytes=10**6, allow_private=True)
        assert not is_permanent(slow.value)
