"""``evaluate --roi`` and ``--top-label`` through the CLI and the library (issue 16 §1, §4):
the region-of-interest result set against a brute-force band/box and naive binning, the
top-label row against a hand argmax, resume, workers, empty regions and usage errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from calibviz import evaluate_folder
from calibviz.cli import app
from calibviz.synthetic import make_case, write_label, write_nifti
from tests.naive import naive_band, naive_bin, naive_box, naive_errors, naive_top_label

runner = CliRunner()
SHAPE = (9, 8, 6)
SPACING = (1.5, 1.0, 2.5)
AFFINE = np.diag([*SPACING, 1.0])


def evaluate(*args):
    result = runner.invoke(app, ["evaluate", *map(str, args)])
    assert "Traceback" not in result.output, result.output
    return result


def write_folder(root: Path, n_cases: int = 3, *, drop_class: int | None = None):
    """NIfTI softmax maps ``(i, j, k, 3)`` (background, 1, 2) with anisotropic voxels; with
    ``drop_class`` that class is absent from every case's truth and never the argmax."""
    pred, labels = root / "pred", root / "labels"
    cases = {}
    for i in range(n_cases):
        label, probs = make_case(SHAPE, 3, seed=i + 3)
        if drop_class is not None:
            label[label == drop_class] = 0
            probs[drop_class] *= 0.01
            probs /= probs.sum(axis=0, keepdims=True)
        write_label(labels / f"case{i}.nii.gz", label, affine=AFFINE)
        write_nifti(pred / f"case{i}.nii.gz", np.moveaxis(probs, 0, -1), affine=AFFINE,
                    dtype=np.float32)
        cases[f"case{i}"] = (label, probs.astype(np.float32))
    return pred, labels, cases


def rows(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "per_image.csv").set_index(["case", "class"]).sort_index()


def naive_roi_row(label, probs, c, region_of):
    """Naive ECE/ACE/MCE and Dice of class ``c`` on its region (argmax segmentation)."""
    truth = label == c
    segmentation = probs.argmax(axis=0) == c
    region = region_of(truth, segmentation)
    sums = naive_bin(probs[c][None], label, classes=[c], mask=region)
    errors = {k: v[0] for k, v in naive_errors(sums).items()}
    tp = np.sum(segmentation & truth & region)
    denominator = 2 * tp + np.sum(segmentation & ~truth & region) + np.sum(
        ~segmentation & truth & region)
    errors["dice"] = 2 * tp / denominator if denominator else np.nan
    errors["n_voxels"] = int(region.sum())
    return errors


@pytest.mark.parametrize("spec, region", [
    ("band:2mm", lambda t, s: naive_band(t, s, 2.0, SPACING)),
    ("box:1.5", lambda t, s: naive_box(t, s, 1.5, SPACING)),
])
def test_roi_result_set_equals_naive_region_and_binning(tmp_path, spec, region):
    pred, labels, cases = write_folder(tmp_path)
    out = tmp_path / "out"
    result = evaluate(pred, labels, "--out", out, "--roi", spec, "--workers", 1,
                      "--bootstrap", 0, "--no-figures")
    assert result.exit_code == 0, result.output
    name = "band-2mm" if spec.startswith("band") else "box-1.5mm"
    roi_dir = out / f"roi-{name}"
    for file in ("per_image.csv", "summary.csv", "stats.npz", "run.json", "problems.csv"):
        assert (roi_dir / file).exists(), file
    got = rows(roi_dir)
    everything = rows(out)
    assert json.loads((roi_dir / "run.json").read_text())["options"]["roi"] == str(spec
        if spec.endswith("mm") else spec + "mm")
    for case, (label, probs) in cases.items():
        for c, class_name in ((1, "label1"), (2, "label2")):
            expected = naive_roi_row(label, probs, c, region)
            row = got.loc[(case, class_name)]
            assert row["n_voxels"] == expected["n_voxels"]
            for metric in ("ece", "ace", "mce", "dice"):
                np.testing.assert_allclose(row[metric], expected[metric], rtol=1e-9,
                                           atol=1e-12, err_msg=f"{case} {class_name} {metric}")
            assert row["n_voxels"] <= everything.loc[(case, class_name), "n_voxels"]
    # both headline tables are shown
    assert result.output.count("Calibration") >= 2 and f"roi-{name}" in result.output


