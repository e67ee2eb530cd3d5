"""The reference implementation's file layout, read back the way the authors' scripts do."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from calibviz import bin_image, micro_metrics, per_image_metrics
from calibviz.reference_layout import METRIC_FILES, reference_tables

CASES = ["case_000.nii.gz", "case_001.nii.gz", "case_002.nii.gz", "case_003.nii.gz",
         "case_004.nii.gz"]


def make_images(n_classes=3, seed=4, shape=(10, 9, 4)):
    rng = np.random.default_rng(seed)
    images = []
    for i in range(len(CASES)):
        probs = rng.dirichlet(np.ones(n_classes) * 0.4, size=shape).transpose(3, 0, 1, 2)
        top = n_classes - (1 if i in (1, 3) else 0)  # the last class is absent from 1 and 3
        labels = rng.integers(0, top, size=shape)
        images.append(bin_image(probs.astype(np.float32), labels, n_bins=10))
    return images


def write(tables, folder):
    for name, (table, header) in tables.items():
        table.to_csv(folder / name, index=False, header=header)


@pytest.fixture()
def written(tmp_path):
    images = make_images()
    per_image = per_image_metrics(images)
    per_image["dice"][0, 1] = np.nan  # a NaN Dice (empty truth and prediction)
    micro = micro_metrics(images, pooling="reference")
    absent = np.stack([s.absent for s in images])
    folder = tmp_path / "run"
    folder.mkdir()
    tables = reference_tables(
        [f"/data/images/{c}" for c in CASES], ["class0", "class1", "class2"], per_image,
        micro, absent,
    )
    write(tables, folder)
    return folder, tables, per_image, micro, absent


def test_file_names_and_headers(written):
    folder, tables, *_ = written
    expected = {
        *(f"macro_{m}_{kind}.csv" for m in ("ece", "ace", "mce") for kind in ("raw", "summary")),
        *(f"micro_{m}_{kind}.csv" for m in ("ece", "ace", "mce") for kind in ("raw", "summary")),
        "mean_dice_raw.csv", "mean_dice_summary.csv",
        "missing_classes_raw.csv", "missing_classes_summary.csv", "metrics.csv",
    }
    assert set(tables) == expected
    assert set(p.name for p in folder.iterdir()) == expected
    for name in expected - {"metrics.csv"}:
        first = (folder / name).read_text().splitlines()[0]
        if name.endswith("_raw.csv"):
            assert first == "filename,class0,class1,class2,mean", name
        else:
            assert first == "class,mean,median,max,min,90percentile,std,notnans", name
    assert tables["metrics.csv"][1] is False
    assert METRIC_FILES["dice"] == "mean_dice"


@pytest.mark.parametrize("metric,stem", [
    ("ece", "macro_ece"), ("ace", "macro_ace"), ("mce", "macro_mce"), ("dice", "mean_dice"),
])
def test_raw_files_read_as_the_authors_scripts_do(written, metric, stem):
    folder, _, per_image, _, _ = written
    values = per_image[metric]
    with np.errstate(all="ignore"):
        expected_mean = np.nanmean(values, axis=1)
    mean = pd.read_csv(folder / f"{stem}_raw.csv")["mean"]
    np.testing.assert_allclose(mean.to_numpy(), expected_mean, rtol=1e-15)
    table = pd.read_csv(folder / f"{stem}_raw.csv")
    assert table["filename"].tolist() == CASES  # the file name with its extension
    np.testing.assert_array_equal(table[["class0", "class1", "class2"]].to_numpy(), values)


def test_summary_files(written):
    folder, _, per_image, _, _ = written
    summary = pd.read_csv(folder / "macro_ace_summary.csv")
    assert summary["class"].tolist() == ["class0", "class1", "class2", "mean"]
    ace = per_image["ace"]
    columns = [*ace.T, ace.mean(axis=1)]
    for row, column in zip(summary.to_dict("records"), columns):
        assert row["mean"] == round(float(np.mean(column)), 4)
        assert row["median"] == round(float(np.median(column)), 4)
        assert row["max"] == round(float(np.max(column)), 4)
        assert row["min"] == round(float(np.min(column)), 4)
        assert row["90percentile"] == round(float(np.percentile(column, 90)), 4)
        assert row["std"] == round(float(np.std(column)), 4)  # population std
        assert row["notnans"] == len(CASES)
    assert summary["notnans"].dtype.kind == "i"
    dice = pd.read_csv(folder / "mean_dice_summary.csv")
    assert dice["notnans"].tolist() == [5, 4, 5, 5]


def test_missing_classes_files(written):
    folder, _, _, _, absent = written
    raw = pd.read_csv(folder / "missing_classes_raw.csv")
    assert raw["filename"].tolist() == CASES
    np.testing.assert_array_equal(raw[["class0", "class1", "class2"]].to_numpy(),
                                  absent.astype(int))
    assert raw[["class0", "class1", "class2"]].to_numpy().dtype.kind == "i"
    assert absent[:, 2].tolist() == [False, True, False, True, False]
    np.testing.assert_allclose(raw["mean"], absent.mean(axis=1))
    summary = pd.read_csv(folder / "missing_classes_summary.csv")
    assert summary["mean"].tolist()[:3] == [0.0, 0.0, 0.4]


def test_micro_files_hold_the_reference_pooling(written):
    folder, _, _, micro, _ = written
    for metric in ("ece", "ace", "mce"):
        raw = pd.read_csv(folder / f"micro_{metric}_raw.csv")
        assert len(raw) == 1
        np.testing.assert_allclose(raw[["class0", "class1", "class2"]].to_numpy()[0],
                                   micro[metric], rtol=1e-15)
        assert raw["mean"][0] == pytest.approx(np.mean(micro[metric]), rel=1e-15)
        summary = pd.read_csv(folder / f"micro_{metric}_summary.csv")
        assert summary["notnans"].tolist() == [1, 1, 1, 1]
        assert summary["std"].tolist() == [0, 0, 0, 0]


def test_metrics_file_without_header(written):
    folder, _, per_image, micro, absent = written
    table = pd.read_csv(folder / "metrics.csv", header=None)
    assert table[0].tolist() == ["macro_ece", "macro_ace", "macro_mce", "micro_ece",
                                 "micro_ace", "micro_mce", "missing_classes"]
    values = dict(zip(table[0], table[1]))
    for metric in ("ece", "ace", "mce"):
        assert float(values[f"macro_{metric}"]) == pytest.approx(
            per_image[metric].mean(axis=1).mean(), rel=1e-12)
        assert float(values[f"micro_{metric}"]) == pytest.approx(
            np.mean(micro[metric]), rel=1e-12)
    assert values["missing_classes"] == "[False, False, True]"
    text = (folder / "metrics.csv").read_text().splitlines()
    assert text[0].startswith("macro_ece,")


def test_inputs_are_checked():
    per_image = {m: np.zeros((2, 3)) for m in ("ece", "ace", "mce")}
    micro = {m: np.zeros(3) for m in ("ece", "ace", "mce")}
    absent = np.zeros((2, 3), dtype=bool)
    tables = reference_tables(["a.nii", "b.nii"], None, per_image, micro, absent)
    assert "mean_dice_raw.csv" not in tables  # no Dice given, no Dice file
    assert list(tables["macro_ece_raw.csv"][0].columns) == [
        "filename", "class0", "class1", "class2", "mean"]
    with pytest.raises(ValueError, match="shape"):
        reference_tables(["a.nii"], None, per_image, micro, absent)
    with pytest.raises(ValueError, match="class names"):
        reference_tables(["a.nii", "b.nii"], ["x"], per_image, micro, absent)
    with pytest.raises(ValueError, match="missing"):
        reference_tables(["a.nii", "b.nii"], None, {"ece": per_image["ece"]}, micro, absent)
