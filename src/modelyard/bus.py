"""The in-process event bus: parts publish what happened (``jobs.progress``, ``pipelines.stage.done``...),
others (SSE streams, notifications, the dashboard) subscribe by topic prefix.

``publish`` is safe from any thread (workflow steps run in threads); subscribers are asyncio consumers.
A slow subscriber loses its oldest events rather than blocking publishers (its queue is bounded).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from modelyard.db import utcnow


@dataclass(frozen=True, slots=True)
class BusEvent:
    """One thing that happened: a dotted topic, a JSON-able payload, and when."""

    topic: str
    data: dict[str, Any]
    at: str = field(default_factory=lambda: utcnow().isoformat())


class _Subscription:
    def __init__(self, prefixes: tuple[str, ...], loop: asyncio.AbstractEventLoop, maxsize: int):
        self.prefixes = prefixes
        self.loop = loop
        self.queue: asyncio.Queue[BusEvent] = asyncio.Queue(maxsize)

    def matches(self, topic: str) -> bool:
        return not self.prefixes or topic.startswith(self.prefixes)

    def offer(self, event: BusEvent) -> None:
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(event)


class EventBus:
    """Topic-prefix publish/subscribe inside one process."""

    def __init__(self, maxsize: int = 1000):
        self._subs: list[_Subscription] = []
        self._lock = threading.Lock()
        self._maxsize = maxsize

    def publish(self, topic: str, data: dict[str, Any]) -> None:
        """Deliver an event to every matching subscriber (from any thread)."""
        event = BusEvent(topic, data)
        with self._lock:
            subs = [s for s in self._subs if s.matches(topic)]
        for sub in subs:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is sub.loop:
                sub.offer(event)
            elif not sub.loop.is_closed():
                sub.loop.call_soon_threadsafe(sub.offer, event)

    async def subscribe(self, *prefixes: str) -> AsyncIterator[BusEvent]:
        """Events whose topic starts with any of ``prefixes`` (all when none), until the consumer stops."""
        sub = _Subscription(prefixes, asyncio.get_running_loop(), self._maxsize)
        with self._lock:
            self._subs.append(sub)
        try:
            while True:
                yield await sub.queue.get()
        finally:
            with self._lock:
                self._subs.remove(sub)

    def subscriber_count(self) -> int:
        """How many subscriptions are open."""
        with self._lock:
            return len(self._subs)
