"""Giving freed heap memory back to the operating system.

glibc keeps freed memory in its heap; after a large temporary allocation (a model checked on upload,
sessions evicted from the cache) the process's RSS stays high unless the heap is trimmed. The model
cache's byte cap is about RSS, so both the registry and serving trim.
"""

from __future__ import annotations

import ctypes


def trim_heap() -> None:
    """Return freed heap memory to the OS (glibc keeps it otherwise; the model cache's cap is about RSS)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only; other C libraries have no malloc_trim
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _load_libc()
