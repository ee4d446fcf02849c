"""`digitops predict` without a model: finding inputs (digitops.predict), the output format, exit codes.

Reading Kaggle CSVs is in tests/data/test_kaggle.py; the runs through a real Keras model are in
tests/model/test_cli_predict.py; `--url` against a real `bentoml serve` is in
tests/service/test_service.py."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from digitops.cli import EXIT_ERROR, EXIT_USAGE, main
from digitops.config import load_params
from digitops.data.kaggle import PIXEL_COLUMNS, KaggleCsv
from digitops.errors import DataFileError
from digitops.infer.inputs import InputLimits, png_bytes
from digitops.predict import (
    Digit,
    ImageFile,
    Problem,
    Submission,
    Table,
    choose_format,
    find_inputs,
    iter_digits,
)
from digitops.preprocess import normalize_digit
from tests.fakes import REPO_ROOT, free_port, random_digits, write_kaggle_csv

LIMITS = InputLimits.from_serve(load_params(REPO_ROOT / "params.yaml").serve)  # the service's


@pytest.fixture
def digits() -> np.ndarray:
    return random_digits(7, seed=3)  # (7, 28, 28) uint8, never blank


def _params_file(tmp_path: Path, **serve) -> Path:
    """A copy of the repository's params.yaml with some of its `serve` values changed."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["serve"].update(serve)
    path = tmp_path / "params-copy.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


# ------------------------------------------------------------------------------------------ finding inputs


def test_folders_are_searched_recursively_in_sorted_order_and_other_files_counted(tmp_path, digits):
    folder = tmp_path / "scans"
    (folder / "b").mkdir(parents=True)
    for name in ["b/2.png", "a.png", "b/1.JPG", "c.webp"]:
        Image.fromarray(digits[0]).convert("RGB").save(folder / name)
    (folder / "notes.txt").write_text("not a digit")
    (folder / "b" / "labels.csv").write_text("label\n1\n")  # CSVs count only when named
    found = find_inputs([folder])
    assert found.sources == [ImageFile(folder / name) for name in ["a.png", "b/1.JPG", "b/2.png", "c.webp"]]
    assert found.ignored_files == 2
    assert found.missing == []


def test_paths_keep_the_command_lines_order_and_a_missing_one_is_a_problem(tmp_path, digits):
    image = tmp_path / "seven.png"
    image.write_bytes(png_bytes(digits[0]))
    table = write_kaggle_csv(tmp_path / "train.csv", digits[:3], np.array([1, 2, 3]))
    found = find_inputs([table, tmp_path / "nothing.png", image])
    assert found.sources == [KaggleCsv(table, has_labels=True, rows=3), ImageFile(image)]
    assert found.missing == [Problem(str(tmp_path / "nothing.png"), "no such file or folder")]
    assert found.total == 4


def test_a_kaggle_csv_is_recognised_by_its_header_with_or_without_labels(tmp_path, digits):
    labelled = find_inputs([write_kaggle_csv(tmp_path / "train.csv", digits, np.arange(7))])
    unlabelled = find_inputs([write_kaggle_csv(tmp_path / "test.csv", digits)])
    assert labelled.sources == [KaggleCsv(tmp_path / "train.csv", has_labels=True, rows=7)]
    assert unlabelled.sources == [KaggleCsv(tmp_path / "test.csv", has_labels=False, rows=7)]


@pytest.mark.parametrize(
    "header",
    [
        ",".join(PIXEL_COLUMNS[:-1]),  # 783 pixel columns
        ",".join(["id", *PIXEL_COLUMNS]),
        "a,b,c",
        "",
    ],
)
def test_a_csv_without_kaggles_header_is_an_error_naming_the_file(tmp_path, header):
    path = tmp_path / "other.csv"
    path.write_text(header + "\n1,2,3\n")
    with pytest.raises(DataFileError, match=r"other\.csv: not a Kaggle digit CSV.*pixel0\.\.pixel783"):
        find_inputs([path])