def test_top_label_row_equals_hand_argmax(tmp_path):
    pred, labels, cases = write_folder(tmp_path)
    out = tmp_path / "out"
    result = evaluate(pred, labels, "--out", out, "--top-label", "--workers", 1,
                      "--bootstrap", 0, "--no-figures")
    assert result.exit_code == 0, result.output
    got = rows(out)
    for case, (label, probs) in cases.items():
        confidence, correct = naive_top_label(probs, label)
        sums = naive_bin(confidence.astype(np.float32)[None], correct.astype(np.int64),
                         classes=[1])
        expected = naive_errors(sums)
        row = got.loc[(case, "top-label")]
        for metric in ("ece", "ace", "mce"):
            np.testing.assert_allclose(row[metric], expected[metric][0], rtol=1e-9)
        assert np.isnan(row["dice"])  # no segmentation: no Dice
        assert row["n_voxels"] == label.size
    # outputs keyed by label values leave it out
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["mean"]) == {"1", "2"}
    # the class means average the classes only (round 4 D-f): summary.csv's mean row and
    # the per-image class mean compare tests are those of a run without the row
    plain = tmp_path / "plain"
    assert evaluate(pred, labels, "--out", plain, "--workers", 1, "--bootstrap", 0,
                    "--no-figures").exit_code == 0
    with_row = pd.read_csv(out / "summary.csv").set_index(["metric", "class"])
    without = pd.read_csv(plain / "summary.csv").set_index(["metric", "class"])
    pd.testing.assert_frame_equal(with_row.drop(index="top-label", level="class"), without)
    from calibviz.run_values import load_run

    for metric in ("ece", "ace"):
        np.testing.assert_array_equal(load_run(out).values[metric][:, -1],
                                      load_run(plain).values[metric][:, -1])


def test_top_label_needs_a_softmax_map(tmp_path):
    pred, labels, _ = write_folder(tmp_path)
    sigmoid = tmp_path / "sigmoid"
    sigmoid.mkdir()
    for path in pred.iterdir():
        import nibabel as nib

        img = nib.load(path)
        data = np.asarray(img.dataobj)[..., 1:]
        write_nifti(sigmoid / path.name, data, affine=img.affine, dtype=np.float32)
    result = evaluate(sigmoid, labels, "--out", tmp_path / "out", "--top-label",
                      "--classes", "a=1,b=2", "--workers", 1, "--no-figures")
    assert result.exit_code == 2, result.output
    assert "--top-label needs a softmax map" in result.output


def test_empty_region_is_nan_with_the_reason(tmp_path):
    pred, labels, _ = write_folder(tmp_path, n_cases=2, drop_class=2)
    out = tmp_path / "out"
    result = evaluate(pred, labels, "--out", out, "--roi", "band:1mm", "--workers", 1,
                      "--bootstrap", 0, "--no-figures")
    assert result.exit_code == 0, result.output
    got = rows(out / "roi-band-1mm")
    assert got.loc[("case0", "label2"), "n_voxels"] == 0
    assert np.isnan(got.loc[("case0", "label2"), "ece"])
    problems = pd.read_csv(out / "roi-band-1mm" / "problems.csv")
    assert problems["message"].str.contains("region of interest band:1mm is empty for "
                                            "label2").any()


