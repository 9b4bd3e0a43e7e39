"""Features inputs prepared in the helper process (``inferrers.prepare``): the same arrays as preparing
them here, in job order (whichever process prepared each), an undecodable image left out alone, and a
helper that dies loses no batch."""

from __future__ import annotations

import numpy as np

from modelyard.inferrers.features import Preprocess, preprocess
from modelyard.inferrers.images import DEFAULT_LIMITS, ImageLimits, decode_image, encode_png
from modelyard.inferrers.prepare import Prepared, Preparer, prepare
from tests.inferrers.images import gradient, noise, solid

SPEC = Preprocess.from_params({"resize": [8, 6], "mean": 0, "std": 1})
PNGS = [encode_png(noise(1)), encode_png(solid((200, 10, 10))), b"not an image", encode_png(gradient())]


def jobs(n: int) -> list[tuple[int, list[bytes], Preprocess, ImageLimits]]:
    return [(i, PNGS[i % 2 :] + PNGS[: i % 2], SPEC, DEFAULT_LIMITS) for i in range(n)]


def same(a: Prepared, b: Prepared) -> bool:
    assert a.batch is not None and b.batch is not None
    return a.ok == b.ok and a.batch.dtype == b.batch.dtype and np.array_equal(a.batch, b.batch)


def test_prepare_leaves_out_what_does_not_decode_and_preprocesses_the_rest() -> None:
    got = prepare(PNGS, SPEC, DEFAULT_LIMITS)
    assert got.ok == [True, True, False, True]
    decoded = [decode_image(data) for data in (PNGS[0], PNGS[1], PNGS[3])]
    assert got.batch is not None and np.array_equal(got.batch, preprocess(decoded, SPEC))
    assert prepare([b"", b"x"], SPEC, DEFAULT_LIMITS) == Prepared([False, False], None)


def test_preprocessing_a_batch_gives_each_image_what_it_gives_alone() -> None:
    images = [noise(3), solid((1, 2, 3)), gradient()]
    for params in ({}, {"layout": "NHWC", "mode": "L", "resize": 5}, {"scale": 0.5, "mean": [1, 2, 3]}):
        spec = Preprocess.from_params(params)
        batch = preprocess(images, spec)
        for i, img in enumerate(images):
            assert batch[i].tobytes() == preprocess([img], spec)[0].tobytes()  # the same float32 bits


def test_the_helper_prepares_what_this_process_would_in_job_order() -> None:
    preparer = Preparer()
    try:
        preparer.start()
        helper = preparer._helper
        assert helper is not None
        assert helper.poll_ready(wait=60)  # up, so the batches below go through it
        answers = list(preparer.map(jobs(6)))
        assert helper.sent >= 3  # the helper took batches (this thread may take some rather than wait)
    finally:
        preparer.close()
    assert [tag for tag, _ in answers] == list(range(6))
    for (_, datas, spec, limits), (_, got) in zip(jobs(6), answers, strict=True):
        assert same(got, prepare(datas, spec, limits))


def test_a_helper_that_dies_loses_no_batch() -> None:
    preparer = Preparer()
    try:
        preparer.start()
        helper = preparer._helper
        assert helper is not None
        assert helper.poll_ready(wait=60)
        answers = []
        for tag, got in preparer.map(jobs(5)):
            answers.append((tag, got))
            if tag == 0:
                helper.proc.kill()  # with batches queued in it
        assert preparer._helper is None  # stopped: the rest were prepared here
    finally:
        preparer.close()
    assert [tag for tag, _ in answers] == list(range(5))
    for (_, datas, spec, limits), (_, got) in zip(jobs(5), answers, strict=True):
        assert same(got, prepare(datas, spec, limits))
