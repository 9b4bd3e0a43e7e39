"""``ByteBudget``: memory a worker's stage batches may hold at once, shared by all its threads.

A stage batch of images decodes them in groups that fit (``batch.read_within``): it takes each image's
decoding memory from the worker's budget before decoding it, and gives the group's memory back once the
group has run. One image bigger than the whole budget still runs, alone.
"""

from __future__ import annotations

import threading


class ByteBudget:
    """A count of bytes held against ``limit``; ``peak`` is the most ever held at once."""

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0
        self.peak = 0
        self._changed = threading.Condition()

    def try_take(self, size: int) -> bool:
        """Take ``size`` bytes if they fit now; False (nothing taken) if not."""
        with self._changed:
            if not self._fits(size):
                return False
            self._add(size)
            return True

    def take(self, size: int) -> None:
        """Take ``size`` bytes, waiting until they fit (or nothing else is held). A caller that holds bytes
        gives them back first, or it may wait for itself."""
        with self._changed:
            self._changed.wait_for(lambda: self._fits(size))
            self._add(size)

    def give(self, size: int) -> None:
        """Give back ``size`` bytes taken before."""
        with self._changed:
            self.held -= size
            self._changed.notify_all()

    def _fits(self, size: int) -> bool:
        return self.held == 0 or self.held + size <= self.limit

    def _add(self, size: int) -> None:
        self.held += size
        self.peak = max(self.peak, self.held)
