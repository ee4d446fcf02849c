"""The string reader: a small convolutional network trained with CTC on composed lines (digitops.strings).

Segmentation cuts a photo into digits and classifies each; it fails where the cut is the hard part: touching
and overlapping digits, separators that look like a '1', strokes broken by a light pen, lines through the
writing. The reader takes the whole line instead: it slides over the line's band and says, every 4 columns,
which character (or none) is there; CTC (Graves et al., 2006) trains that from the line's text alone, with
no position for any character. `digitops.infer.reader` runs the exported model with ONNX Runtime.

The network (CRNN without the recurrent part, which CPU serving pays for and short digit strings do not
need): convolutions and pooling bring the band from 32 px high to one row of features per 4 columns, then
1-D convolutions give each column the context of about a digit on either side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from scipy.optimize import minimize_scalar

from digitops.calibration import TEMPERATURE_BOUNDS, temper
from digitops.evaluate import calibration_error
from digitops.infer.reader import ReadLine, decode
from digitops.io import atomic_path
from digitops.strings import ALPHABET, BLANK, READER_HEIGHT, ComposedLines, edit_distance, texts_of

CLASSES = len(ALPHABET) + 1  # the characters and CTC's blank
SCORE_BATCH = 256  # lines read per call when scoring
LOGITS_LAYER = "logits"  # the Dense layer before the softmax: calibration divides its weights
CALIBRATION_BINS = 10  # confidence bins of the line confidence's calibration error
_SURE = 1e-7  # a line confidence is kept this far from 0 and 1 in the log-likelihood
WIDTH_BUCKET = 32  # px: a training batch's width is a multiple of this (few distinct shapes to trace)
_POOLS = ((2, 2), (2, 2), None, (2, 1), (2, 1))  # after each convolution: 32 px high to 2 rows, W to W/4
SMALL_FILTERS = (16, 32, 64, 64, 96)
SMALL_CONTEXT_FILTERS = 128


def build_reader(
    width: int | None = None,
    dropout: float = 0.2,
    filters: Sequence[int] = SMALL_FILTERS,
    context_filters: int = SMALL_CONTEXT_FILTERS,
) -> keras.Model:
    """(B, READER_HEIGHT, W) uint8 lines, ink bright on black -> (B, W / 4, CLASSES) softmax
    (`digitops.infer.reader.WIDTH_STEP` is the 4).

    `filters`: the channels of the five 3x3 convolutions, `context_filters` those of the two 1-D ones; the
    defaults are a small reader for tests, params.yaml's `reader` section sets the served one.
    """
    if len(filters) != len(_POOLS):
        raise ValueError(f"filters: {len(_POOLS)} convolutions' channels, got {list(filters)}")
    inputs = keras.Input((READER_HEIGHT, width), dtype="uint8", name="line")
    x = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    x = keras.layers.Reshape((READER_HEIGHT, -1, 1))(x)
    for channels, pool in zip(filters, _POOLS, strict=True):
        x = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        if pool:
            x = keras.layers.MaxPooling2D(pool)(x)
    # (B, 2, W/4, C): the two remaining rows become the features of each step
    x = keras.layers.Permute((2, 1, 3))(x)
    x = keras.layers.Reshape((-1, 2 * filters[-1]))(x)
    for dilation in (1, 2):
        x = keras.layers.Conv1D(
            context_filters, 3, padding="same", dilation_rate=dilation, activation="relu"
        )(x)
        x = keras.layers.Dropout(dropout)(x)
    logits = keras.layers.Dense(CLASSES, name=LOGITS_LAYER)(x)
    probabilities = keras.layers.Softmax(name="probabilities")(logits)
    return keras.Model(inputs, probabilities, name="reader")


def ctc_loss(labels, probabilities):
    """CTC over every output step; `labels` (B, L) int, padded with BLANK."""
    labels = keras.ops.cast(labels, "int32")
    label_lengths = keras.ops.sum(keras.ops.cast(labels != BLANK, "int32"), axis=1)
    steps = keras.ops.shape(probabilities)[1]
    step_lengths = keras.ops.full((keras.ops.shape(probabilities)[0],), steps, dtype="int32")
    log_probabilities = keras.ops.log(keras.ops.clip(probabilities, 1e-7, 1.0))
    return keras.ops.ctc_loss(labels, log_probabilities, label_lengths, step_lengths, mask_index=BLANK)


def train_reader(
    train: ComposedLines,
    val: ComposedLines,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    filters: Sequence[int] = SMALL_FILTERS,
    context_filters: int = SMALL_CONTEXT_FILTERS,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> keras.Model:
    """Train a reader on composed lines.

    `filters` and `context_filters` size the network (`build_reader`). Adam with a cosine decay over all
    epochs; after each epoch the validation lines are read and `on_epoch(epoch, loss, val_line_accuracy)`
    is called (e.g. to log to MLflow).
    """
    keras.utils.set_random_seed(seed)
    model = build_reader(filters=filters, context_filters=context_filters)
    batches, count = line_batches(train.images, train.labels, batch_size, seed)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=epochs * count)
    model.compile(optimizer=keras.optimizers.Adam(schedule, clipnorm=5.0), loss=ctc_loss)
    for epoch in range(epochs):
        fitted = model.fit(batches, epochs=1, steps_per_epoch=count, verbose=2)
        if on_epoch:
            probabilities = model.predict(val.images, batch_size=batch_size, verbose=0)
            _, right = _read_whole(probabilities, val.labels)
            on_epoch(epoch, float(fitted.history["loss"][-1]), float(right.mean()))
    return model


def calibrate_reader(model: keras.Model, val: ComposedLines, batch_size: int) -> dict[str, float]:
    """Make a line's confidence the chance that it is read right, and apply that to `model`, in place.

    Temperature scaling (digitops.calibration) for a line: one T divides the logits of every step, T is
    fitted so that the line confidences `decode` gives match whether the validation lines were read whole
    and right (`fit_line_temperature`), and the logits layer's weights are divided by T, so the exported
    ONNX file carries it. Readings stay as they were: T never changes a step's likeliest character.

    Returns:
        {"temperature", "val_nll_before", "val_nll_after", "val_ece_before", "val_ece_after"}: the
        validation lines' negative log-likelihood and calibration error of their confidences.
    """
    probabilities = model.predict(val.images, batch_size=batch_size, verbose=0)  # (N, steps, CLASSES)
    read, right = _read_whole(probabilities, val.labels)
    temperature = fit_line_temperature(probabilities, right)
    before = np.array([line.confidence for line in read])
    after = line_confidences(probabilities, temperature)
    layer = model.get_layer(LOGITS_LAYER)
    layer.set_weights([weight / temperature for weight in layer.get_weights()])
    return {
        "temperature": temperature,
        "val_nll_before": _binary_nll(before, right),
        "val_nll_after": _binary_nll(after, right),
        "val_ece_before": calibration_error(before, right, CALIBRATION_BINS),
        "val_ece_after": calibration_error(after, right, CALIBRATION_BINS),
    }


def fit_line_temperature(probabilities: Sequence[np.ndarray], right: np.ndarray) -> float:
    """The T in TEMPERATURE_BOUNDS whose line confidences best predict `right` (least log-likelihood).

    Args:
        probabilities: per line, (steps, CLASSES) of the uncalibrated reader.
        right: (N,) bool, whether each line was read whole and right (T does not change that).
    """
    right = np.asarray(right, bool)
    if len(probabilities) != len(right) or not len(right):
        raise ValueError(f"{len(probabilities)} lines and {len(right)} verdicts: need as many, at least one")

    def nll(log_t: float) -> float:
        return _binary_nll(line_confidences(probabilities, float(np.exp(log_t))), right)

    low, high = np.log(TEMPERATURE_BOUNDS)
    result = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-3})
    return float(np.exp(result.x))


def line_confidences(probabilities: Sequence[np.ndarray], temperature: float) -> np.ndarray:
    """(N,) the confidence `decode` gives each line once its steps' logits are divided by `temperature`."""
    return np.array([decode(temper(line, temperature)).confidence for line in probabilities])


