"""Reading multichannel images: OME-TIFF channel names, windows read by tiles, PNG and NumPy, and the
inputs refused with a reason."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from modelyard.analysis.images import (
    TiffImage,
    channel_index,
    open_image,
    require_channels,
    tile_grid,
    write_tiled,
)
from modelyard.errors import InvalidInput, UndecodableInput
from tests.analysis.tissue import write_ome

NAMES = ["DAPI", "CD3", "CD20"]


@pytest.fixture
def pixels() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 65535, size=(3, 150, 210), dtype=np.uint16)


def test_ome_tiff_channel_names_come_from_its_metadata(tmp_path: Path, pixels: np.ndarray) -> None:
    path = write_ome(tmp_path / "s.ome.tif", pixels, NAMES)
    from_bytes = open_image(path.read_bytes())
    with TiffImage(path) as from_file:
        assert from_file.channels == from_bytes.channels == tuple(NAMES)
        assert from_file.shape == (3, 150, 210) and from_file.dtype == np.uint16


def test_windows_of_a_tiled_file_are_the_pixels_there(tmp_path: Path, pixels: np.ndarray) -> None:
    with TiffImage(write_ome(tmp_path / "s.ome.tif", pixels, NAMES, tile=32)) as image:
        assert np.array_equal(image.read(5, 140, 31, 200), pixels[:, 5:140, 31:200])
        assert np.array_equal(image.read(64, 150, 192, 210, channel=2), pixels[2, 64:, 192:])


@pytest.mark.parametrize(
    "options",
    [{"rowsperstrip": 7}, {"compression": "zlib", "tile": (32, 32)}, {"compression": "zlib"}],
    ids=["strips", "compressed-tiles", "compressed-strips"],
)
def test_strips_and_compressed_files_read_the_same(
    tmp_path: Path, pixels: np.ndarray, options: dict[str, object]
) -> None:
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, pixels, photometric="minisblack", **options)  # type: ignore[arg-type]
    with TiffImage(path) as image:
        assert image.channels == ("ch0", "ch1", "ch2")
        assert np.array_equal(image.read(3, 149, 17, 201), pixels[:, 3:149, 17:201])


def test_an_rgb_tiff_has_three_channels(tmp_path: Path, pixels: np.ndarray) -> None:
    rgb = (pixels >> 8).astype(np.uint8).transpose(1, 2, 0)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with TiffImage(tmp_path / "rgb.tif") as image:
        assert image.shape == (3, 150, 210)
        assert np.array_equal(image.read(0, 150, 0, 210), rgb.transpose(2, 0, 1))


def test_a_tiled_write_reads_back_with_its_names(tmp_path: Path, pixels: np.ndarray) -> None:
    grid = tile_grid(150, 210, 64, 0)
    tiles = (pixels[c, t.y0 : t.y1, t.x0 : t.x1] for c in range(3) for t in grid)
    path = tmp_path / "w.ome.tif"
    write_tiled(path, tiles, shape=pixels.shape, dtype=np.uint16, size=64, channels=NAMES)
    with TiffImage(path) as image:
        assert image.channels == tuple(NAMES)
        assert np.array_equal(image.read(0, 150, 0, 210), pixels)


def test_png_and_numpy_inputs(pixels: np.ndarray) -> None:
    rgb = (pixels >> 8).astype(np.uint8).transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    png = open_image(buf.getvalue())
    assert png.channels == ("red", "green", "blue")
    assert np.array_equal(png.read(0, 150, 0, 210), rgb.transpose(2, 0, 1))
    npy = io.BytesIO()
    np.save(npy, pixels)
    assert np.array_equal(open_image(npy.getvalue()).read(0, 150, 0, 210), pixels)
    assert open_image(pixels[0]).shape == (1, 150, 210)


def test_unreadable_inputs_are_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(UndecodableInput, match=r"not TIFF, PNG or \.npy"):
        open_image(b"GIF89a...")
    with pytest.raises(UndecodableInput, match="not a readable TIFF"):
        open_image(b"II*\x00" + b"\x00" * 20)
    stack = np.zeros((4, 2, 16, 16), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "z.ome.tif", stack, metadata={"axes": "ZCYX"})
    with pytest.raises(UndecodableInput, match="Z=4"):
        open_image(tmp_path / "z.ome.tif")
    with pytest.raises(UndecodableInput, match=r"\(H, W\) or \(C, H, W\)"):
        open_image(np.zeros((2, 2, 2, 2)))


def test_a_missing_channel_names_the_ones_there(tmp_path: Path, pixels: np.ndarray) -> None:
    image = open_image(write_ome(tmp_path / "s.ome.tif", pixels, NAMES).read_bytes())
    assert channel_index(image, "CD20") == 2 and channel_index(image, 1) == 1
    with pytest.raises(InvalidInput, match="no channel 'CD8'; it has 3: DAPI, CD3, CD20") as info:
        channel_index(image, "CD8", "params.channel")
    assert info.value.field == "params.channel"
    with pytest.raises(InvalidInput, match=r"names 4 channels .* but the image has 3"):
        require_channels(image, ["a", "b", "c", "d"])