def test_roi_equal_across_workers_resume_and_library(tmp_path, monkeypatch):
    pred, labels, _ = write_folder(tmp_path, n_cases=4)
    one, two = tmp_path / "one", tmp_path / "two"
    common = ("--roi", "band:2mm", "--top-label", "--bootstrap", 0, "--no-figures")
    assert evaluate(pred, labels, "--out", one, "--workers", 1, *common).exit_code == 0
    assert evaluate(pred, labels, "--out", two, "--workers", 2, *common).exit_code == 0
    for folder in ("", "roi-band-2mm"):
        assert (one / folder / "per_image.csv").read_bytes() == \
            (two / folder / "per_image.csv").read_bytes()
    # an interrupted run: the partial store (with the ROI statistics) kept, reports gone
    from calibviz import store

    original = store.PartialStore.finish

    def keep(self):
        if any(self.folder.glob("*.npz")):
            shutil.copytree(self.folder, self.folder.parent / "kept", dirs_exist_ok=True)
        original(self)

    monkeypatch.setattr(store.PartialStore, "finish", keep)
    resumed = tmp_path / "resumed"
    assert evaluate(pred, labels, "--out", resumed, "--workers", 1, *common).exit_code == 0
    assert any((resumed / "kept").glob("*.roi.npz"))
    (resumed / "kept").rename(resumed / ".partial")
    (resumed / ".partial" / "case3.npz").unlink()  # case3 was not finished
    result = evaluate(pred, labels, "--out", resumed, "--workers", 1, "--resume", *common)
    assert result.exit_code == 0, result.output
    assert "3 taken from the interrupted run" in result.output
    for folder in ("", "roi-band-2mm"):
        assert (resumed / folder / "per_image.csv").read_bytes() == \
            (one / folder / "per_image.csv").read_bytes()
    # the library: the ROI set is the results' ``roi``
    results = evaluate_folder(pred, labels, roi="band:2mm", top_label=True)
    assert results.roi is not None and results.roi.cases == results.cases
    expected = rows(one / "roi-band-2mm")
    library = results.roi.per_image.set_index(["case", "class"]).sort_index()
    np.testing.assert_allclose(library["ece"].to_numpy(), expected["ece"].to_numpy(),
                               rtol=0, atol=1e-10)  # the CSV's 10 digits


def test_overwrite_removes_the_roi_set_only(tmp_path):
    pred, labels, _ = write_folder(tmp_path, n_cases=2)
    out = tmp_path / "out"
    common = ("--workers", 1, "--bootstrap", 0, "--no-figures")
    assert evaluate(pred, labels, "--out", out, "--roi", "box:1", *common).exit_code == 0
    (out / "roi-notes").mkdir()
    (out / "roi-notes" / "mine.txt").write_text("mine")
    assert evaluate(pred, labels, "--out", out, "--overwrite", *common).exit_code == 0
    assert not (out / "roi-box-1mm").exists()
    assert (out / "roi-notes" / "mine.txt").read_text() == "mine"


def test_bad_roi_is_a_usage_error(tmp_path):
    pred, labels, _ = write_folder(tmp_path, n_cases=1)
    result = evaluate(pred, labels, "--out", tmp_path / "out", "--roi", "ring:5")
    assert result.exit_code == 2
    assert "--roi: expected band:MM or box:MM" in result.output


def test_roi_files_and_figures_on_the_demo_data(demo, tmp_path):
    out = tmp_path / "out"
    result = evaluate(demo.nnunet, demo.labels, "--out", out, "--roi",
                      "band:3mm", "--top-label", "--max-case-figures", 2, "--bootstrap", 50,
                      "--workers", 1)
    assert result.exit_code == 0, result.output
    roi = out / "roi-band-3mm"
    for folder in (out, roi):
        assert (folder / "figures" / "dataset_reliability_histogram.png").stat().st_size > 10_000
        assert len(list((folder / "figures" / "cases").glob("*.png"))) == 2
        assert (folder / "summary.csv").exists() and (folder / "run.json").exists()
    main, region = rows(out), rows(roi)
    assert "top-label" in main.index.get_level_values("class")
    assert "top-label" not in region.index.get_level_values("class")
    foreground = main.drop(index="top-label", level="class")
    assert (region["n_voxels"] <= foreground["n_voxels"]).all()
    assert (region["n_voxels"] < foreground["n_voxels"]).any()


