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


def _saved_arrays(tmp_path, options=None, binning="hard"):
    images = random_images(n_images=3)
    if binning == "soft":
        from calibviz import bin_image
        rng = np.random.default_rng(3)
        probs = rng.dirichlet(np.ones(3), size=(6, 5, 4)).transpose(3, 0, 1, 2)
        labels = rng.integers(0, 3, size=(6, 5, 4))
        images = [bin_image(probs, labels, n_bins=10, binning="soft") for _ in range(3)]
    save_results(tmp_path / "stats.npz", Results(("a", "b", "c"), images, options or {}))
    with np.load(tmp_path / "stats.npz") as data:
        return {key: np.array(data[key]) for key in data.files}


def _set(key, value):
    return lambda a: a.update({key: value(a) if callable(value) else value})


def _option(key, value):
    def change(arrays):
        import json
        options = json.loads(str(arrays["options_json"]))
        options[key] = value
        arrays["options_json"] = np.array(json.dumps(options))
    return change


def _truth_as_false_positives(arrays):
    """fn voxels counted as fp: the voxels add up, the truth does not."""
    arrays.update(stats_fp=arrays["stats_fp"] + arrays["stats_fn"],
                  stats_fn=arrays["stats_fn"] * 0)


def _swap_edges(arrays):
    edges = arrays["stats_edges"].copy()
    edges[5], edges[6] = edges[6], edges[5]
    arrays["stats_edges"] = edges


# Every way an archive can hold statistics no evaluation produces (finding A3), or fields of
# the wrong kind (B2, D5): one line naming the file, saying it is damaged and which field.
@pytest.mark.parametrize(("change", "field"), [
    (_set("stats_count", lambda a: a["stats_count"] + 0.5), "stats_count holds non-integer"),
    (_set("stats_count", lambda a: a["stats_count"].astype(str)), "stats_count holds <U"),
    (_set("stats_sum_y", lambda a: a["stats_sum_y"] * 10), "stats_sum_y exceeds stats_count"),
    (_set("stats_sum_p", lambda a: -a["stats_sum_p"]), "stats_sum_p holds negative"),
    (_set("stats_sum_p2", lambda a: a["stats_sum_p"] * 1.5 + 1), "stats_sum_p2 exceeds"),
    (_set("stats_sum_py", lambda a: a["stats_sum_y"] + 1), "stats_sum_py exceeds"),
    (_set("stats_count", lambda a: a["stats_count"] * 0), "exceeds stats_count"),
    (_set("stats_tp", lambda a: a["stats_tp"] + 0.25), "stats_tp holds non-integer"),
    (_set("stats_tn", lambda a: a["stats_tn"] + 1),
     "the confusion counts disagree with the bins (case 'a', class 'class0': tp + fp + fn + tn"),
    (_set("stats_fn", lambda a: np.where(a["stats_fn"] > 0, a["stats_fn"] - 1, 0)),
     "tp + fp + fn + tn"),
    (_truth_as_false_positives, "tp + fn = "),
    (_swap_edges, "stats_edges are not strictly increasing"),
    (_set("stats_edges", lambda a: a["stats_edges"] ** 2), "stats_edges are not the equal"),
    (_set("stats_n_images", lambda a: a["stats_n_images"] * 0 - 1), "stats_n_images"),
    (_set("stats_n_images", lambda a: a["stats_n_images"] + 0.5), "stats_n_images"),
    (_set("cases", np.array(["a", "a", "c"])), "cases lists 'a' more than once"),
    (_set("cases", np.array(["a", " ", "c"])), "cases holds an empty name (entry 2)"),
    (_set("stats_class_names", np.array(["x", "y", ""])), "stats_class_names holds an empty"),
    (_set("cases", np.array(["a", "b", "c", "d"]).reshape(2, 2)), "cases is not a list"),
    (_set("stats_class_names", np.array(["x", "x", "y"])), "stats_class_names lists 'x'"),
    (_set("stats_closure", np.array("middle")), "stats_closure is 'middle'"),
    (_set("stats_binning", np.array("fuzzy")), "stats_binning is 'fuzzy'"),
    (_set("stats_count", lambda a: a["stats_count"][:, :, :5]),
     "stats_count has shape (3, 3, 5); the other fields hold 10 bins"),
    (_set("stats_sum_py", lambda a: a["stats_sum_py"][:, :, :5]),
     "stats_sum_py has shape (3, 3, 5); the other fields hold 10 bins"),
    (_set("stats_edges", np.linspace(0, 1, 8)), "stats_edges has shape (8,); the other fields "
                                                "hold 10 bins, so 11 edges were expected"),
    (_set("stats_class_names", np.array(["x"])), "stats_class_names lists 1 classes; the "
                                                 "statistics hold 3"),
    (_set("stats_tp", lambda a: a["stats_tp"][:, :2]), "stats_tp has shape (3, 2)"),
    (_set("format_version", np.array("one")), "format_version is not an integer"),
    (_set("options_json", np.array("[1, 2]")), "options_json is not a JSON object"),
    (_set("options_json", np.array("{garbage")), "options_json is not valid JSON"),
    (_set("options_json", np.array("[" * 100_000 + "]" * 100_000)),
     "options_json is nested too deeply"),
    (_set("problems_json", np.array("[" * 100_000 + "]" * 100_000)),
     "problems_json is nested too deeply"),
    (_option("absent", "bogus"), "options_json: absent is 'bogus'"),
    (_option("absent", 3), "options_json: absent is 3"),
    (_option("n_bins", "x"), "options_json: n_bins is 'x'"),
    (_option("n_bins", 7), "options_json says n_bins 7 but the statistics have 10"),
    (_option("name", ["l"]), "options_json: name is ['l']"),
    (_option("class_labels", "abc"), "options_json: class_labels is 'abc'"),
    (_option("bootstrap", -3), "options_json: bootstrap is -3"),
    (_option("bootstrap", 10**12), "options_json: bootstrap is 1000000000000; expected an "
                                   "integer from 0 to 100000"),
    (_option("seed", -1), "options_json: seed is -1"),
    (_option("dice_rule", "bogus"), "options_json: dice_rule is 'bogus'; expected one of"),
    (_option("dice", "sometimes"), "options_json: dice is 'sometimes'"),
    (_option("empty_weight", "x"), "options_json: empty_weight is 'x'"),
    (_option("scale", float("nan")), "options_json: scale is nan"),
    (_option("roi", "band:abc"), "options_json: roi is 'band:abc'; expected a region of"),
    (_set("problems_json", np.array('[{"x": 1}]')), "problems_json entry 1 has fields x"),
    (_set("problems_json", np.array('"str"')), "problems_json is not a JSON list"),
    (_set("problems_json", np.array('[{"case": "a", "file": "f", "message": "m", '
                                    '"severity": "bad"}]')), "problems_json entry 1 has sev"),
    (_set("skipped", np.array([[1, 2]])), "skipped is not a list"),
])
def test_impossible_statistics_are_refused_naming_the_field(tmp_path, change, field):
    arrays = _saved_arrays(tmp_path, {"n_bins": 10, "absent": "include", "name": "m"})
    change(arrays)
    np.savez(tmp_path / "stats.npz", **arrays)
    with pytest.raises(ValueError) as caught:
        load_results(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'stats.npz'} is damaged: "), message
    assert field in message and "\n" not in message


