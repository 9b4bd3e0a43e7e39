"""The raw stage's fetch of large files: hashed by chunks, not held; stages that read files get the path,
stages that read the bytes whole are held to the fetch cap."""

from __future__ import annotations

import hashlib

import pytest

from modelyard.app import build_context
from modelyard.errors import FetchFailed, PayloadTooLarge
from modelyard.pipelines.stages import raw
from modelyard.settings import Settings


def test_a_file_larger_than_the_raw_cache_is_hashed_by_chunks_and_read_by_path(
    pipeline_settings: Settings,
) -> None:
    settings = pipeline_settings.model_copy(
        update={"pipeline_raw_cache_bytes": 1000, "fetch_max_bytes": 2000}
    )
    ctx = build_context(settings)
    try:
        data = bytes(range(256)) * 12  # 3,072 bytes: over the cache and over the fetch cap
        path = settings.data_dir / "scans" / "big.bin"
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        got = raw.fetch(ctx, "e1", str(path), "bytes")
        assert (got.kind, got.size, got.sha256) == ("file", len(data), hashlib.sha256(data).hexdigest())
        assert raw.cache(ctx).get("e1") is None
        assert raw.path(ctx, got.kind, got.location, settings.data_dir) == path
        with pytest.raises(PayloadTooLarge, match="reads it whole"):
            raw.read(ctx, "e1", got.kind, got.location)

        ctx.storage.put_bytes("scans/big.bin", data)
        stored = raw.fetch(ctx, "e2", "artifact://scans/big.bin", "bytes")
        assert (stored.kind, stored.sha256) == ("artifact", got.sha256)
        assert raw.path(ctx, stored.kind, stored.location, settings.data_dir).read_bytes() == data

        small = settings.data_dir / "scans" / "small.bin"
        small.write_bytes(b"tiny")
        assert raw.read(ctx, "e3", "file", str(raw.fetch(ctx, "e3", str(small), "bytes").location)) == b"tiny"
        assert raw.cache(ctx).get("e3") == b"tiny"
        with pytest.raises(FetchFailed):
            raw.fetch(ctx, "e4", str(settings.data_dir / "scans" / "gone.bin"), "bytes")
    finally:
        ctx.close()
