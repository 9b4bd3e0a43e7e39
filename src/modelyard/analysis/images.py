"""Multichannel images read by windows: TIFF / OME-TIFF (tifffile, tiled files read tile by tile through
its zarr store, so a 20,000 x 20,000 x 8 image is never loaded whole), PNG and NumPy (``.npy``, memory-
mapped from a file). Every image is seen as channels x height x width; channel names come from the OME
metadata where present (``ch0``, ``ch1``... otherwise). PNG and NumPy need nothing more; TIFF needs the
analysis extra (``ExtraMissing`` without it).

``Tile`` and ``tile_grid`` are the grid every tiled pass walks: a core each tile owns, and a window (the
core plus an overlap margin, clipped to the image) it reads.
"""

from __future__ import annotations

import io
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from modelyard import extras
from modelyard.errors import InvalidInput, UndecodableInput

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
PNG_MAGIC = b"\x89PNG"
NPY_MAGIC = b"\x93NUMPY"
KEEP = set("YXCS")  # other axes (Z, T...) must be of size 1


class Multichannel(Protocol):
    """An image as channels x height x width, read by windows."""

    @property
    def channels(self) -> tuple[str, ...]:
        """One name per channel."""
        ...

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width)."""
        ...

    @property
    def dtype(self) -> np.dtype[Any]:
        """The pixel type as stored."""
        ...

    def read(self, y0: int, y1: int, x0: int, x1: int, channel: int | None = None) -> np.ndarray:
        """Rows ``y0:y1``, columns ``x0:x1`` of every channel (C, h, w), or of one channel (h, w)."""
        ...


@dataclass(frozen=True, slots=True)
class ArrayImage:
    """An image held in memory (or memory-mapped): ``data`` is (C, H, W)."""

    data: np.ndarray
    channels: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.data.shape
        return c, h, w

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.data.dtype

    def read(self, y0: int, y1: int, x0: int, x1: int, channel: int | None = None) -> np.ndarray:
        if channel is None:
            return np.asarray(self.data[:, y0:y1, x0:x1])
        return np.asarray(self.data[channel, y0:y1, x0:x1])


class TiffImage:
    """A TIFF file read through tifffile's zarr store: a window reads only the tiles (or strips) it
    covers. Keep it open while reading; ``close`` releases the file."""

    def __init__(self, path: str | Path):
        extras.require("analysis", "reading a TIFF")
        import tifffile

        path = Path(path)

        try:
            self._tif = tifffile.TiffFile(path)
        except (tifffile.TiffFileError, ValueError) as exc:
            raise UndecodableInput(f"{path.name} is not a readable TIFF: {exc}") from None
        try:
            self._open(path)
        except BaseException:
            self._tif.close()
            raise

    def _open(self, path: Path) -> None:
        import zarr

        try:
            series = self._tif.series[0]
        except (IndexError, ValueError) as exc:
            raise UndecodableInput(f"{path.name} is not a readable TIFF: {exc}") from None
        self._axes = _check_axes(series.axes, series.shape)
        sizes = dict(zip(self._axes, series.shape, strict=True))
        count = sizes.get("C", 1) * sizes.get("S", 1)
        self.shape = (count, sizes["Y"], sizes["X"])
        self.dtype = np.dtype(series.dtype)
        self.channels = _names(ome_channel_names(self._tif.ome_metadata), count)
        self._lock = threading.Lock()
        # a page per channel, or one page of interleaved samples: read segment by segment ourselves
        # (60x faster than through the zarr store); anything else goes through the store
        self._pages: list[Any] = [p for p in series.pages if p is not None]
        first = self._pages[0] if self._pages else None
        simple = (
            first is not None
            and first.planarconfig == 1
            and (
                (len(self._pages) == count and first.samplesperpixel == 1)
                or (len(self._pages) == 1 and first.samplesperpixel == count)
            )
        )
        self._array: Any = None if simple else zarr.open(series.aszarr(level=0), mode="r")

    def read(self, y0: int, y1: int, x0: int, x1: int, channel: int | None = None) -> np.ndarray:
        if self._array is None:
            return self._read_segments(y0, y1, x0, x1, channel)
        index = tuple(
            slice(y0, y1) if a == "Y" else slice(x0, x1) if a == "X" else slice(None) if a in "CS" else 0
            for a in self._axes
        )
        kept = [a for a in self._axes if a in KEEP]
        window = np.asarray(self._array[index])
        window = _to_cyx(window, kept)
        return window if channel is None else window[channel]

    def close(self) -> None:
        """Release the file."""
        self._tif.close()

    def __enter__(self) -> TiffImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_segments(self, y0: int, y1: int, x0: int, x1: int, channel: int | None) -> np.ndarray:
        """The window from the tiles (or strips) it covers, decoded one at a time."""
        count = self.shape[0]
        wanted = range(count) if channel is None else [channel]
        out = np.empty((len(wanted), y1 - y0, x1 - x0), dtype=self.dtype)
        if len(self._pages) == 1:
            window = self._page_window(self._pages[0], y0, y1, x0, x1)
            out[:] = window.transpose(2, 0, 1)[list(wanted)]
        else:
            for i, c in enumerate(wanted):
                out[i] = self._page_window(self._pages[c], y0, y1, x0, x1)[..., 0]
        return out if channel is None else out[0]

    def _page_window(self, page: Any, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        key = page.keyframe
        height, width = self.shape[1:]
        if key.is_tiled:
            th, tw = key.tilelength, key.tilewidth
        else:
            th, tw = key.rowsperstrip or height, width
        across = -(-width // tw)
        out = np.empty((y1 - y0, x1 - x0, key.samplesperpixel), dtype=self.dtype)
        fh = self._tif.filehandle
        for ty in range(y0 // th, (y1 - 1) // th + 1):
            for tx in range(x0 // tw, (x1 - 1) // tw + 1):
                k = ty * across + tx
                with self._lock:
                    fh.seek(page.dataoffsets[k])
                    data = fh.read(page.databytecounts[k])
                segment, _, _ = key.decode(data, k, jpegtables=key.jpegtables)
                segment = segment[0]  # (length, width, samples), an edge tile padded
                sy0, sx0 = ty * th, tx * tw
                ya, yb = max(y0, sy0), min(y1, sy0 + segment.shape[0])
                xa, xb = max(x0, sx0), min(x1, sx0 + segment.shape[1])
                out[ya - y0 : yb - y0, xa - x0 : xb - x0] = segment[ya - sy0 : yb - sy0, xa - sx0 : xb - sx0]
        return out


def _check_axes(axes: str, shape: Sequence[int]) -> str:
    if "C" not in axes:  # pages of a plain multi-page TIFF: unknown (Q) or sequence (I) axis
        for other in "QI":
            if other in axes:
                axes = axes.replace(other, "C", 1)
                break
    if "Y" not in axes or "X" not in axes:
        raise UndecodableInput(f"the TIFF has axes {axes}; an image needs Y and X")
    extra = [f"{a}={n}" for a, n in zip(axes, shape, strict=True) if a not in KEEP and n != 1]
    if extra:
        raise UndecodableInput(
            f"the TIFF has axes {axes} with {', '.join(extra)}; only one plane (C, Y, X) is read"
        )
    if "C" in axes and "S" in axes and dict(zip(axes, shape, strict=True))["S"] != 1:
        raise UndecodableInput(f"the TIFF has axes {axes}: both channels and samples per pixel")
    return axes


def _to_cyx(window: np.ndarray, axes: list[str]) -> np.ndarray:
    """A window with ``axes`` (a subset of C, S, Y, X) as (C, h, w)."""
    order = [axes.index(a) for a in ("C", "S", "Y", "X") if a in axes]
    window = window.transpose(order)
    return window.reshape(-1, window.shape[-2], window.shape[-1])


def ome_channel_names(xml: str | None) -> list[str]:
    """The channel names of the first image of an OME-XML document (empty if none or unnamed)."""
    if not xml:
        return []
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return []
    pixels = next((el for el in root.iter() if el.tag.endswith("}Pixels") or el.tag == "Pixels"), None)
    if pixels is None:
        return []
    channels = [el for el in pixels if el.tag.endswith("Channel")]
    names = [el.get("Name") or "" for el in channels]
    return names if all(names) else []


def _names(found: Sequence[str], count: int) -> tuple[str, ...]:
    if len(found) == count and len(set(found)) == count:
        return tuple(found)
    return tuple(f"ch{i}" for i in range(count))


def _array_image(data: np.ndarray, channels: Sequence[str] | None = None) -> ArrayImage:
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3 or 0 in data.shape:
        raise UndecodableInput(f"an image array must be (H, W) or (C, H, W), not {data.shape}")
    if data.dtype.kind not in "biuf":
        raise UndecodableInput(f"an image array must be numeric, not {data.dtype}")
    return ArrayImage(data, _names(channels or [], data.shape[0]))


def _png(data: bytes | Path) -> ArrayImage:
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
            if img.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr"):
                arr = np.asarray(img.convert("RGB")).transpose(2, 0, 1)
                return ArrayImage(np.ascontiguousarray(arr), ("red", "green", "blue"))
            return _array_image(np.asarray(img))
    except (UnidentifiedImageError, OSError) as exc:
        raise UndecodableInput(f"not a readable PNG: {exc}") from None


def tiff_array(data: bytes) -> np.ndarray:
    """An array stored as a TIFF (a stage output): its first series, leading axes of size 1 dropped."""
    import tifffile

    arr = tifffile.imread(io.BytesIO(data))
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    return np.asarray(arr)


def _tiff_bytes(data: bytes) -> ArrayImage:
    extras.require("analysis", "reading a TIFF")
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            series = tif.series[0]
            axes = _check_axes(series.axes, series.shape)
            arr = series.asarray()
            names = ome_channel_names(tif.ome_metadata)
    except (tifffile.TiffFileError, IndexError, ValueError) as exc:
        raise UndecodableInput(f"not a readable TIFF: {exc}") from None
    index = tuple(slice(None) if a in KEEP else 0 for a in axes)
    return _array_image(_to_cyx(arr[index], [a for a in axes if a in KEEP]), names)


def _npy(data: bytes | Path) -> ArrayImage:
    try:
        if isinstance(data, bytes):
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        else:
            arr = np.load(data, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise UndecodableInput(f"not a readable .npy array: {exc}") from None
    return _array_image(arr)


def open_image(source: bytes | str | Path | np.ndarray | Multichannel) -> Multichannel:
    """The image in ``source``: TIFF / OME-TIFF, PNG or ``.npy`` bytes or file, or an array ((H, W) or
    (C, H, W)). Files are read by windows; an unreadable input is ``UndecodableInput``."""
    if isinstance(source, np.ndarray):
        return _array_image(source)
    if isinstance(source, ArrayImage | TiffImage):
        return source
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if data.startswith(TIFF_MAGIC):
            return _tiff_bytes(data)
        if data.startswith(PNG_MAGIC):
            return _png(data)
        if data.startswith(NPY_MAGIC):
            return _npy(data)
        raise UndecodableInput("the image is not TIFF, PNG or .npy (unknown leading bytes)")
    path = Path(str(source))
    with path.open("rb") as fh:
        head = fh.read(8)
    if head.startswith(TIFF_MAGIC):
        return TiffImage(path)
    if head.startswith(PNG_MAGIC):
        return _png(path)
    if head.startswith(NPY_MAGIC):
        return _npy(path)
    raise UndecodableInput(f"{path.name} is not TIFF, PNG or .npy (unknown leading bytes)")


def saturation_level(dtype: np.dtype[Any]) -> float:
    """The value a saturated pixel holds: the type's maximum, or 1.0 for a float image."""
    return float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0


