"""Streaming uploads: hostile multipart bodies are refused with a 400, and nothing is left on disk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from modelyard.errors import BadRequest
from modelyard.uploads import receive_upload
from tests.hostile import BOUNDARY, non_utf8_multipart

MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


async def _stream(body: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(body), 7):  # small pieces: the parser sees every split
        yield body[i : i + 7]


@pytest.mark.parametrize(
    "body",
    [
        b"garbage",
        b"--wrong-boundary\r\nContent-Disposition: form-data; name=file\r\n\r\nabc\r\n",
        f"--{BOUNDARY}\r\nbroken header line without a colon\r\n\r\nabc".encode(),
    ],
)
async def test_malformed_multipart_is_400_and_leaves_nothing(tmp_path: Path, body: bytes) -> None:
    with pytest.raises(BadRequest):
        await receive_upload(_stream(body), MULTIPART, max_bytes=1 << 20, tmp_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


async def test_field_name_that_is_not_utf8_is_400(tmp_path: Path) -> None:
    body, headers = non_utf8_multipart()
    with pytest.raises(BadRequest, match="not UTF-8"):
        await receive_upload(_stream(body), headers["Content-Type"], max_bytes=1 << 20, tmp_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


async def test_form_field_holding_a_nul_character_is_400(tmp_path: Path) -> None:
    body = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n\r\na\0b\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="x.csv"\r\n\r\n1\r\n'
        f"--{BOUNDARY}--\r\n"
    ).encode()
    with pytest.raises(BadRequest, match="NUL"):
        await receive_upload(_stream(body), MULTIPART, max_bytes=1 << 20, tmp_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
