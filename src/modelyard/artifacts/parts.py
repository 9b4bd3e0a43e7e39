"""Resumable uploads of large files in checksummed parts, the same on every storage backend.

An upload is declared with the final key, size, sha256 and part size; each part is PUT with its
``Content-MD5`` (checked on arrival, as S3 checks it) and kept in the artifact store under
``uploads/<id>/`` (so any API replica can take the next part and a client can resume after an
interruption by asking which parts arrived); completing it streams the parts into one object while
hashing, and stores it only if the whole file's sha256 is the declared one. Nothing is written at the key
before that. The parts are deleted once the file is stored.

Every start and part marks the upload as touched (``uploads/<id>/touched``, epoch seconds); ``sweep``,
run on every worker heartbeat, removes the uploads nobody touched for ``upload_abandon_hours``, parts and
all, so an interrupted upload that is never resumed does not keep its parts for good.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from pathlib import Path

import orjson

from modelyard.artifacts.schemas import ArtifactPublic, PartPublic, UploadCreate, UploadPublic
from modelyard.artifacts.service import writable_key
from modelyard.errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from modelyard.storage import Storage

PREFIX = "uploads/"
MIN_PART, MAX_PART = 64 * 1024, 64 * 1024 * 1024
_ID = re.compile(r"^[0-9a-f]{32}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")


class UploadNotFound(NotFound):
    """No upload with this id (never started, completed, or aborted): start a new one."""

    code, title = "upload-not-found", "Upload not found"


def _meta_key(upload_id: str) -> str:
    if not _ID.match(upload_id):
        raise UploadNotFound(f"no upload {upload_id!r}", field="upload_id")
    return f"{PREFIX}{upload_id}/upload.json"


def _touched_key(upload_id: str) -> str:
    return f"{PREFIX}{upload_id}/touched"


def _touch(storage: Storage, upload_id: str, now: float | None = None) -> None:
    storage.put_bytes(_touched_key(upload_id), repr(time.time() if now is None else now).encode())


def _part_key(upload_id: str, number: int) -> str:
    return f"{PREFIX}{upload_id}/{number:05d}"


def n_parts(size: int, part_size: int) -> int:
    """How many parts a file of ``size`` bytes has (an empty file has one, empty)."""
    return max(1, -(-size // part_size))


def start(storage: Storage, data: UploadCreate, max_bytes: int) -> UploadPublic:
    """Declare an upload; its id names it from now on."""
    writable_key(data.key)
    if data.size > max_bytes:
        raise PayloadTooLarge(f"a file of {data.size} bytes is over the {max_bytes}-byte limit", field="size")
    if not MIN_PART <= data.part_size <= MAX_PART:
        raise BadRequest(f"part_size must be {MIN_PART}..{MAX_PART} bytes", field="part_size")
    if not _SHA.match(data.sha256):
        raise BadRequest("sha256 must be 64 lowercase hex digits", field="sha256")
    upload_id = secrets.token_hex(16)
    _touch(storage, upload_id)
    storage.put_bytes(_meta_key(upload_id), orjson.dumps(data.model_dump()))
    return UploadPublic(id=upload_id, parts_total=n_parts(data.size, data.part_size), **data.model_dump())


def _declared(storage: Storage, upload_id: str) -> UploadCreate:
    try:
        return UploadCreate.model_validate_json(storage.get_bytes(_meta_key(upload_id)))
    except NotFound:
        raise UploadNotFound(f"no upload {upload_id!r}: start a new one", field="upload_id") from None


def status(storage: Storage, upload_id: str) -> UploadPublic:
    """The declared upload and the parts that have arrived."""
    data = _declared(storage, upload_id)
    parts = [
        PartPublic(number=int(info.key.rsplit("/", 1)[1]), size=info.size)
        for info in storage.list(f"{PREFIX}{upload_id}")
        if info.key.rsplit("/", 1)[1].isdigit()
    ]
    total = n_parts(data.size, data.part_size)
    return UploadPublic(id=upload_id, parts_total=total, parts=parts, **data.model_dump())


def put_part(
    storage: Storage, upload_id: str, number: int, path: Path, content_md5: str | None
) -> PartPublic:
    """Keep part ``number`` (from 1) if its size is the one it must have and its MD5 is ``content_md5``."""
    data = _declared(storage, upload_id)
    total = n_parts(data.size, data.part_size)
    if not 1 <= number <= total:
        raise BadRequest(f"part {number} is not one of parts 1..{total}", field="number")
    want = data.part_size if number < total else data.size - (total - 1) * data.part_size
    size = path.stat().st_size
    if size != want:
        raise BadRequest(f"part {number} has {size} bytes; it must have {want}", field="body")
    if not content_md5:
        raise BadRequest("a part needs its Content-MD5 header (base64 MD5 of its bytes)", field="Content-MD5")
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    if base64.b64encode(digest.digest()).decode() != content_md5.strip():
        raise BadRequest(f"part {number} does not match its Content-MD5: resend it", field="Content-MD5")
    storage.put_file(_part_key(upload_id, number), path)
    _touch(storage, upload_id)
    return PartPublic(number=number, size=size)


def complete(storage: Storage, upload_id: str) -> ArtifactPublic:
    """Join the parts into the declared key if every part is there and the sha256 is the declared one."""
    data = _declared(storage, upload_id)
    have = {p.number for p in status(storage, upload_id).parts}
    missing = [n for n in range(1, n_parts(data.size, data.part_size) + 1) if n not in have]
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        raise Conflict(f"parts {shown} have not arrived", field="parts", extra={"missing": missing})
    digest = hashlib.sha256()
    with storage.writing(writable_key(data.key)) as path, path.open("wb") as out:
        for number in range(1, len(have) + 1):
            for chunk in storage.open_read(_part_key(upload_id, number)):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != data.sha256:
            storage.delete_prefix(f"{PREFIX}{upload_id}")
            raise BadRequest(
                "the joined parts do not have the declared sha256; the upload is dropped, start again",
                field="sha256",
            )
    storage.delete_prefix(f"{PREFIX}{upload_id}")
    return ArtifactPublic(key=data.key, size=data.size, sha256=data.sha256)


def abort(storage: Storage, upload_id: str) -> None:
    """Drop an upload and the parts it has."""
    _declared(storage, upload_id)
    storage.delete_prefix(f"{PREFIX}{upload_id}")


def sweep(storage: Storage, max_age_seconds: float, *, now: float | None = None) -> list[str]:
    """Remove every upload not touched for ``max_age_seconds`` (its parts, declaration and mark); the ids
    removed. An upload without a mark (declared before marks were kept, or parts left by an upload
    removed while one was arriving) is marked now, so it gets the whole period from the first sweep that
    sees it."""
    now = time.time() if now is None else now
    ids = {info.key.removeprefix(PREFIX).partition("/")[0] for info in storage.list(PREFIX)}
    removed = []
    for upload_id in sorted(i for i in ids if _ID.match(i)):
        try:
            touched = float(storage.get_bytes(_touched_key(upload_id)))
        except NotFound:
            _touch(storage, upload_id, now)
            continue
        except ValueError:
            touched = 0.0  # an unreadable mark: nobody resumes such an upload
        if now - touched >= max_age_seconds:
            storage.delete_prefix(f"{PREFIX}{upload_id}")
            removed.append(upload_id)
    return removed
