"""`digitops predict` through a real model (small_cnn, one epoch on 2,000 MNIST digits, a few seconds,
exported to ONNX as the train stage does): its rows must be the model's own answers on the same pixels
after the service's normaliser."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from PIL import Image

from digitops.cli import EXIT_ERROR, EXIT_OK, main
from digitops.data.idx import read_idx_digits
from digitops.export import export_onnx
from digitops.infer.classifier import load_classifier
from digitops.infer.inputs import digit_from_image, png_bytes
from digitops.models import build_model
from digitops.preprocess import normalize_digits
from tests.fakes import REPO_ROOT, write_kaggle_csv

ROWS = 1100  # more than one CSV chunk and one model batch (1,024 each)


@pytest.fixture(scope="module")
def mnist_test(mirror) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx_digits(
        mirror / "mnist/t10k-images-idx3-ubyte.gz", mirror / "mnist/t10k-labels-idx1-ubyte.gz"
    )
    return images[:ROWS], labels[:ROWS]


@pytest.fixture(scope="module")
def model_file(mirror, tmp_path_factory) -> Path:
    images, labels = read_idx_digits(
        mirror / "mnist/train-images-idx3-ubyte.gz", mirror / "mnist/train-labels-idx1-ubyte.gz"
    )
    keras.utils.set_random_seed(0)
    model = build_model("small_cnn")
    model.compile(optimizer=keras.optimizers.Adam(0.005), loss="sparse_categorical_crossentropy")
    model.fit(images[:2000], labels[:2000], epochs=1, batch_size=64, verbose=0)
    return export_onnx(model, tmp_path_factory.mktemp("model") / "digits.onnx")


@pytest.fixture(scope="module")
def classifier(model_file):
    return load_classifier(model_file)


def _read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def test_a_kaggle_csv_gets_the_submission_of_the_models_own_answers(
    mnist_test, classifier, model_file, tmp_path, capsys
):
    images, labels = mnist_test
    expected = classifier(normalize_digits(images)).argmax(axis=1)  # (ROWS,)
    assert np.mean(expected == labels) > 0.7  # a model that reads digits: the comparison means something
    for name, with_labels in [("train.csv", labels), ("test.csv", None)]:
        table = write_kaggle_csv(tmp_path / name, images, with_labels)
        out = tmp_path / f"submission-{name}"
        command = ["predict", str(table), "--model-file", str(model_file), "--out", str(out)]
        assert main(command) == EXIT_OK
        rows = _read_rows(out)
        assert rows[0] == ["ImageId", "Label"]
        assert rows[1:] == [[str(index + 1), str(digit)] for index, digit in enumerate(expected)]
        summary = capsys.readouterr().err
        assert f"{ROWS:,} digits predicted" in summary
        if with_labels is not None:
            assert f"accuracy {np.mean(expected == labels):.2%} on the {ROWS:,} labelled digits" in summary


def test_a_folder_gives_one_row_per_image_and_bad_files_are_reported_and_skipped(
    mnist_test, classifier, model_file, tmp_path, capsys
):
    images, _ = mnist_test
    folder = tmp_path / "scans"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(images[0]).save(folder / "a.png")
    Image.fromarray(images[1]).save(folder / "sub" / "b.png")
    # a scan: dark ink on light paper, larger, RGB, JPEG
    Image.fromarray(255 - images[2]).resize((112, 112)).convert("RGB").save(folder / "c.jpg", quality=95)
    Image.new("L", (40, 40), 255).save(folder / "blank.png")
    (folder / "bad.png").write_bytes(b"this is not a picture")
    (folder / "notes.txt").write_text("three digits")
    good = [folder / "a.png", folder / "c.jpg", folder / "sub" / "b.png"]  # sorted by path
    probabilities = classifier(np.stack([digit_from_image(Image.open(path)) for path in good]))

    out = tmp_path / "predictions.csv"
    assert main(["predict", str(folder), "--model-file", str(model_file), "--out", str(out)]) == EXIT_OK
    rows = _read_rows(out)
    assert rows[0] == ["path", "digit", "confidence", "label"]
    assert [row[0] for row in rows[1:]] == [str(path) for path in good]
    assert [int(row[1]) for row in rows[1:]] == probabilities.argmax(axis=1).tolist()
    np.testing.assert_allclose([float(row[2]) for row in rows[1:]], probabilities.max(axis=1), atol=1e-6)
    assert [row[3] for row in rows[1:]] == ["", "", ""]
    err = capsys.readouterr().err
    assert f"skipped {folder / 'bad.png'}: not an image" in err
    assert f"skipped {folder / 'blank.png'}: the image is blank" in err
    assert "3 digits predicted" in err
    assert "2 skipped" in err
    assert "1 file without an image extension ignored" in err

    # --strict: the first bad file ends the run, and the output file keeps its previous content
    out.write_text("previous\n")
    command = ["predict", str(folder), "--model-file", str(model_file), "--out", str(out), "--strict"]
    assert main(command) == EXIT_ERROR
    assert f"{folder / 'bad.png'}: not an image" in capsys.readouterr().err
    assert out.read_text() == "previous\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["predictions.csv", "scans"]  # no temp file


def test_csv_rows_and_images_together_give_the_table_with_labels(
    mnist_test, classifier, model_file, tmp_path, capsys
):
    images, labels = mnist_test
    table = write_kaggle_csv(tmp_path / "train.csv", images[:5], labels[:5])
    image = tmp_path / "seven.png"
    image.write_bytes(png_bytes(images[5]))
    expected = classifier(normalize_digits(images[:6])).argmax(axis=1)
    assert main(["predict", str(table), str(image), "--model-file", str(model_file), "-q"]) == EXIT_OK
    captured = capsys.readouterr()
    rows = list(csv.reader(io.StringIO(captured.out)))  # no --out: stdout
    assert rows[0] == ["path", "digit", "confidence", "label"]
    assert [(row[0], int(row[1]), row[3]) for row in rows[1:]] == [
        *[(f"{table}#{index + 1}", int(expected[index]), str(labels[index])) for index in range(5)],
        (str(image), int(expected[5]), ""),
    ]
    assert captured.err == ""  # --quiet: no summary


def test_a_malformed_row_stops_the_run_naming_file_and_row_and_leaves_the_output_alone(
    mnist_test, model_file, tmp_path, capsys
):
    images, _ = mnist_test
    pixels = images.reshape(len(images), -1).astype(np.int64)
    pixels[1049, 300] = 256  # row 1050, in the second chunk
    table = tmp_path / "test.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"pixel{index}" for index in range(784)])
        writer.writerows(pixels.tolist())
    out = tmp_path / "submission.csv"
    out.write_text("ImageId,Label\n1,7\n")
    assert main(["predict", str(table), "--model-file", str(model_file), "--out", str(out)]) == EXIT_ERROR
    assert f"error: {table}: row 1050: column pixel300 is 256, outside 0-255" in capsys.readouterr().err
    assert out.read_text() == "ImageId,Label\n1,7\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["submission.csv", "test.csv"]


def test_outside_the_repository_the_limits_are_the_defaults_and_params_gives_others(
    mnist_test, classifier, model_file, tmp_path, capsys, monkeypatch
):
    images, _ = mnist_test
    monkeypatch.chdir(tmp_path)  # no params.yaml here
    monkeypatch.delenv("DIGITOPS_PARAMS", raising=False)
    Image.fromarray(images[0]).save("a.png")
    Image.fromarray(images[1]).resize((112, 112)).save("b.png")  # 12,544 pixels
    expected = classifier(np.stack([digit_from_image(Image.open(name)) for name in ["a.png", "b.png"]]))
    command = ["predict", "a.png", "b.png", "--model-file", str(model_file), "--out", "out.csv"]
    assert main(command) == EXIT_OK
    assert [row[:2] for row in _read_rows(tmp_path / "out.csv")[1:]] == [
        ["a.png", str(expected[0].argmax())],
        ["b.png", str(expected[1].argmax())],
    ]
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["serve"]["max_image_pixels"] = 100 * 100
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(params))
    assert main([*command, "--params", "small.yaml"]) == EXIT_OK
    assert [row[:2] for row in _read_rows(tmp_path / "out.csv")[1:]] == [["a.png", str(expected[0].argmax())]]
    assert (
        "skipped b.png: the image is 112x112 = 12,544 pixels; the limit is 10,000" in capsys.readouterr().err
    )


@pytest.mark.slow  # two fresh Python processes that import BentoML
def test_the_default_model_is_the_one_in_the_bentoml_store_of_bentoml_home(
    mnist_test, classifier, model_file, tmp_path
):
    """As a user runs it after `make run`: `python -m digitops.cli predict` with no model option loads
    `digits:latest` from BENTOML_HOME; a tag that is not there is a clear error (exit 1)."""
    images, _ = mnist_test
    environment = {
        **os.environ,
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    store = (
        "import shutil, sys, bentoml\n"
        "labels = {'registered_model': 'digits', 'mlflow_version': '5'}\n"
        "with bentoml.models.create('digits', labels=labels) as model:\n"
        "    shutil.copyfile(sys.argv[1], model.path_of('model.onnx'))\n"
    )
    subprocess.run([sys.executable, "-c", store, str(model_file)], env=environment, check=True, timeout=300)
    table = write_kaggle_csv(tmp_path / "test.csv", images[:50])
    result = subprocess.run(
        [sys.executable, "-m", "digitops.cli", "predict", str(table)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == EXIT_OK, result.stderr
    expected = classifier(normalize_digits(images[:50])).argmax(axis=1)
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[1:] == [[str(index + 1), str(digit)] for index, digit in enumerate(expected)]
    assert "50 digits predicted by digits/5 (digits:" in result.stderr

    missing = subprocess.run(
        [sys.executable, "-m", "digitops.cli", "predict", str(table), "--model", "digits:nope"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == EXIT_ERROR
    assert "error: no model digits:nope in the BentoML store" in missing.stderr
