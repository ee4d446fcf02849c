from __future__ import annotations

import time

import numpy as np
import pytest

from digitops.errors import DataFileError
from digitops.io import atomic_dir, atomic_write, load_npz, save_npz


def test_atomic_write_replaces_the_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_write(target, "w") as handle:
        handle.write("new")
    assert target.read_text() == "new"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_write_failure_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target, "w") as handle:
        handle.write("half of the new content")
        raise RuntimeError("killed halfway")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_dir_swaps_the_whole_folder(tmp_path):
    target = tmp_path / "interim"
    target.mkdir()
    (target / "stale.npz").write_text("from an earlier mix")
    with atomic_dir(target) as out:
        (out / "fresh.npz").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["fresh.npz"]
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_dir_failure_keeps_the_old_folder(tmp_path):
    target = tmp_path / "interim"
    target.mkdir()
    (target / "mnist.npz").write_text("previous output")
    with pytest.raises(RuntimeError), atomic_dir(target) as out:
        (out / "mnist.npz").write_text("partial")
        raise RuntimeError("a source failed")
    assert (target / "mnist.npz").read_text() == "previous output"
    assert list(tmp_path.iterdir()) == [target]


def test_npz_bytes_depend_only_on_the_arrays(tmp_path, monkeypatch):
    """DVC sees a rerun with the same data as no change only if the bytes are the same."""
    arrays = {"labels": np.arange(1000), "split": np.array(["train"] * 1000)}
    save_npz(tmp_path / "first.npz", **arrays)
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)  # a later clock, as a rerun sees it
    save_npz(tmp_path / "second.npz", **arrays)
    assert (tmp_path / "first.npz").read_bytes() == (tmp_path / "second.npz").read_bytes()
    assert (tmp_path / "first.npz").stat().st_size < 10_000  # compressed


def test_npz_round_trip_and_clear_errors(tmp_path):
    arrays = {"images": np.arange(8, dtype=np.uint8).reshape(2, 2, 2), "split": np.array(["train", "test"])}
    save_npz(tmp_path / "a.npz", **arrays)
    loaded = load_npz(tmp_path / "a.npz")
    assert loaded.keys() == arrays.keys()
    for key, value in arrays.items():
        np.testing.assert_array_equal(loaded[key], value)
    with pytest.raises(DataFileError, match=r"missing\.npz: missing"):
        load_npz(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataFileError, match="not a readable"):
        load_npz(tmp_path / "junk.npz")