def test_roi_pass_reads_channels_again_when_they_do_not_fit(tmp_path, monkeypatch):
    pred, labels, _ = write_folder(tmp_path, n_cases=2)
    kept = evaluate_folder(pred, labels, roi="band:2mm")
    from calibviz.io import roipass

    monkeypatch.setattr(roipass, "HOLD_BYTES", 1)  # nothing fits: every channel is re-read
    reread = evaluate_folder(pred, labels, roi="band:2mm")
    for a, b in zip(kept.roi.stats, reread.roi.stats):
        assert a.equals(b)


def test_report_holds_the_region_sets_numbers_and_survives_a_broken_one(tmp_path):
    from calibviz.html.context import number
    from tests.test_html_report import check_self_contained, parse

    pred, labels, _ = write_folder(tmp_path)
    out = tmp_path / "out"
    assert evaluate(pred, labels, "--out", out, "--roi", "band:2mm", "--workers", 1,
                    "--no-figures", "--bootstrap", 0).exit_code == 0
    (region,) = out.glob("roi-*")
    result = runner.invoke(app, ["report", str(out), "--bootstrap", "50", "--worst", "2"])
    assert result.exit_code == 0, result.output
    page = check_self_contained(out / "report.html")
    assert page.h2[-1] == "7. Region of interest: band:2mm"
    assert len(page.images) == 1 + 2 + 1  # whole images, 2 worst cases, the region's
    text, _ = parse(out / "report.html")
    section = text[text.index('id="roi-1"'):]
    ace = pd.read_csv(region / "per_image.csv").groupby("class", sort=False)["ace"].mean()
    whole = pd.read_csv(out / "per_image.csv").groupby("class", sort=False)["ace"].mean()
    header = section[:section.index("</thead>")]
    column = re.findall(r'<th scope="col" class="num">(\w+) ', header).index("ACE") + 1
    for name, value in ace.items():  # the region's macro ACE, not the whole image's
        row = section[section.index(f'<th scope="row">{name}</th>'):]
        assert row.split("macro ", column + 1)[column].startswith(number(value) + "<")
        assert number(value) != number(whole[name])
    assert "over 3 images" in " ".join(section.split())

    (region / "run.json").write_text('{"options": "not a table"}')  # hand-edited
    run = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**run, "versions": "not a table"}))
    result = runner.invoke(app, ["report", str(out), "--bootstrap", "50"])
    assert result.exit_code == 0, result.output
    assert check_self_contained(out / "report.html").h2[-1] == (
        f"7. Region of interest: {region.name[len('roi-'):]}")  # named by its folder

    (region / "stats.npz").write_bytes(b"not a zip archive")
    result = runner.invoke(app, ["report", str(out), "--bootstrap", "50"])
    assert result.exit_code == 0, result.output
    page = check_self_contained(out / "report.html")
    assert page.h2[-1].startswith("7. Region of interest: ") and len(page.h2) == 7
    words = " ".join("".join(page.text).split())
    assert "could not be read" in words and region.name in words


def test_region_set_of_an_interrupted_run_is_refused(tmp_path):
    """Killed while writing the region-of-interest set (the run's partial store still there,
    the set's run.json not yet written): reading the set says the run is interrupted."""
    from calibviz import load_results
    from calibviz.store import PARTIAL_DIR

    pred, labels, _ = write_folder(tmp_path, n_cases=2)
    out = tmp_path / "out"
    common = ("--workers", 1, "--bootstrap", 0, "--no-figures")
    assert evaluate(pred, labels, "--out", out, "--roi", "box:1", *common).exit_code == 0
    roi = out / "roi-box-1mm"
    load_results(roi)  # finished: readable
    (out / PARTIAL_DIR).mkdir()
    load_results(roi)  # the set's own run.json is there: finished
    (roi / "run.json").unlink()
    with pytest.raises(ValueError, match=rf"{out} holds an interrupted run.*--resume"):
        load_results(roi)
    from typer.testing import CliRunner

    from calibviz.cli import app

    result = CliRunner().invoke(app, ["report", str(roi)])
    assert result.exit_code == 2 and "interrupted run" in result.output
