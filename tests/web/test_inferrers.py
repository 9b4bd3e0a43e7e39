"""The dashboard's inferrers page: every built-in inferrer described, and run on an uploaded file."""

from __future__ import annotations

import html
import io
import re

from fastapi.testclient import TestClient
from PIL import Image

from tests.web.conftest import api_headers, csrf_of, sign_in


def _png(rgb: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (20, 10), rgb).save(out, format="PNG")
    return out.getvalue()


def test_the_page_describes_every_inferrer_and_runs_one_on_a_file(app_client: TestClient) -> None:
    sign_in(app_client)
    listed = app_client.get("/ui/inferrers").text
    names = [i["name"] for i in app_client.get("/api/v1/inferrers", headers=api_headers()).json()]
    assert names and all(f'<h2 id="i-{n}">{n}</h2>' in listed for n in names)
    token = csrf_of(listed)

    ran = app_client.post(
        "/ui/inferrers/palette",
        data={"csrf": token, "params": '{"top_k": 2}'},
        files={"file": ("red.png", _png((200, 30, 90)), "image/png")},
    )
    assert ran.status_code == 200, ran.text
    shown = html.unescape(re.search(r'<pre class="json">(.*?)</pre>', ran.text, re.S).group(1))  # type: ignore[union-attr]
    assert "#c81e5a" in shown and "Output on red.png" in ran.text
    assert 'class="swatch" style="background: #c81e5a"' in ran.text
    assert 'value="{&#34;top_k&#34;: 2}"' in ran.text  # the parameters stay in the form

    not_json = app_client.post(
        "/ui/inferrers/palette",
        data={"csrf": token, "params": "{top_k"},
        files={"file": ("red.png", _png((200, 30, 90)), "image/png")},
    )
    assert not_json.status_code == 400 and 'role="alert"' in not_json.text
    unknown = app_client.post(
        "/ui/inferrers/palette",
        data={"csrf": token, "params": '{"colour": 1}'},
        files={"file": ("red.png", _png((200, 30, 90)), "image/png")},
    )
    assert unknown.status_code == 422 and "unknown parameter of palette" in html.unescape(unknown.text)


def test_a_read_key_sees_the_inferrers_without_forms(app_client: TestClient) -> None:
    made = app_client.post("/api/v1/keys", json={"name": "viewer", "scopes": ["read"]}, headers=api_headers())
    sign_in(app_client, made.json()["key"])
    page = app_client.get("/ui/inferrers").text
    assert '<h2 id="i-palette">palette</h2>' in page and "Run palette" not in page