def _read_whole(probabilities: np.ndarray, labels: np.ndarray) -> tuple[list[ReadLine], np.ndarray]:
    """Lines' (N, steps, CLASSES) probabilities decoded, and whether each reads its text (`labels`, as
    `texts_of` takes them) whole and right: (N,) bool."""
    read = [decode(line) for line in probabilities]
    right = np.array([_text(line) == want for line, want in zip(read, texts_of(labels), strict=True)])
    return read, right


def _text(line: ReadLine) -> str:
    return "".join(c.char for c in line.chars)


def _binary_nll(confidence: np.ndarray, right: np.ndarray) -> float:
    sure = np.clip(confidence, _SURE, 1 - _SURE)
    return float(-np.mean(np.where(right, np.log(sure), np.log1p(-sure))))


def line_batches(
    images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int
) -> tuple[tf.data.Dataset, int]:
    """Batches of lines of similar width, each cut to its widest line (rounded up to `WIDTH_BUCKET`), in a
    new order on every pass; and how many there are.

    Most composed lines are half the training width: a batch padded to the full width would spend half its
    time on blank paper. The batches' width varies, so the dataset declares it unknown (one traced step).
    """
    widths = ink_widths(images)
    order = np.argsort(widths, kind="stable")
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    cuts = [int(-(-max(int(widths[rows].max()), 1) // WIDTH_BUCKET) * WIDTH_BUCKET) for rows in batches]
    rng = np.random.default_rng(seed)

    def generate():
        for batch in rng.permutation(len(batches)):
            rows = batches[batch]
            yield images[rows, :, : cuts[batch]], labels[rows]

    signature = (
        tf.TensorSpec((None, READER_HEIGHT, None), tf.uint8),
        tf.TensorSpec((None, labels.shape[1]), tf.int32),
    )
    return tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2), len(batches)


def ink_widths(images: np.ndarray) -> np.ndarray:
    """(N, H, W) lines padded with black on the right -> (N,) the columns up to the last ink."""
    inked = images.max(axis=1) > 0  # (N, W)
    return np.where(inked.any(axis=1), images.shape[2] - np.argmax(inked[:, ::-1], axis=1), 0)


def score_lines(read: Callable[[list[np.ndarray]], list[ReadLine]], lines: ComposedLines) -> dict:
    """How well `read` (e.g. a `digitops.infer.reader.Reader`) reads composed lines.

    Returns:
        line_accuracy (the whole line right, separators included), digit_line_accuracy (its digits right,
        what /read's `text` holds), character_error_rate (edit distance over the true length, summed over
        lines), and per source the line accuracy; all over the lines given.
    """
    truths = texts_of(lines.labels)
    texts = []
    for start in range(0, len(truths), SCORE_BATCH):
        batch = [np.ascontiguousarray(image) for image in lines.images[start : start + SCORE_BATCH]]
        texts.extend(_text(line) for line in read(batch))
    right = np.array([got == want for got, want in zip(texts, truths, strict=True)])
    digits_only = [(_digits(got), _digits(want)) for got, want in zip(texts, truths, strict=True)]
    edits = sum(edit_distance(want, got) for got, want in zip(texts, truths, strict=True))
    return {
        "lines": len(truths),
        "line_accuracy": round(float(right.mean()), 4),
        "digit_line_accuracy": round(float(np.mean([got == want for got, want in digits_only])), 4),
        "character_error_rate": round(edits / max(1, sum(map(len, truths))), 4),
        "sources": {
            name: round(float(right[lines.sources == name].mean()), 4) for name in sorted(set(lines.sources))
        },
    }


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def export_reader_onnx(model: keras.Model, path: Path) -> Path:
    """Write the reader as ONNX, atomically: (B, READER_HEIGHT, W) uint8 lines of any width."""
    signature = [keras.InputSpec(shape=(None, READER_HEIGHT, None), dtype="uint8", name="line")]
    with atomic_path(path) as tmp_path:
        model.export(str(tmp_path), format="onnx", verbose=False, input_signature=signature)
    return path
