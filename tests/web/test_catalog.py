"""Catalog pages: collections, a collection (search by text, colour, "more like this", thumbnails of image
records, swatches; versions with switch / rollback forms that need the CSRF token), a record's inferences
per version."""

from __future__ import annotations

import html
import io
import re

from fastapi.testclient import TestClient
from PIL import Image

from tests.web.conftest import api_headers, csrf_of, sign_in, wait_for

PIPELINE = """
name: looks
raw: image
stages:
  palette: {type: inferrer, inferrer: palette, params: {top_k: 3}}
"""
C = "/api/v1/collections/works"


def _png(rgb: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (24, 16), rgb).save(out, format="PNG")
    return out.getvalue()


def _text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def _works(client: TestClient, ui_settings: object) -> None:
    """Collection ``works`` bound to a palette pipeline: two images (inferred by the worker) and a record
    with ``tagger`` values at versions 1 and 2 stored from outside."""
    folder = ui_settings.data_dir / "img"  # type: ignore[attr-defined]
    folder.mkdir(parents=True, exist_ok=True)
    headers = api_headers()
    yaml_headers = {**headers, "Content-Type": "application/yaml"}
    assert client.post("/api/v1/pipelines", content=PIPELINE, headers=yaml_headers).status_code in (200, 201)
    client.post("/api/v1/collections", json={"name": "works", "pipelines": ["looks"]}, headers=headers)
    for name, rgb in {"red": (210, 20, 30), "blue": (20, 30, 210)}.items():
        (folder / f"{name}.png").write_bytes(_png(rgb))
        body = {"id": name, "title": f"{name} square", "source": f"img/{name}.png"}
        assert client.post(f"{C}/records", json=body, headers=headers).status_code == 201
    client.post(f"{C}/records", json={"id": "note", "title": "a note"}, headers=headers)
    for version in ("1", "2"):
        client.put(
            f"{C}/records/note/inferences/tagger/{version}", json={"label": f"v{version}"}, headers=headers
        )

    def inferred() -> bool:
        return all(
            "palette" in client.get(f"{C}/records/{r}", headers=headers).json()["inferred"]
            for r in ("red", "blue")
        )

    wait_for(inferred)


def test_collection_pages_search_and_show_thumbnails(app_client: TestClient, ui_settings: object) -> None:
    _works(app_client, ui_settings)
    sign_in(app_client)
    listing = app_client.get("/ui/collections")
    assert listing.status_code == 200 and 'href="/ui/collections/works"' in listing.text
    page = app_client.get("/ui/collections/works")
    assert page.status_code == 200
    assert "/ui/collections/works/records/red/thumbnail" in page.text
    assert "#d2141e" in page.text  # red's palette as a swatch
    by_text = _text(app_client.get("/ui/collections/works", params={"text": "blue"}).text)
    assert "blue square" in by_text and "red square" not in by_text
    by_colour = app_client.get("/ui/collections/works", params={"colour": "#c81020"}).text
    assert by_colour.index("red square") < by_colour.index("blue square")
    like = app_client.get("/ui/collections/works", params={"like": "red", "field": "palette.embedding"})
    assert like.status_code == 200 and "blue square" in like.text and "red square" not in like.text
    thumb = app_client.get("/ui/collections/works/records/red/thumbnail")
    assert thumb.status_code == 200 and thumb.content.startswith(b"\x89PNG")
    assert app_client.get("/ui/collections/works/records/note/thumbnail").status_code == 404
    bad = app_client.get("/ui/collections/works", params={"filter": '{"field": "nope", "value": 1}'})
    assert bad.status_code == 400 and 'role="alert"' in bad.text and "unknown field" in bad.text
    record = _text(app_client.get("/ui/collections/works/records/note").text)
    assert "tagger" in record and "v1" in record and "v2" in record and "current" in record


def test_switch_and_rollback_forms_need_the_csrf_token(app_client: TestClient, ui_settings: object) -> None:
    _works(app_client, ui_settings)
    sign_in(app_client)
    page = app_client.get("/ui/collections/works")
    token = csrf_of(page.text)

    def current() -> dict[str, str]:
        rows = app_client.get(f"{C}/versions", headers=api_headers()).json()["items"]
        return {r["producer"]: r["current"] for r in rows}

    stale = app_client.post("/ui/collections/works/switch", data={"producer": "tagger", "version": "2"})
    assert stale.status_code == 403 and current()["tagger"] == "1"
    done = app_client.post(
        "/ui/collections/works/switch", data={"csrf": token, "producer": "tagger", "version": "2"}
    )
    assert done.status_code == 303 and current()["tagger"] == "2"
    shown = _text(app_client.get("/ui/collections/works").text)
    assert "Roll back to 1" in shown and "succeeded" in shown
    refused = app_client.post(
        "/ui/collections/works/switch", data={"csrf": token, "producer": "tagger", "version": "2"}
    )
    assert refused.status_code == 409 and "already current" in refused.text
    assert app_client.post("/ui/collections/works/versions/tagger/rollback").status_code == 403
    back = app_client.post("/ui/collections/works/versions/tagger/rollback", data={"csrf": token})
    assert back.status_code == 303 and current()["tagger"] == "1"
    panel = app_client.get("/ui/collections/works/versions")
    assert panel.status_code == 200 and "tagger" in panel.text
