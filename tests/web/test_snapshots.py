"""Kept queue snapshots: a page shows a recent one at once, renews it in the background once it is past
``FRESH_S``, and reads one itself when there is none or it is past ``STALE_S``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelyard.web.snapshots import FRESH_S, STALE_S, Snapshots


class Counter:
    """A fake ``/queues`` reader: each read answers the next number, and can be held until released;
    ``started`` and ``finished`` are set as a read starts and as it answers."""

    def __init__(self) -> None:
        self.reads = 0
        self.release, self.started, self.finished = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self.release.set()

    async def read(self, name: str, key: str) -> dict[str, Any]:
        self.reads += 1
        self.started.set()
        answer = {"pipeline": name, "read": self.reads, "key": key}
        await self.release.wait()
        self.finished.set()
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_recent_snapshot_is_shown_and_renewed_in_the_background() -> None:
    counter, clock = Counter(), Clock()
    kept = Snapshots(counter.read, clock)
    assert (await kept.get("images", "k1"))["read"] == 1  # none kept: read now
    clock.now += FRESH_S / 2
    assert (await kept.get("images", "k2"))["read"] == 1 and counter.reads == 1  # fresh: as it is
    clock.now += FRESH_S
    counter.release.clear()
    counter.started.clear()
    counter.finished.clear()
    shown = await kept.get("images", "k2")  # past fresh: shown at once, renewed behind it
    assert shown["read"] == 1
    await counter.started.wait()
    assert (await kept.get("images", "k2"))["read"] == 1 and counter.reads == 2  # one renewal at a time
    counter.release.set()
    await counter.finished.wait()  # the renewal keeps its answer in the same step it gets it
    assert (await kept.get("images", "k2")) == {"pipeline": "images", "read": 2, "key": "k2"}


async def test_a_stale_or_forgotten_snapshot_is_read_again_before_the_page_shows() -> None:
    counter, clock = Counter(), Clock()
    kept = Snapshots(counter.read, clock)
    await kept.get("images", "k")
    clock.now += STALE_S + 1
    assert (await kept.get("images", "k"))["read"] == 2
    kept.forget("images")
    assert (await kept.get("images", "k"))["read"] == 3
    assert (await kept.get("other", "k"))["pipeline"] == "other"  # kept by pipeline


async def test_a_failed_read_reaches_the_page_that_waits_for_it() -> None:
    async def broken(name: str, key: str) -> dict[str, Any]:
        raise LookupError(name)

    kept = Snapshots(broken, Clock())
    with pytest.raises(LookupError):
        await kept.get("gone", "k")
