"""Images made model inputs for ``features`` beside the caller: raw image bytes decoded (``decode_image``,
within the worker's limits) and preprocessed (``features.preprocess``) in a helper process, so the caller
reads, hashes, runs the model and stores while the helper decodes the next batches. Decoding small images is
mostly interpreter time, which threads of one process cannot share (two threads over it ran twice as
slowly here); a process can.

``Preparer`` owns one helper (``python -m modelyard.inferrers.prepare``: it imports only what decoding
needs, so it is up in about a third of a second, where a ``multiprocessing`` spawn re-imports the
caller's whole program first). ``Preparer.map`` takes batches in order and gives each one's ``Prepared``
in that order, keeping ``AHEAD`` batches queued in the helper so it never waits on the caller; a caller
that would wait for the helper prepares the next batch itself instead. A batch's
bytes, and what the helper makes of them, go through files of the helper's own folder (in ``/dev/shm``
where there is one) and only their names through the pipes: a pipe holds 64 KiB, so a batch written into
it would keep the writer waiting until the reader, busy with other work, takes it all.

Until the helper has started, or once it has died, batches are prepared in the caller, so nothing waits
for it and nothing is lost: the values are the same either way, from the same functions. A worker starts
it with its re-inference thread (``catalog.runner``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import select
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np

from modelyard.inferrers.features import Preprocess, preprocess
from modelyard.inferrers.images import ImageLimits, decode_image

log = logging.getLogger("modelyard.inferrers")
AHEAD = 3  # batches queued in the helper beyond the one the caller waits for
STEAL = 2  # batches the caller prepares itself, beyond those, rather than wait for the helper
READY = b"R"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A batch made model inputs: which images decoded (``ok``, in batch order) and those preprocessed
    (None when none decoded)."""

    ok: list[bool]
    batch: np.ndarray | None


def prepare(datas: Sequence[bytes], spec: Preprocess, limits: ImageLimits) -> Prepared:
    """Each image of ``datas`` decoded within ``limits`` (one that cannot be is left out, as the stage
    fails that event alone) and the decoded ones preprocessed as ``spec`` says."""
    images = []
    ok = []
    for data in datas:
        try:
            images.append(decode_image(data, limits=limits))
            ok.append(True)
        except Exception:  # the event path meets the same failure and shows it
            ok.append(False)
    try:
        return Prepared(ok, preprocess(images, spec) if images else None)
    except Exception:  # as the stage, whose batch failing fails each of its events
        return Prepared([False] * len(ok), None)


class _Helper:
    """The helper process, its pipes and its folder (not yet ready until it said so)."""

    def __init__(self) -> None:
        shm = Path("/dev/shm")
        self.folder = Path(tempfile.mkdtemp(prefix="modelyard-prepare-", dir=shm if shm.is_dir() else None))
        package_root = str(Path(__file__).resolve().parents[2])  # where ``modelyard`` is importable from
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelyard.inferrers.prepare"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.send: IO[bytes] = self.proc.stdin
        self.receive: IO[bytes] = self.proc.stdout
        self.ready = False
        self.sent = 0

    def poll_ready(self, wait: float = 0) -> bool:
        """Whether the helper has started (waiting at most ``wait`` seconds for it)."""
        if not self.ready and select.select([self.receive], [], [], wait)[0]:
            self.ready = self.receive.read(1) == READY
            if not self.ready:
                raise EOFError("the helper exited while starting")
        return self.ready

    def put(self, datas: Sequence[bytes], spec: Preprocess, limits: ImageLimits) -> None:
        """Queue a batch: its bytes in a file of the folder, the file's name and the rest by the pipe."""
        self.sent += 1
        name = str(self.folder / str(self.sent))
        with open(name, "wb") as f:
            f.write(b"".join(datas))
        pickle.dump(
            (name, [len(d) for d in datas], spec, limits), self.send, protocol=pickle.HIGHEST_PROTOCOL
        )
        self.send.flush()

    def get(self) -> Prepared:
        """The answer to the first batch queued and not yet answered."""
        name = pickle.load(self.receive)
        with open(name, "rb") as f:
            ok, batch = pickle.load(f)
        os.unlink(name)
        return Prepared(ok, batch)

    def close(self) -> None:
        for pipe in (self.send, self.receive):
            with contextlib.suppress(OSError):
                pipe.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


