"""Storage: the one atomic writer, the stats archive and the partial-case store."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from calibviz import Results, load_results, save_results
from calibviz.io import Problem
from calibviz.store import PartialStore, write_atomic

from .conftest import random_images


def test_write_atomic_replaces_whole_files_and_honours_the_umask(tmp_path):
    target = tmp_path / "sub" / "a.csv"
    write_atomic(target, "one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["a.csv"]  # no temporary left
    old = os.umask(0o022)
    try:
        write_atomic(target, "three")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_write_atomic_errors_name_the_path_not_the_temporary_file(tmp_path):
    folder = tmp_path / "a_folder"
    folder.mkdir()
    with pytest.raises(IsADirectoryError) as raised:  # the target is a folder
        write_atomic(folder, "x")
    assert raised.value.filename == str(folder) and ".tmp" not in str(raised.value)
    assert list(folder.iterdir()) == [] and sorted(tmp_path.iterdir()) == [folder]
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(NotADirectoryError) as raised:  # its folder cannot be made
        write_atomic(blocker / "sub" / "x.csv", "x")
    assert raised.value.filename == str(blocker / "sub" / "x.csv")


def test_results_round_trip_with_options_and_problems(tmp_path):
    images = random_images(n_images=3)
    problems = (Problem("c1", "c1.nii.gz", "case c1: a warning", "warning"),)
    results = Results(("c0", "c1", "c2"), images, {"absent": "exclude"}, problems, ("c9",))
    path = save_results(tmp_path / "stats.npz", results)
    again = load_results(tmp_path)  # a folder means its stats.npz
    assert again.cases == results.cases and again.options == {"absent": "exclude"}
    assert again.problems == problems and again.skipped == ("c9",)
    assert all(a.equals(b) for a, b in zip(again.stats, images))
    assert path.exists()


@pytest.mark.parametrize("content", [b"", b"not a zip", b"PK\x03\x04truncated"])
def test_damaged_archives_give_one_clear_error(tmp_path, content):
    (tmp_path / "stats.npz").write_bytes(content)
    with pytest.raises(ValueError, match="stats.npz"):
        load_results(tmp_path)


def test_partial_store_saves_loads_and_refuses_other_options(tmp_path):
    store = PartialStore(tmp_path)
    assert store.open({"n_bins": 20}, resume=False) == ([], None)
    image = random_images(n_images=1)[0]
    warning = Problem("a b/c", "f", "case a b/c: w", "warning")
    inputs = {"f": [10, 123]}
    store.save("a b/c", image, [warning], inputs)
    stats, problems, labels, roi = store.load("a b/c", inputs)
    assert stats.equals(image) and problems == [warning] and labels is None and roi is None
    region = random_images(n_images=1, seed=5)[0]
    store.save("r", image, [], inputs, {"dice_rule": "argmax"}, region)
    stats, _, info, roi = store.load("r", inputs)
    assert stats.equals(image) and roi.equals(region) and info == {"dice_rule": "argmax"}
    next(store.folder.glob("r.roi.npz")).write_bytes(b"damaged")
    assert "damaged" in store.load("r", inputs)  # its region statistics are part of it
    assert store.load("missing", inputs) is None
    assert "changed" in store.load("a b/c", {"f": [10, 124]})  # stale: evaluate again
    assert store.open({"n_bins": 10}, resume=True)[0]  # differences listed
    assert store.open({"n_bins": 20}, resume=True) == ([], None)
    # a damaged case file is evaluated again, not an error
    next(store.folder.glob("*.npz")).write_bytes(b"garbage")
    assert "damaged" in store.load("a b/c", inputs)
    # a damaged options record: one notice, a fresh store
    (store.folder / "options.json").write_text("{nope")
    differences, notice = store.open({"n_bins": 20}, resume=True)
    assert differences == [] and "damaged" in notice
    store.finish()
    assert not store.folder.exists()


def test_results_check_their_parts():
    with pytest.raises(ValueError, match="case ids"):
        Results(("a",), ())
    results = Results(("a",), random_images(n_images=1), problems=(
        Problem("a", "f", "e1"), Problem("a", "f", "w1", "warning")))
    assert [p.message for p in results.errors] == ["e1"]
    assert [p.message for p in results.warnings] == ["w1"]
    assert results.n_absent == int(results.stats[0].absent.sum())
    np.testing.assert_array_equal(results.edges, results.stats[0].edges)


@pytest.mark.parametrize(("change", "message"), [
    (lambda a: a.update(format_version=np.array(99)), "format version 99"),
    (lambda a: a.update(cases=a["cases"][:2]), "lists 2 cases"),
    (lambda a: a["stats_count"].__setitem__((0, 0, 0), -5), "negative"),
    (lambda a: a["stats_sum_p"].__setitem__((1, 0, 0), np.nan), "NaN"),
    (lambda a: a.pop("stats_sum_y"), "lacks"),
    (lambda a: a.pop("stats_edges"), "stats.npz"),
])
def test_archives_it_cannot_vouch_for_are_refused(tmp_path, change, message):
    save_results(tmp_path / "stats.npz", Results(("a", "b", "c"), random_images(n_images=3)))
    with np.load(tmp_path / "stats.npz") as data:
        arrays = {key: np.array(data[key]) for key in data.files}
    change(arrays)
    np.savez(tmp_path / "stats.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        load_results(tmp_path)
