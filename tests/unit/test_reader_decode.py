"""Greedy CTC decoding of the string reader's output (digitops.infer.reader.decode): characters, their
columns and confidences, from hand-made probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from digitops.infer.reader import WIDTH_STEP, decode
from digitops.strings import ALPHABET, BLANK


def steps(*labels: str, sure: float = 0.9) -> np.ndarray:
    """One step per label ('_' is the blank): that class at `sure`, the rest shared evenly."""
    probabilities = np.full((len(labels), len(ALPHABET) + 1), (1 - sure) / len(ALPHABET), np.float32)
    for step, label in enumerate(labels):
        probabilities[step, BLANK if label == "_" else ALPHABET.index(label) + 1] = sure
    return probabilities


def test_repeats_merge_blanks_part_them_and_columns_follow_the_steps():
    line = decode(steps("_", "3", "3", "_", "3", "_", ".", "_"))
    assert [c.char for c in line.chars] == ["3", "3", "."]
    assert [c.columns for c in line.chars] == [
        (1 * WIDTH_STEP, 3 * WIDTH_STEP),
        (4 * WIDTH_STEP, 5 * WIDTH_STEP),
        (6 * WIDTH_STEP, 7 * WIDTH_STEP),
    ]


def test_a_character_takes_its_surest_step_and_the_line_counts_its_gaps():
    probabilities = steps("_", "7", "7", "_", "1", "_")
    probabilities[2, ALPHABET.index("7") + 1] = 0.99  # the 7's second step is surer
    probabilities[3, BLANK] = 0.6  # the gap between 7 and 1 is unsure: a character may hide there
    line = decode(probabilities)
    assert [c.confidence for c in line.chars] == pytest.approx([0.99, 0.9])
    assert line.confidence == pytest.approx(0.99 * 0.9 * 0.9 * 0.6 * 0.9)


def test_a_character_carries_the_ten_digits_probabilities_where_it_was_surest():
    probabilities = steps("_", "4", "4", "_")
    probabilities[1, ALPHABET.index("9") + 1] = 0.09  # at its first step a 9 is possible too
    probabilities[2, ALPHABET.index("4") + 1] = 0.95  # its second step is surer
    line = decode(probabilities)
    digits = line.chars[0].digits
    assert len(digits) == 10 and sum(digits) == pytest.approx(1.0)
    assert max(range(10), key=digits.__getitem__) == 4
    assert digits[9] < 0.02  # taken where the 4 was surest (the second step), not the first


def test_only_blanks_read_as_nothing_with_no_confidence():
    line = decode(steps("_", "_", "_"))
    assert line.chars == [] and line.confidence == 0.0