# ------------------------------------------------------------------------------------------ digits


def test_csv_rows_become_normalised_digits_and_a_blank_row_a_problem(tmp_path, digits):
    images = digits[:3].copy()
    images[1] = 0  # blank
    path = write_kaggle_csv(tmp_path / "test.csv", images)
    items = list(iter_digits(find_inputs([path]).sources, LIMITS, uploads=True))
    assert isinstance(items[1], Problem)
    assert items[1].name == f"{path}#2"
    assert "blank" in items[1].reason
    first, third = items[0], items[2]
    assert (first.name, first.image_id, first.label, third.image_id) == (f"{path}#1", 1, None, 3)
    np.testing.assert_array_equal(first.pixels, normalize_digit(images[0]))
    # --url sends the row's own pixels as PNG; the service normalises them as this process did
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(first.upload))), images[0])


def test_image_files_become_digits_and_bad_files_problems_that_say_why(tmp_path, digits):
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes(digits[0]))
    blank = tmp_path / "blank.png"
    blank.write_bytes(png_bytes(np.full((40, 40), 255, np.uint8)))
    text = tmp_path / "fake.png"
    text.write_text("not an image at all")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(png_bytes(digits[1])[:60])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    files = [ImageFile(path) for path in [good, blank, text, truncated, empty]]
    items = list(iter_digits(files, LIMITS, uploads=True))
    assert isinstance(items[0], Digit)
    assert items[0].upload == good.read_bytes()  # --url sends the file as it is, like curl -F images=@file
    np.testing.assert_array_equal(items[0].pixels, normalize_digit(digits[0]))
    reasons = {Path(item.name).name: item.reason for item in items[1:]}
    assert "blank" in reasons["blank.png"]
    assert "not an image" in reasons["fake.png"]
    assert "truncated or corrupt" in reasons["cut.png"]
    assert "empty" in reasons["empty.jpg"]


def test_files_over_the_params_files_limits_are_problems_that_say_the_limit(tmp_path, digits):
    path = _params_file(tmp_path, max_images_per_request=3, max_image_bytes=10_000, max_image_pixels=2_500)
    limits = InputLimits.from_serve(load_params(path).serve)
    assert limits == InputLimits(max_images=3, max_bytes=10_000, max_pixels=2_500)
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes(digits[0]))
    heavy = tmp_path / "heavy.png"
    heavy.write_bytes(png_bytes(digits[1]) + bytes(10_000))
    wide = tmp_path / "wide.png"
    Image.fromarray(digits[2]).resize((60, 60)).save(wide)
    items = list(iter_digits([ImageFile(good), ImageFile(heavy), ImageFile(wide)], limits))
    assert isinstance(items[0], Digit)
    assert items[1] == Problem(
        str(heavy), f"the file has {heavy.stat().st_size:,} bytes; the limit is 10,000"
    )
    assert items[2] == Problem(
        str(wide), "the image is 60x60 = 3,600 pixels; the limit is 2,500 for a digit image"
    )


def test_without_a_params_file_the_limits_are_the_ones_the_repository_configures():
    """`digitops predict` outside the repository takes ServeParams' defaults: the service's, as deployed."""
    assert InputLimits.from_serve(None) == LIMITS


# ------------------------------------------------------------------------------------------ output format


def test_one_kaggle_csv_alone_gets_the_submission_format_anything_else_the_table(tmp_path):
    table = KaggleCsv(tmp_path / "test.csv", has_labels=False, rows=3)
    image = ImageFile(tmp_path / "a.png")
    assert isinstance(choose_format([table], "auto"), Submission)
    assert isinstance(choose_format([table, image], "auto"), Table)
    assert isinstance(choose_format([table, table], "auto"), Table)
    assert isinstance(choose_format([image], "auto"), Table)
    assert isinstance(choose_format([table], "table"), Table)
    digit = Digit("test.csv#3", 3, 7, np.zeros((28, 28), np.uint8), None)
    assert Submission().row(digit, 4, 0.9) == (3, 4)
    assert Table().row(digit, 4, 0.91234567) == ("test.csv#3", 4, "0.912346", 7)


