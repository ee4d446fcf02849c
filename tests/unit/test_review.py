"""Reviewing contributions: quarantine -> the training pool, by a person, never by the service."""

from __future__ import annotations

import pytest
from PIL import Image

from digitops.cli import EXIT_ERROR, EXIT_OK, main
from digitops.data.drawings import read_drawings, read_manifest
from digitops.data.review import accept, incoming_dir, reject, remove_client, select, waiting
from digitops.errors import DigitopsError
from digitops.infer.inputs import InputLimits
from digitops.serve.feedback import store_drawings
from tests.fakes import FOUR_STROKES, SEVEN_STROKES, jittered_canvas_pngs

LIMITS = InputLimits(max_images=16, max_bytes=1_000_000, max_pixels=1_000_000)


def _drawings(strokes, label: int, count: int, seed: int) -> list[tuple[bytes, int]]:
    return [(png, label) for png in jittered_canvas_pngs(strokes, count, seed)]


@pytest.fixture
def feedback(tmp_path):
    """A feedback folder with 3 sevens from one client and 2 fours from another waiting in quarantine."""
    store_drawings(_drawings(SEVEN_STROKES, 7, 3, seed=1), incoming_dir(tmp_path), LIMITS, "10.0.0.5")
    store_drawings(_drawings(FOUR_STROKES, 4, 2, seed=2), incoming_dir(tmp_path), LIMITS, "10.0.0.9")
    return tmp_path


def _all(records):
    return records


def test_contributions_wait_in_quarantine_and_the_pool_takes_only_accepted_ones(feedback):
    assert read_manifest(feedback) == []  # the `drawings` source sees nothing yet
    sevens = [record for record in waiting(feedback) if record.label == 7]

    result = accept(feedback, lambda records: select(records, [sevens[0].sha256[:8]]))

    assert [record.sha256 for record in result.moved] == [sevens[0].sha256] and result.refused == []
    assert [record.sha256 for record in read_manifest(feedback)] == [sevens[0].sha256]
    assert (feedback / sevens[0].file).is_file() and not (incoming_dir(feedback) / sevens[0].file).exists()
    assert len(waiting(feedback)) == 4
    images, labels = read_drawings(feedback)  # what ingest reads: intact, hash-checked
    assert len(images) == 1 and labels.tolist() == [7]


def test_a_drawing_the_pool_holds_with_another_label_is_not_accepted(feedback):
    seven = waiting(feedback)[0]
    accept(feedback, lambda records: [records[0]])
    # The same drawing arrives again with another label (from another client).
    pooled = (feedback / seven.file).read_bytes()
    store_drawings([(pooled, 1)], incoming_dir(feedback), LIMITS, "10.0.0.66")

    result = accept(feedback, _all)

    assert [(record.label, reason) for record, reason in result.refused] == [
        (1, "the pool holds this digit with label 7")
    ]
    assert [record.label for record in waiting(feedback)] == [1]  # left for a person to reject
    assert sorted(record.label for record in read_manifest(feedback)) == [4, 4, 7, 7, 7]


def test_reject_by_client_and_remove_everything_one_client_sent(feedback):
    accept(feedback, lambda records: select(records, client="10.0.0.5")[:2])  # two sevens pooled

    rejected = reject(feedback, lambda records: select(records, client="10.0.0.9"))
    assert [record.label for record in rejected.moved] == [4, 4]
    assert [record.client for record in waiting(feedback)] == ["10.0.0.5"]

    removed = remove_client(feedback, "10.0.0.5")
    assert len(removed.moved) == 3
    assert waiting(feedback) == [] and read_manifest(feedback) == []
    assert sorted(path.name for path in feedback.rglob("*.png")) == []


def test_a_short_or_unknown_prefix_is_refused(feedback):
    with pytest.raises(DigitopsError, match="at least 8 characters"):
        select(waiting(feedback), ["abc"])
    with pytest.raises(DigitopsError, match="no such drawing in quarantine"):
        select(waiting(feedback), ["0" * 12])


def test_the_drawings_command_lists_shows_and_reviews(feedback, tmp_path, capsys):
    folder = ["--folder", str(feedback)]
    assert main(["drawings", "list", *folder]) == EXIT_OK
    listed = capsys.readouterr()
    assert listed.out.count("label 7  from 10.0.0.5") == 3 and "5 drawings waiting" in listed.err

    sheet = tmp_path / "sheet.png"
    assert main(["drawings", "sheet", "--out", str(sheet), *folder]) == EXIT_OK
    with Image.open(sheet) as image:
        assert image.width == 16 * 56 and image.height == 56 + 14

    assert main(["drawings", "accept", *folder]) == 2  # names nothing: a usage error
    assert main(["drawings", "accept", "--client", "10.0.0.9", *folder]) == EXIT_OK
    assert "2 drawings accepted" in capsys.readouterr().err
    assert main(["drawings", "reject", "--all", *folder]) == EXIT_OK
    assert main(["drawings", "accept", "deadbeef00", *folder]) == EXIT_ERROR
    assert sorted(record.label for record in read_manifest(feedback)) == [4, 4] and waiting(feedback) == []