def close_image(image: Multichannel) -> None:
    """Release the file behind ``image``, if any."""
    if isinstance(image, TiffImage):
        image.close()


def channel_index(image: Multichannel, channel: str | int, field: str = "channel") -> int:
    """The index of a channel named (or numbered) ``channel``; ``InvalidInput`` naming ``field`` and
    the channels there are when the image has no such channel."""
    count = image.shape[0]
    if isinstance(channel, int) and not isinstance(channel, bool):
        if 0 <= channel < count:
            return channel
    elif channel in image.channels:
        return image.channels.index(channel)
    raise InvalidInput(
        f"the image has no channel {channel!r}; it has {count}: {', '.join(image.channels)}", field=field
    )


def require_channels(image: Multichannel, names: Sequence[str], field: str = "channels") -> None:
    """``InvalidInput`` when the spec names more channels than the image has."""
    if len(names) > image.shape[0]:
        raise InvalidInput(
            f"the spec names {len(names)} channels ({', '.join(names)}) but the image has "
            f"{image.shape[0]} ({', '.join(image.channels)})",
            field=field,
        )


@dataclass(frozen=True, slots=True)
class Tile:
    """One tile: the core it owns (``y0:y1, x0:x1``) and the window it reads (the core plus the margin,
    clipped to the image)."""

    index: int
    row: int
    col: int
    y0: int
    y1: int
    x0: int
    x1: int
    wy0: int
    wy1: int
    wx0: int
    wx1: int

    @property
    def core_in_window(self) -> tuple[slice, slice]:
        """The core as slices of the window."""
        return (
            slice(self.y0 - self.wy0, self.y1 - self.wy0),
            slice(self.x0 - self.wx0, self.x1 - self.wx0),
        )


