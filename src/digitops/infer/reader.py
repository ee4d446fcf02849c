"""Run the string reader (digitops.reader) with ONNX Runtime: lines of pixels -> characters with positions.

The reader says, for every `WIDTH_STEP` columns of a line, how likely each character or none (CTC's blank)
is. Greedy decoding takes the likeliest per step, merges repeats and drops blanks; a character's columns
are the steps that said it, and its confidence the highest probability it got there. A line's confidence
also counts the chance that no character hides where the reader saw a gap: the least sure blank of each
gap. No TensorFlow here: the service and the container run this.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitops.infer.classifier import CPU, ModelFileError, open_session
from digitops.strings import ALPHABET, BLANK, READER_HEIGHT

logger = logging.getLogger(__name__)
READER_FILE = "reader.onnx"  # beside the classifier's model.onnx in our BentoML model
WIDTH_STEP = 4  # input columns per output step: digitops.reader.build_reader pools the width by this


@dataclass(frozen=True)
class ReadChar:
    """One character of a line: what it is, how sure the reader is, and its columns in the line's pixels."""

    char: str
    confidence: float
    columns: tuple[int, int]  # [start, end) in the line's pixels: the steps that said it (narrower than it)
    digits: tuple[float, ...]  # the ten digits' probabilities where it was surest, summing to 1


@dataclass(frozen=True)
class ReadLine:
    chars: list[ReadChar]
    confidence: float  # every character right and none missed: their confidences times the gaps' blanks


class Reader:
    """Lines (READER_HEIGHT, w) uint8, ink bright on black (`digitops.strings.to_line_height`) -> `ReadLine`s.

    Raises:
        ModelFileError: the file is missing, not ONNX, or not a reader (its input is not (B, 32, W) uint8).
    """

    def __init__(
        self,
        model_path: Path,
        threads: int | None = None,
        providers: Sequence[str] = (CPU,),
        optimization: str = "all",
    ) -> None:
        self.session, _ = open_session(model_path, threads, providers, optimization)
        source, result = self.session.get_inputs()[0], self.session.get_outputs()[0]
        if source.type != "tensor(uint8)" or len(source.shape) != 3 or source.shape[1] != READER_HEIGHT:
            raise ModelFileError(
                f"{model_path}: its input is {source.type} {source.shape}, "
                f"not (B, {READER_HEIGHT}, W) uint8 lines"
            )
        if result.shape[-1] != len(ALPHABET) + 1:
            raise ModelFileError(
                f"{model_path}: its output has {result.shape[-1]} classes, not {len(ALPHABET) + 1}"
            )
        self._input, self._output = source.name, result.name

    def __call__(self, lines: Sequence[np.ndarray]) -> list[ReadLine]:
        """Read lines of any widths in one call (each padded with black to the widest)."""
        if not lines:
            return []
        width = -(-max(line.shape[1] for line in lines) // WIDTH_STEP) * WIDTH_STEP
        batch = np.zeros((len(lines), READER_HEIGHT, width), np.uint8)
        for row, line in enumerate(lines):
            if line.shape[0] != READER_HEIGHT or line.dtype != np.uint8:
                raise ValueError(f"expected ({READER_HEIGHT}, w) uint8 lines, got {line.shape} {line.dtype}")
            batch[row, :, : line.shape[1]] = line
        probabilities = self.session.run([self._output], {self._input: batch})[0]  # (B, T, classes)
        return [
            decode(line_probabilities[: -(-line.shape[1] // WIDTH_STEP)])
            for line, line_probabilities in zip(lines, probabilities, strict=True)
        ]

    def warm_up(self) -> None:
        self([np.zeros((READER_HEIGHT, 128), np.uint8)])


def decode(probabilities: np.ndarray) -> ReadLine:
    """Greedy CTC decoding of one line's (T, classes) probabilities, with positions and confidences."""
    best = probabilities.argmax(axis=1)  # (T,)
    chars: list[ReadChar] = []
    gaps = []  # the least sure blank of each run of blanks
    step = 0
    while step < len(best):
        label = int(best[step])
        end = step + 1
        while end < len(best) and best[end] == label:
            end += 1
        if label == BLANK:
            gaps.append(float(probabilities[step:end, BLANK].min()))
        else:
            peak = step + int(probabilities[step:end, label].argmax())
            digits = probabilities[peak, 1:11] / max(float(probabilities[peak, 1:11].sum()), 1e-12)
            chars.append(
                ReadChar(
                    ALPHABET[label - 1],
                    float(probabilities[peak, label]),
                    (step * WIDTH_STEP, end * WIDTH_STEP),
                    tuple(float(p) for p in digits),
                )
            )
        step = end
    confidence = float(np.prod([c.confidence for c in chars]) * np.prod(gaps)) if chars else 0.0
    return ReadLine(chars=chars, confidence=confidence)


def optional_reader(folder: Path, threads: int | None = None, optimization: str = "all") -> Reader | None:
    """The reader packaged in a model folder, or None when the folder has none (a model packaged before
    readers existed: /read then classifies the digits it finds)."""
    if not (folder / READER_FILE).is_file():
        logger.info("no %s in %s: /read classifies the digits segmentation finds", READER_FILE, folder)
        return None
    return Reader(folder / READER_FILE, threads, optimization=optimization)


def load_reader(folder_or_file: Path, threads: int | None = None, optimization: str = "all") -> Reader:
    """A reader from an `.onnx` file or a folder holding `reader.onnx`."""
    path = Path(folder_or_file)
    if path.is_dir():
        path = path / READER_FILE
        if not path.is_file():
            raise ModelFileError(f"no {READER_FILE} in {path.parent}")
    return Reader(path, threads, optimization=optimization)
