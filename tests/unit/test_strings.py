"""Composed lines for the string reader (digitops.strings): deterministic, well-formed, and labelled with
what they show."""

from __future__ import annotations

import numpy as np
import pytest

from digitops import strings
from digitops.strings import (
    ALPHABET,
    BLANK,
    MAX_LABEL,
    MAX_READER_WIDTH,
    READER_HEIGHT,
    compose_lines,
    digit_pool,
    encode,
    line_pixels,
)
from tests.fakes import random_digits


def digits_of(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return random_digits(count, seed), np.arange(count) % 10


@pytest.fixture(scope="module")
def pool():
    images, labels = digits_of(300, seed=3)
    sources = np.where(np.arange(300) % 3 == 0, "usps", "mnist")
    return digit_pool(images, labels, sources)


def test_lines_are_the_same_for_the_same_seed_and_differ_for_another(pool):
    first, again, other = (compose_lines(pool, 20, seed=seed) for seed in (5, 5, 6))
    assert np.array_equal(first.images, again.images) and np.array_equal(first.labels, again.labels)
    assert list(first.sources) == list(again.sources) and set(first.sources) <= {"mnist", "usps"}
    assert not np.array_equal(first.images, other.images)


def test_lines_have_the_reader_shape_and_valid_labels(pool):
    lines = compose_lines(pool, 200, seed=1)
    images, labels = lines.images, lines.labels
    assert lines.sources.shape == (200,)
    assert images.shape == (200, READER_HEIGHT, MAX_READER_WIDTH) and images.dtype == np.uint8
    assert labels.shape == (200, MAX_LABEL)
    assert labels.min() >= BLANK and labels.max() <= len(ALPHABET)
    for row in labels:  # the text first, then only padding
        length = int((row != BLANK).sum())
        assert (row[:length] != BLANK).all() and (row[length:] == BLANK).all()
    texts = ["".join(ALPHABET[c - 1] for c in row if c) for row in labels]
    assert any(any(mark in text for mark in ".,-=/") for text in texts)  # separators are written
    assert all(text == "" or any(c.isdigit() for c in text) for text in texts)
    for image, text in zip(images, texts, strict=True):
        if any(c.isdigit() for c in text):  # a line with digits shows ink
            assert (image > 0).sum() > 20


def test_a_pool_uses_only_sources_with_every_digit():
    images, labels = digits_of(110, seed=0)
    sources = np.array(["mnist"] * 100 + ["partial"] * 10)
    labels[100:] = 7  # 'partial' has only 7s
    pool = digit_pool(images, labels, sources)
    assert list(pool.by_source) == ["mnist"] and pool.weights.tolist() == [1.0]
    assert all(len(indices) == 10 for indices in pool.by_source["mnist"])


def test_a_pool_without_a_complete_source_is_refused():
    images, labels = digits_of(50, seed=0)
    keep = labels != 4
    with pytest.raises(ValueError, match="every digit"):
        digit_pool(images[keep], labels[keep], np.array(["mnist"] * int(keep.sum())))


def test_encode_rejects_what_the_reader_does_not_know():
    assert encode("10.-") == [2, 1, 11, 13]
    with pytest.raises(ValueError, match="cannot encode"):
        encode("12a")


def test_line_pixels_drop_the_paper_and_scale_the_ink_to_its_strength():
    darkness = np.array([[0.05, 0.1, 0.3, 0.3], [0.3, 0.3, 0.3, 0.6]], np.float32)
    pixels = line_pixels(darkness, 0.12)
    assert pixels[0, 0] == 0 and pixels[0, 1] == 0  # under the floor: paper
    assert pixels.max() == 1.0 and 0.3 < pixels[0, 2] < 1.0
    assert np.array_equal(line_pixels(np.full((3, 3), 0.05, np.float32), 0.12), np.zeros((3, 3)))


def test_a_comb_field_gives_each_character_its_own_box_of_one_width(pool, monkeypatch):
    """Written in a comb field, characters sit one per box, in order, and boxes may be left empty."""
    drawn = []  # (char_boxes, comb) of each line drawn
    printed = strings._printed

    def recording(shape, writing_box, height, char_boxes, comb, rng):
        drawn.append((char_boxes, comb))
        return printed(shape, writing_box, height, char_boxes, comb, rng)

    monkeypatch.setattr(strings, "COMB_SHARE", 1.0)
    monkeypatch.setattr(strings, "_printed", recording)
    compose_lines(pool, 60, seed=2)
    written = [(boxes, comb) for boxes, comb in drawn if comb is not None and len(boxes) >= 2]
    assert len(written) > 20 and all(comb is not None for _, comb in drawn)
    empty_after = 0
    for boxes, comb in written:
        sides = np.asarray(comb.sides)
        assert np.allclose(np.diff(sides), comb.pitch)  # boxes of one width, side by side
        centres = [(box[0] + box[2]) / 2 for box in boxes]
        cells = np.searchsorted(sides, centres) - 1  # the box each character's middle lies in
        assert (np.diff(cells) >= 1).all()  # one character per box, left to right
        empty_after += sides[-1] - max(box[2] for box in boxes) > comb.pitch
    assert 0 < empty_after < len(written)  # some fields keep empty boxes after the writing
