"""Each thread's prints and log records go to its own capture."""

from __future__ import annotations

import logging
import threading

from modelyard.pipelines.stages.capture import STAGE_LOGGER, capture


def test_threads_capture_their_own_output() -> None:
    results: dict[int, str] = {}
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        with capture() as buf:
            barrier.wait()
            for _ in range(50):
                print(f"thread {i}")
            logging.getLogger(STAGE_LOGGER).warning("note %d", i)
        results[i] = buf.getvalue()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, text in results.items():
        assert text.count(f"thread {i}\n") == 50
        assert all(f"thread {j}" not in text for j in results if j != i)
        assert text.endswith(f"[warning] {STAGE_LOGGER}: note {i}\n")


def test_output_outside_a_capture_passes_through(capsys: object) -> None:
    with capture():
        pass
    print("visible")
    assert "visible" in capsys.readouterr().out  # type: ignore[attr-defined]