class Preparer:
    """Prepares batches in a helper process (see the module docstring); one caller at a time."""

    def __init__(self) -> None:
        self._helper: _Helper | None = None
        self._dead = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the helper now (without waiting for it), so the first batches find it up."""
        self._started()

    def map(
        self, jobs: Iterable[tuple[T, Sequence[bytes], Preprocess, ImageLimits]]
    ) -> Generator[tuple[T, Prepared], None, None]:
        """Each job (tag, image bytes, preprocessing, limits) prepared, with its tag, in job order; the
        helper is kept ``AHEAD`` jobs beyond the one it works on, and, rather than wait for it, this
        thread prepares up to ``STEAL`` more itself. Closing the generator early drops what is queued."""
        with self._lock:
            taken = iter(jobs)
            pending: deque[tuple[T, Job, Prepared | None]] = deque()

            def take(here: bool) -> bool:
                try:
                    tag, datas, spec, limits = next(taken)
                except StopIteration:
                    return False
                job: Job = [datas, spec, limits]
                pending.append((tag, job, prepare(datas, spec, limits) if here else self._send(job)))
                return True

            try:
                more = True
                while True:
                    while more and sum(done is None for _, _, done in pending) <= AHEAD:
                        more = take(here=False)
                    while more and len(pending) <= AHEAD + STEAL and not self._answered(pending[0][2]):
                        more = take(here=True)  # this thread would only wait: it prepares one itself
                    if not pending:
                        return
                    yield self._receive(*pending.popleft())
            finally:
                while pending:  # what the helper still owes is read, so the next batches stay in step
                    _, job, done = pending.popleft()
                    if done is None:
                        self._result(job)

    def close(self) -> None:
        """Stop the helper (it exits when its input closes)."""
        helper, self._helper = self._helper, None
        if helper is not None:
            helper.close()

    def _send(self, job: Job) -> Prepared | None:
        """Queue a batch in the helper (None) or, while it is starting or dead, prepare it here."""
        helper = self._started()
        if helper is not None:
            try:
                helper.put(*job)
                return None
            except (OSError, ValueError):
                self._died()
        return prepare(*job)

    def _answered(self, done: Prepared | None) -> bool:
        """Whether the first pending batch (``done`` when prepared here) can be had without waiting."""
        helper = self._helper
        return done is not None or helper is None or bool(select.select([helper.receive], [], [], 0)[0])

    def _receive(self, tag: T, job: Job, done: Prepared | None) -> tuple[T, Prepared]:
        return tag, done if done is not None else self._result(job)

    def _result(self, job: Job) -> Prepared:
        """The helper's answer to ``job`` (queued first of those it still owes), or, when it died before
        answering, ``job`` prepared here."""
        if self._helper is not None:
            try:
                return self._helper.get()
            except (OSError, ValueError, EOFError, pickle.UnpicklingError):
                self._died()
        return prepare(*job)

    def _started(self) -> _Helper | None:
        """The helper once ready; started on first call; None while it starts or after it died."""
        if self._dead:
            return None
        try:
            if self._helper is None:
                self._helper = _Helper()
            return self._helper if self._helper.poll_ready() else None
        except (OSError, EOFError, ValueError):
            self._died()
            return None

    def _died(self) -> None:
        log.warning("the prepare helper stopped; batches are prepared in this process from now on")
        self._dead = True
        self.close()


Job = list[Any]  # [image bytes, Preprocess, ImageLimits]


def serve(source: IO[bytes], sink: IO[bytes]) -> None:
    """The helper's loop: each batch named on ``source`` is read (its file removed) and prepared, and the
    name of the file its ``Prepared`` is in written to ``sink``, until ``source`` ends."""
    sink.write(READY)
    sink.flush()
    while True:
        try:
            name, lengths, spec, limits = pickle.load(source)
        except (EOFError, OSError, pickle.UnpicklingError):
            return
        with open(name, "rb") as f:
            blob = memoryview(f.read())
        os.unlink(name)
        datas, at = [], 0
        for n in lengths:
            datas.append(bytes(blob[at : at + n]))
            at += n
        got = prepare(datas, spec, limits)
        with open(f"{name}.out", "wb") as f:
            pickle.dump((got.ok, got.batch), f, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.dump(f"{name}.out", sink)
        sink.flush()


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):  # the caller closed (or died) before reading all
        serve(sys.stdin.buffer, sys.stdout.buffer)
