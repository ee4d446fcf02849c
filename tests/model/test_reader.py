"""The string reader end to end on small data: trained by Keras with CTC, exported to ONNX and run by ONNX
Runtime as the service runs it, then registered and gated in a real MLflow registry."""

from __future__ import annotations

import keras
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from digitops.calibration import temper
from digitops.infer.classifier import ModelFileError
from digitops.infer.reader import WIDTH_STEP, Reader, load_reader, optional_reader
from digitops.reader import (
    CLASSES,
    build_reader,
    calibrate_reader,
    export_reader_onnx,
    fit_line_temperature,
    line_confidences,
    score_lines,
    train_reader,
)
from digitops.reader_registry import (
    LineScores,
    champion_reader,
    kept_test_lines,
    log_reader,
    log_test_lines,
    register_and_gate,
)
from digitops.strings import BLANK, compose_lines, digit_pool
from digitops.tracking import configure
from tests.fakes import random_digits, single_digit_onnx

pytestmark = pytest.mark.slow  # trains a small reader for a few seconds


@pytest.fixture(scope="module")
def lines():
    images = random_digits(200, seed=4)
    labels = np.arange(200) % 10
    pool = digit_pool(images, labels, np.repeat(["mnist", "usps"], 100))
    return compose_lines(pool, 300, seed=1), compose_lines(pool, 40, seed=2)


@pytest.fixture(scope="module")
def exported(lines, tmp_path_factory):
    train, val = lines
    epochs_seen = []
    model = train_reader(
        train,
        val,
        epochs=2,
        batch_size=32,
        learning_rate=0.002,
        seed=0,
        on_epoch=lambda epoch, loss, accuracy: epochs_seen.append((epoch, loss, accuracy)),
    )
    path = export_reader_onnx(model, tmp_path_factory.mktemp("reader") / "reader.onnx")
    return model, path, epochs_seen


def test_training_reports_each_epoch_and_lowers_the_loss(exported):
    _, _, epochs_seen = exported
    assert [epoch for epoch, _, _ in epochs_seen] == [0, 1]
    assert epochs_seen[1][1] < epochs_seen[0][1]
    assert all(0.0 <= accuracy <= 1.0 for _, _, accuracy in epochs_seen)