def tile_grid(height: int, width: int, size: int, margin: int) -> list[Tile]:
    """Tiles of ``size`` x ``size`` in row-major order, each window ``margin`` wider on every side."""
    tiles: list[Tile] = []
    for row, y0 in enumerate(range(0, height, size)):
        for col, x0 in enumerate(range(0, width, size)):
            y1, x1 = min(y0 + size, height), min(x0 + size, width)
            wy = (max(0, y0 - margin), min(height, y1 + margin))
            wx = (max(0, x0 - margin), min(width, x1 + margin))
            tiles.append(Tile(len(tiles), row, col, y0, y1, x0, x1, *wy, *wx))
    return tiles


def padded_tiles(tiles: Iterator[np.ndarray], shape: tuple[int, ...], size: int) -> Iterator[np.ndarray]:
    """Each (…, h, w) tile padded with zeros to ``size`` x ``size`` (TIFF tiles are all full size)."""
    for tile in tiles:
        h, w = tile.shape[-2:]
        if (h, w) == (size, size):
            yield tile
            continue
        full = np.zeros((*shape, size, size), dtype=tile.dtype)
        full[..., :h, :w] = tile
        yield full


def write_tiled(
    path: Path,
    tiles: Iterator[np.ndarray],
    *,
    shape: tuple[int, int, int],
    dtype: Any,
    size: int,
    channels: Sequence[str],
) -> None:
    """Write a (C, H, W) OME-TIFF from its tiles of ``size`` (each channel's tiles in row-major order,
    channel after channel), holding one tile at a time."""
    extras.require("analysis", "writing a TIFF")
    import tifffile

    c, h, w = shape
    tifffile.imwrite(
        path,
        padded_tiles(tiles, (), size),
        shape=shape,
        dtype=dtype,
        tile=(size, size),
        photometric="minisblack",
        bigtiff=c * h * w * np.dtype(dtype).itemsize > 2**31,
        metadata={"axes": "CYX", "Channel": {"Name": list(channels)}},
        ome=True,
    )