def test_the_bounds_leave_room_for_rounding_only(tmp_path):
    arrays = _saved_arrays(tmp_path)
    full = arrays["stats_count"] > 0
    # every voxel at p = 1 with outcome 1: all sums equal the count, and a rounding above it
    for key in ("stats_sum_p", "stats_sum_y", "stats_sum_p2", "stats_sum_py"):
        arrays[key] = np.where(full, arrays["stats_count"] * (1 + 1e-12), 0.0)
    arrays.update(stats_tp=arrays["stats_count"].sum(axis=-1), stats_fp=arrays["stats_fp"] * 0,
                  stats_fn=arrays["stats_fn"] * 0, stats_tn=arrays["stats_tn"] * 0)
    np.savez(tmp_path / "stats.npz", **arrays)
    assert len(load_results(tmp_path)) == 3
    arrays["stats_sum_y"] = np.where(full, arrays["stats_count"] * (1 + 1e-6), 0.0)
    np.savez(tmp_path / "stats.npz", **arrays)
    with pytest.raises(ValueError, match="stats_sum_y exceeds"):
        load_results(tmp_path)


def test_soft_binned_archives_keep_fractional_weights(tmp_path):
    arrays = _saved_arrays(tmp_path, binning="soft")
    assert arrays["stats_count"].dtype == np.float64
    assert (np.mod(arrays["stats_count"], 1) != 0).any()  # soft weights are fractional
    again = load_results(tmp_path)
    assert again.stats[0].binning == "soft"
    arrays["stats_sum_p"] = arrays["stats_sum_p"] + arrays["stats_count"] + 1
    np.savez(tmp_path / "stats.npz", **arrays)
    with pytest.raises(ValueError, match="stats_sum_p exceeds stats_count"):
        load_results(tmp_path)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_edges_rounded_to_the_input_precision_still_load(tmp_path, dtype):
    arrays = _saved_arrays(tmp_path)  # earlier versions stored edges so
    arrays["stats_edges"] = arrays["stats_edges"].astype(dtype).astype(np.float64)
    np.savez(tmp_path / "stats.npz", **arrays)
    again = load_results(tmp_path)
    np.testing.assert_array_equal(again.edges, np.arange(11) / 10)


@pytest.mark.parametrize(("make", "reason"), [
    (lambda p: p.write_bytes(b""), "the file is empty"),
    (lambda p: np.save(p.with_suffix(".npy"), np.array([{"a": 1}], dtype=object))
     or p.with_suffix(".npy").rename(p), "pickled Python objects"),
    (lambda p: np.savez(p, cases=np.array(["a"], dtype=object)), "pickled Python objects"),
    (lambda p: p.write_bytes(b"PK\x03\x04truncated"), "not a complete zip archive"),
])
def test_unreadable_archives_say_why_in_the_users_terms(tmp_path, make, reason):
    make(tmp_path / "stats.npz")
    with pytest.raises(ValueError) as caught:
        load_results(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'stats.npz'} is not a readable calibviz stats.npz")
    assert reason in message and "allow_pickle" not in message


def test_json_nested_too_deeply_is_a_damaged_record():
    from calibviz.store import json_object

    with pytest.raises(ValueError, match="nested too deeply"):
        json_object('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ValueError, match="not a JSON object"):
        json_object("[1]")
    assert json_object('{"a": [1]}') == {"a": [1]}


def test_a_stats_file_of_another_kind_is_named_so(tmp_path):
    path = tmp_path / "stats.npz"
    path.write_text("<!doctype html><html></html>")
    with pytest.raises(ValueError, match="not a NumPy archive") as error:
        load_results(path)
    assert "pickled" not in str(error.value)