def test_the_onnx_reader_matches_keras_at_any_width(exported, lines):
    model, path, _ = exported
    reader = Reader(path)
    images = lines[1].images[:4]
    expected = model.predict(images, verbose=0)  # (4, 64, classes)
    got = reader.session.run(None, {"line": images})[0]
    assert np.abs(got - expected).max() < 1e-4
    short, wide = images[0][:, :100], np.pad(images[1], ((0, 0), (0, 150)))
    readings = reader([short, wide])  # one call, padded to the wider
    assert len(readings) == 2
    assert all(c.columns[1] <= -(-100 // WIDTH_STEP) * WIDTH_STEP for c in readings[0].chars)


def test_the_reader_is_sized_by_its_filters_and_refuses_a_wrong_count():
    small, large = build_reader(), build_reader(filters=(32, 64, 128, 128, 192), context_filters=256)
    assert large.count_params() > 3 * small.count_params()
    assert large.output_shape == small.output_shape == (None, None, CLASSES)
    with pytest.raises(ValueError, match="5 convolutions' channels"):
        build_reader(filters=(16, 32))


def test_calibration_tempers_every_step_and_leaves_the_readings(exported, lines):
    model, _, _ = exported
    calibrated = build_reader()
    calibrated.set_weights(model.get_weights())  # the fixture's model stays as trained
    images = lines[1].images
    before = model.predict(images, verbose=0)
    report = calibrate_reader(calibrated, lines[1], batch_size=32)
    after = calibrated.predict(images, verbose=0)
    assert (after.argmax(axis=2) == before.argmax(axis=2)).all()
    expected = np.stack([temper(line, report["temperature"]) for line in before])
    assert np.abs(after - expected).max() < 1e-4
    assert report["val_nll_after"] <= report["val_nll_before"] + 1e-9


def test_an_overconfident_reader_gets_a_temperature_above_one_that_matches_its_accuracy():
    # one character per line, said with 0.99 on one step between blanks; only every other line is right
    step = np.full(CLASSES, 0.01 / (CLASSES - 1))
    step[3] = 0.99
    blank = np.full(CLASSES, 0.001 / (CLASSES - 1))
    blank[BLANK] = 0.999
    line = np.stack([blank, step, blank])
    right = np.arange(200) % 2 == 0
    temperature = fit_line_temperature([line] * 200, right)
    assert temperature > 1.0
    assert abs(line_confidences([line], temperature)[0] - 0.5) < 0.05
    with pytest.raises(ValueError, match="need as many"):
        fit_line_temperature([line], right)


def test_a_reader_refuses_a_classifier_a_folder_without_one_and_lines_of_another_height(exported, tmp_path):
    _, path, _ = exported
    with pytest.raises(ModelFileError, match=r"not \(B, 32, W\) uint8 lines"):
        Reader(single_digit_onnx(tmp_path / "digit.onnx", 3))
    with pytest.raises(ModelFileError, match=r"no reader\.onnx"):
        load_reader(tmp_path)
    assert optional_reader(tmp_path) is None
    with pytest.raises(ValueError, match="uint8 lines"):
        Reader(path)([np.zeros((28, 50), np.uint8)])


def test_scores_count_whole_lines_digits_and_characters(exported, lines):
    _, path, _ = exported
    figures = score_lines(Reader(path), lines[1])
    assert figures["lines"] == 40
    assert 0.0 <= figures["line_accuracy"] <= figures["digit_line_accuracy"] <= 1.0
    assert figures["character_error_rate"] >= 0.0
    assert set(figures["sources"]) == {"mnist", "usps"}


def test_the_gate_promotes_the_first_reader_and_never_a_worse_one(exported, tmp_path, monkeypatch):
    _, path, _ = exported
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    configure("reader-tests", tmp_path)
    with mlflow.start_run():
        uri = log_reader(path)  # one logged model, registered once per candidate below
    own = "the candidate's test lines"
    candidates = [
        (0.20, None, []),
        (0.50, None, []),
        (0.40, "2", [LineScores(own, 0.40, 0.50)]),
        (0.60, "2", [LineScores(own, 0.60, 0.50)]),
        # better on the lines composed for it, worse on those the champion was judged on
        (0.70, "4", [LineScores(own, 0.70, 0.60), LineScores("version 4's test lines", 0.55, 0.60)]),
        (0.70, "4", [LineScores(own, 0.70, 0.60), LineScores("version 4's test lines", 0.65, 0.60)]),
    ]
    decisions = [
        register_and_gate(uri, "readers", accuracy, champion, scores, min_improvement=0.0, floor=0.3)
        for accuracy, champion, scores in candidates
    ]
    assert [(d.version, d.promoted) for d in decisions] == [
        ("1", False),
        ("2", True),
        ("3", False),
        ("4", True),
        ("5", False),
        ("6", True),
    ]
    assert "below the floor" in decisions[0].reason and "does not read" in decisions[2].reason
    assert "version 4's test lines: 0.5500 against 0.6000" in decisions[4].reason
    assert own not in decisions[4].reason  # the reason names the set it fell short on
    assert str(MlflowClient().get_model_version_by_alias("readers", "champion").version) == "6"
    champion = champion_reader("readers", tmp_path / "download")
    assert champion.version == "6" and Reader(champion.model).session is not None
    assert kept_test_lines(champion.run_id, tmp_path / "lines") is None  # its run kept none
    assert champion_reader("no-such-readers", tmp_path / "none") is None
    keras.backend.clear_session()


def test_the_champion_comes_with_the_test_lines_its_run_kept(exported, lines, tmp_path, monkeypatch):
    _, path, _ = exported
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    configure("reader-lines", tmp_path)
    test = lines[1]
    with mlflow.start_run():
        uri = log_reader(path)
        log_test_lines(test)
    register_and_gate(uri, "kept-readers", 0.9, None, [], min_improvement=0.0, floor=0.0)
    kept = kept_test_lines(champion_reader("kept-readers", tmp_path / "download").run_id, tmp_path / "lines")
    assert np.array_equal(kept.images, test.images) and np.array_equal(kept.labels, test.labels)
    assert list(kept.sources) == list(test.sources)
