"""Built-in inferrers called synchronously over HTTP."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from modelyard.app import create_app
from modelyard.settings import Settings
from tests.conftest import ADMIN_KEY, push_model, sqlite_only
from tests.hostile import non_utf8_multipart
from tests.imageserver import ImageServer
from tests.inferrers.images import encode, halves, noise, solid

pytestmark = sqlite_only  # inferrers read images, not the database


def test_catalogue_lists_every_inferrer_with_what_it_accepts_and_produces(client: Any) -> None:
    names = {i["name"]: (i["accepts"], i["produces"]) for i in client.get("/api/v1/inferrers").json()}
    assert names == {
        "palette": (["image"], "json"),
        "aspect_ratio": (["image"], "json"),
        "phash": (["image"], "json"),
        "features": (["image"], "array"),
        "array_stats": (["array"], "json"),
        "table_stats": (["table"], "json"),
    }


def test_upload_runs_an_inferrer(client: Any) -> None:
    png = encode(halves((255, 0, 0), (0, 0, 255)))
    resp = client.post(
        "/api/v1/inferrers/palette", params={"top_k": 2}, files={"file": ("a.png", png, "image/png")}
    )
    assert resp.status_code == 200, resp.text
    assert sorted(t["hex"] for t in resp.json()["result"]["top"]) == ["#0000ff", "#ff0000"]
    raw = client.post("/api/v1/inferrers/aspect_ratio", content=png, headers={"Content-Type": "image/png"})
    assert raw.json()["result"]["aspect_ratio"] == 2.0


def test_url_is_fetched_when_private_addresses_are_allowed(
    private_client: Any, image_server: ImageServer
) -> None:
    resp = private_client.get("/api/v1/inferrers/phash", params={"url": f"{image_server.url}/img/3.png"})
    assert resp.status_code == 200 and len(resp.json()["result"]["phash"]) == 16
    missing = private_client.get("/api/v1/inferrers/phash", params={"url": f"{image_server.url}/nothing"})
    assert missing.status_code == 502 and missing.json()["code"] == "fetch-failed"


def test_private_url_is_refused_by_default(client: Any, image_server: ImageServer) -> None:
    resp = client.get("/api/v1/inferrers/phash", params={"url": f"{image_server.url}/img/3.png"})
    assert resp.status_code == 400 and resp.json()["code"] == "url-refused"
    assert image_server.hits == {}
    assert (
        client.get("/api/v1/inferrers/phash", params={"url": "file:///etc/passwd"}).json()["code"]
        == "url-refused"
    )


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/api/v1/inferrers/sharpness", {}, 404, "not-found"),
        ("/api/v1/inferrers/palette", {"top_k": 0}, 422, "validation-failed"),
        ("/api/v1/inferrers/features", {}, 422, "validation-failed"),
    ],
)
def test_unknown_inferrer_and_bad_parameters(
    client: Any, path: str, params: dict[str, Any], status: int, code: str
) -> None:
    resp = client.post(path, params=params, content=encode(noise(1)), headers={"Content-Type": "image/png"})
    assert (resp.status_code, resp.json()["code"]) == (status, code)


def test_undecodable_upload_is_a_422(client: Any) -> None:
    resp = client.post("/api/v1/inferrers/phash", content=b"nope", headers={"Content-Type": "image/png"})
    assert resp.status_code == 422 and resp.json()["code"] == "undecodable-input"


def test_array_stats_reads_an_uploaded_npy_array(client: Any) -> None:
    buf = io.BytesIO()
    np.save(buf, np.array([[1, 2], [3, 6]], dtype=np.int16))
    resp = client.post("/api/v1/inferrers/array_stats", files={"file": ("a.npy", buf.getvalue())})
    assert resp.status_code == 200, resp.text
    assert resp.json()["result"] == {
        "shape": [2, 2],
        "dtype": "int16",
        "size": 4,
        "min": 1.0,
        "max": 6.0,
        "mean": 3.0,
    }


def test_table_stats_reads_an_uploaded_csv_table(client: Any) -> None:
    csv = b"id,score,label\n1,0.5,cat\n2,,dog\n3,1.5,\n"
    resp = client.post("/api/v1/inferrers/table_stats", files={"file": ("t.csv", csv)})
    assert resp.status_code == 200, resp.text
    assert resp.json()["result"] == {
        "rows": 3,
        "columns": [
            {"name": "id", "type": "int64", "nulls": 0},
            {"name": "score", "type": "double", "nulls": 1},
            {"name": "label", "type": "string", "nulls": 0},
        ],
    }
    refused = client.post("/api/v1/inferrers/table_stats", files={"file": ("t.csv", b"a,b\n1,2,3\n")})
    assert refused.status_code == 422 and refused.json()["code"] == "undecodable-input"
    assert "as a table" in refused.json()["detail"]


def test_an_upload_that_is_not_what_the_inferrer_accepts_is_a_422(client: Any) -> None:
    resp = client.post(
        "/api/v1/inferrers/array_stats", content=encode(noise(1)), headers={"Content-Type": "image/png"}
    )
    assert resp.status_code == 422 and resp.json()["code"] == "undecodable-input"
    assert "not a .npy file" in resp.json()["detail"]


def test_features_from_a_registered_model(client: Any, model_dir: Path) -> None:
    push_model(client, model_dir / "image.onnx", "pool")
    resp = client.post(
        "/api/v1/inferrers/features",
        params={"model": "pool"},
        content=encode(noise(2)),
        headers={"Content-Type": "image/png"},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == {"name": "pool", "version": 1}
    vec = np.asarray(body["result"]["data"], dtype=np.float32)
    assert body["result"]["dtype"] == "float32" and vec.shape == (3,)
    assert np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-5)
    wrong = client.post(
        "/api/v1/inferrers/features",
        params={"model": "pool", "resize": 32},
        content=encode(noise(2)),
        headers={"Content-Type": "image/png"},
    )
    assert wrong.status_code == 400 and wrong.json()["code"] == "invalid-input"


def test_upload_with_a_multipart_field_name_that_is_not_utf8_is_400(client: Any) -> None:
    body, headers = non_utf8_multipart("x.png", encode(solid((1, 2, 3))))
    resp = client.post("/api/v1/inferrers/palette", content=body, headers=headers)
    assert resp.status_code == 400, resp.text
    assert "not UTF-8" in resp.json()["detail"]


def _solid_png(mode: str, size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("variable", "value", "image", "refusal"),
    [  # 5,000 pixels; an RGBA image of 600 x 600 takes 5 MiB to decode (and make RGB)
        ("MODELYARD_MAX_IMAGE_PIXELS", "4999", ("RGB", (1000, 5)), "over the 4999-pixel limit"),
        ("MODELYARD_MAX_IMAGE_DECODED_BYTES", str(1 << 20), ("RGBA", (600, 600)), "over the 1 MiB limit"),
    ],
)
def test_image_limits_are_settings(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    image: tuple[str, tuple[int, int]],
    refusal: str,
) -> None:
    monkeypatch.setenv(variable, value)
    field = variable.removeprefix("MODELYARD_").lower()
    configured = Settings(**settings.model_dump(exclude={field}))
    assert getattr(configured, field) == int(value)
    data = _solid_png(*image)
    answers = {}
    for app_settings in (configured, settings):
        with TestClient(create_app(app_settings), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
            answers[app_settings is settings] = client.post(
                "/api/v1/inferrers/aspect_ratio", content=data, headers={"Content-Type": "image/png"}
            )
    refused, default = answers[False], answers[True]
    assert (refused.status_code, refused.json()["code"]) == (422, "undecodable-input")
    assert refusal in refused.json()["detail"]
    assert default.status_code == 200, default.text