# ------------------------------------------------------------------------------------------ exit codes


def test_no_inputs_exits_2_with_a_message(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("nothing to see")
    assert main(["predict", str(tmp_path), "--model-file", "unused.onnx"]) == EXIT_USAGE
    assert "no inputs found" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "missing")]) == EXIT_USAGE
    assert "no such file or folder" in capsys.readouterr().err


def test_wrong_arguments_exit_2(tmp_path, digits, capsys):
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes(digits[0]))
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(image), "--url", "http://x", "--model-file", "m.onnx"])
    assert exit_info.value.code == EXIT_USAGE
    assert main(["predict", str(image), "--format", "kaggle"]) == EXIT_USAGE
    assert "exactly one Kaggle CSV" in capsys.readouterr().err
    assert main(["predict", str(image), "--model-file", str(tmp_path / "none.onnx")]) == EXIT_USAGE
    assert "none.onnx: no such file" in capsys.readouterr().err
    assert main(["predict", str(image), "--url", "localhost:3000"]) == EXIT_USAGE
    assert "expected http://host:port" in capsys.readouterr().err


def test_a_missing_params_file_exits_2_and_an_invalid_one_1_naming_the_key(
    tmp_path, digits, capsys, monkeypatch
):
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes(digits[0]))
    assert main(["predict", str(image), "--params", str(tmp_path / "none.yaml")]) == EXIT_USAGE
    assert "none.yaml does not exist" in capsys.readouterr().err
    monkeypatch.setenv("DIGITOPS_PARAMS", str(tmp_path / "gone.yaml"))
    assert main(["predict", str(image)]) == EXIT_USAGE
    assert "gone.yaml does not exist" in capsys.readouterr().err
    invalid = _params_file(tmp_path, max_images_per_request=0)
    assert main(["predict", str(image), "--params", str(invalid)]) == EXIT_ERROR
    assert "serve.max_images_per_request: Input should be greater than 0" in capsys.readouterr().err


def test_a_csv_with_a_wrong_header_exits_1_before_any_model_is_loaded(tmp_path, capsys):
    path = tmp_path / "sales.csv"
    path.write_text("region,amount\nnorth,3\n")
    assert main(["predict", str(path), "--model-file", str(tmp_path / "none.onnx")]) == EXIT_ERROR
    assert "sales.csv: not a Kaggle digit CSV" in capsys.readouterr().err


def test_an_unreachable_service_exits_1_with_a_clear_message(tmp_path, digits, capsys):
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes(digits[0]))
    out = tmp_path / "predictions.csv"
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert main(["predict", str(image), "--url", url, "--out", str(out)]) == EXIT_ERROR
    assert f"cannot reach the service at {url}" in capsys.readouterr().err
    assert not out.exists()


def test_a_server_that_is_not_the_service_exits_1_showing_its_answer(tmp_path, digits, http_server, capsys):
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes(digits[0]))
    assert main(["predict", str(image), "--url", http_server.url]) == EXIT_ERROR
    assert f"the service at {http_server.url} is not ready: /readyz answered 404" in capsys.readouterr().err
    assert http_server.requests == ["/readyz"]


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = capsys.readouterr().out
    assert "exit codes:" in text
    assert "ImageId,Label" in text


def test_a_model_file_onnx_runtime_cannot_load_exits_1_with_the_reason(tmp_path, digits, capsys):
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes(digits[0]))
    keras_file = tmp_path / "candidate.keras"  # a Keras file is not what serves: export it to ONNX
    keras_file.write_bytes(b"PK\x03\x04 a zip, not an ONNX model")
    assert main(["predict", str(image), "--model-file", str(keras_file)]) == EXIT_ERROR
    assert "error: cannot load the model: " in capsys.readouterr().err
