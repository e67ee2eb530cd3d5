"""Finding and pairing cases; class/region definitions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from calibviz.io import LabelSpec, discover_cases, read_dataset_json
from calibviz.io.classes import resolve
from calibviz.io.discover import split_ext, strip_suffixes
from calibviz.options import EvalOptions, parse_classes, parse_regions
from calibviz.synthetic import write_label, write_monai, write_nifti

SHAPE = (4, 4, 2)


def touch_nifti(path, shape=SHAPE):
    write_label(path, np.zeros(shape, np.uint8))


def test_suffix_stripping():
    assert split_ext("a.b.nii.gz") == ("a.b", ".nii.gz")
    assert strip_suffixes("case_0001_0000") == "case_0001"
    assert strip_suffixes("BraTS-GLI-00001-000-seg") == "BraTS-GLI-00001-000"
    assert strip_suffixes("img_7_seg", "seg") == "img_7"
    assert strip_suffixes("img_7_prob", "_prob") == "img_7"
    assert strip_suffixes("_seg") == "_seg"


def test_flat_pairing_reports_unpaired_by_name(tmp_path):
    for name in ("a_seg.nii.gz", "b.nii.gz", "orphan_pred.nii.gz"):
        touch_nifti(tmp_path / "pred" / name)
    for name in ("a.nii.gz", "b-seg.nii.gz", "orphan_label.nii"):
        touch_nifti(tmp_path / "labels" / name)
    cases, problems = discover_cases(tmp_path / "pred", tmp_path / "labels", EvalOptions())
    assert [c.case_id for c in cases] == ["a", "b"]
    assert cases[0].label.endswith("a.nii.gz") and cases[0].format == "nifti"
    assert sorted(p.case for p in problems) == ["orphan_label", "orphan_pred"]
    assert all(p.severity == "warning" for p in problems)
    assert any("orphan_pred.nii.gz" in p.message for p in problems)
    _, strict = discover_cases(tmp_path / "pred", tmp_path / "labels", EvalOptions(strict=True))
    assert all(p.severity == "error" for p in strict)


def test_one_folder_per_case_layouts(tmp_path):
    # KiTS: case_*/segmentation.nii.gz (ids from the folder), MONAI: <stem>/<stem>_seg.nii.gz
    for case_id in ("case_00000", "case_00001"):
        touch_nifti(tmp_path / "kits" / case_id / "segmentation.nii.gz")
        touch_nifti(tmp_path / "kits" / case_id / "imaging.nii.gz")
        write_monai(tmp_path / "monai", case_id, np.zeros((2, *SHAPE), np.float32))
    options = EvalOptions(label_pattern="case_*/segmentation.nii.gz", postfix="seg")
    cases, problems = discover_cases(tmp_path / "monai", tmp_path / "kits", options)
    assert not problems
    assert [c.case_id for c in cases] == ["case_00000", "case_00001"]
    assert cases[1].label.endswith("case_00001/segmentation.nii.gz")
    assert cases[1].prediction.endswith("case_00001/case_00001_seg.nii.gz")


def test_explicit_pattern_and_duplicates(tmp_path):
    touch_nifti(tmp_path / "pred" / "x" / "a_prob.nii.gz")
    touch_nifti(tmp_path / "pred" / "y" / "a_prob.nii.gz")
    touch_nifti(tmp_path / "pred" / "y" / "a_other.nii.gz")
    touch_nifti(tmp_path / "labels" / "a.nii.gz")
    cases, problems = discover_cases(
        tmp_path / "pred", tmp_path / "labels",
        EvalOptions(pattern="x/*_prob.nii.gz", postfix="prob"),
    )
    assert [c.case_id for c in cases] == ["a"] and not problems


def test_empty_folders_are_clear_errors(tmp_path):
    (tmp_path / "pred").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(ValueError, match="no label files"):
        discover_cases(tmp_path / "pred", tmp_path / "labels")
    touch_nifti(tmp_path / "labels" / "a.nii.gz")
    with pytest.raises(ValueError, match="no prediction files found"):
        discover_cases(tmp_path / "pred", tmp_path / "labels")
    np.save(tmp_path / "pred" / "a.npy", np.zeros((2, *SHAPE)))
    with pytest.raises(ValueError, match="layout"):
        discover_cases(tmp_path / "pred", tmp_path / "labels")


def test_mask_pairing(tmp_path):
    touch_nifti(tmp_path / "pred" / "a.nii.gz")
    touch_nifti(tmp_path / "pred" / "b.nii.gz")
    touch_nifti(tmp_path / "labels" / "a.nii.gz")
    touch_nifti(tmp_path / "labels" / "b.nii.gz")
    touch_nifti(tmp_path / "masks" / "a.nii.gz")
    cases, problems = discover_cases(tmp_path / "pred", tmp_path / "labels",
                                     EvalOptions(mask_dir=str(tmp_path / "masks")))
    assert [c.case_id for c in cases] == ["a"] and cases[0].mask.endswith("a.nii.gz")
    assert problems[0].case == "b" and "no mask" in problems[0].message


def test_per_class_files_missing_class(tmp_path):
    write_nifti(tmp_path / "pred" / "a_liver.nii.gz", np.zeros(SHAPE, np.float32))
    write_nifti(tmp_path / "pred" / "a_tumour.nii.gz", np.zeros(SHAPE, np.float32))
    write_nifti(tmp_path / "pred" / "b_liver.nii.gz", np.zeros(SHAPE, np.float32))
    for c in "ab":
        touch_nifti(tmp_path / "labels" / f"{c}.nii.gz")
    options = EvalOptions(class_pattern="{case}_{class}.nii.gz", classes="liver=1,tumour=2")
    cases, problems = discover_cases(tmp_path / "pred", tmp_path / "labels", options)
    assert [c.case_id for c in cases] == ["a"]
    assert cases[0].prediction[1].endswith("a_tumour.nii.gz")
    assert any(p.case == "b" and "tumour" in p.message for p in problems)


def test_parse_options():
    assert parse_classes("liver=1,tumour=2") == (("liver", 1), ("tumour", 2))
    assert parse_regions("WT=1,2,4;TC=1,4;ET=4")[0] == ("WT", (1, 2, 4))
    for bad in ("liver", "liver=x", "=1"):
        with pytest.raises(ValueError):
            parse_classes(bad)
    with pytest.raises(ValueError, match="twice"):
        parse_regions("A=1;A=2")
    with pytest.raises(ValueError, match="preset must be one of"):
        resolve(4, EvalOptions(preset="brats2099"))
    with pytest.raises(TypeError, match="unknown option"):
        EvalOptions.from_kwargs(n_binz=3)


def test_dataset_json_v2_v1_and_regions(tmp_path):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"labels": {"background": 0, "tumour": 2, "liver": 1,
                                           "ignore": 3}}))
    spec = read_dataset_json(path)
    assert spec.entries == (("background", (0,)), ("liver", (1,)), ("tumour", (2,)))
    assert spec.ignore_label == 3 and not spec.is_region
    path.write_text(json.dumps({"labels": {"0": "background", "1": "kidney"}}))
    assert read_dataset_json(path).entries == (("background", (0,)), ("kidney", (1,)))
    path.write_text(json.dumps({"labels": {"background": 0, "whole tumor": [1, 2, 3],
                                           "enhancing": 3},
                                "regions_class_order": [2, 3]}))
    spec = read_dataset_json(path)
    assert spec.is_region and spec.regions_class_order == (2, 3)
    resolved = resolve(2, EvalOptions(), spec)
    assert [t.members for t in resolved.targets] == [(1, 2, 3), (3,)]
    assert not resolved.softmax


def test_resolution_rules():
    r = resolve(3, EvalOptions())
    assert r.softmax and r.names == ("label1", "label2") and r.declared == (0, 1, 2)
    r = resolve(3, EvalOptions(include_background=True))
    assert r.names == ("background", "label1", "label2")
    r = resolve(1, EvalOptions())
    assert r.names == ("foreground",) and not r.softmax
    r = resolve(2, EvalOptions(classes="liver=1,tumour=2"))  # no background channel
    assert not r.softmax and r.names == ("liver", "tumour")
    r = resolve(4, EvalOptions(classes="ncr=1,ed=2,et=4", preset="brats2021"))
    assert r.targets[1].channels == (1, 3) and r.declared == (0, 1, 2, 4)
    r = resolve(5, EvalOptions(regions="kidney=1,2;tumour=2", ignore_label=9))
    assert r.targets[0].channels == (1, 2) and 9 in r.declared and r.ignore_label == 9
    r = resolve(3, EvalOptions(preset="kits23"))
    assert r.names == ("kidney_and_masses", "masses", "tumour")
    with pytest.raises(ValueError, match="needs label values"):
        resolve(4, EvalOptions(preset="brats2021"))
    with pytest.raises(ValueError, match="channels"):
        resolve(5, EvalOptions(classes="a=1,b=2"))
    model = LabelSpec((("background", (0,)), ("a", (1,))), ignore_label=2)
    assert resolve(2, EvalOptions(), model).declared == (0, 1, 2)


def test_case_ids_pair_by_their_nfc_form(tmp_path):
    nfc, nfd = "b_\u00e9", "b_e\u0301"
    assert nfc != nfd
    touch_nifti(tmp_path / "pred" / f"{nfc}.nii.gz")
    touch_nifti(tmp_path / "labels" / f"{nfd}.nii.gz")
    touch_nifti(tmp_path / "pred" / "a.nii.gz")
    touch_nifti(tmp_path / "labels" / "a.nii.gz")
    cases, problems = discover_cases(tmp_path / "pred", tmp_path / "labels", EvalOptions())
    assert [c.case_id for c in cases] == ["a", nfc] and not problems
    assert cases[1].prediction == str(tmp_path / "pred" / f"{nfc}.nii.gz")
    assert cases[1].label == str(tmp_path / "labels" / f"{nfd}.nii.gz")  # the real name


def test_ids_differing_only_in_normalisation_are_named_so(tmp_path):
    nfc, nfd = "b_\u00e9", "b_e\u0301"
    for name in (nfc, nfd, "a"):
        touch_nifti(tmp_path / "pred" / f"{name}.nii.gz")
    for name in (nfc, "a"):
        touch_nifti(tmp_path / "labels" / f"{name}.nii.gz")
    cases, _ = discover_cases(tmp_path / "pred", tmp_path / "labels", EvalOptions())
    clash = [c for c in cases if c.case_id == nfc]
    assert len(clash) == 1 and "ambiguous prediction files" in clash[0].error
    assert "differ only in Unicode normalisation" in clash[0].error


def test_one_folder_holds_predictions_and_labels_apart_by_pattern(tmp_path):
    for case_id in ("c0", "c1"):
        write_nifti(tmp_path / "data" / case_id / "pred.nii.gz", np.zeros((*SHAPE, 2), np.float32))
        touch_nifti(tmp_path / "data" / case_id / "segmentation.nii.gz")
    data = tmp_path / "data"
    options = EvalOptions(pattern="*/pred.nii.gz", label_pattern="*/segmentation.nii.gz")
    cases, problems = discover_cases(data, data, options)
    assert [c.case_id for c in cases] == ["c0", "c1"] and not problems
    with pytest.raises(ValueError, match="is both a prediction and a label file"):
        discover_cases(data, data, EvalOptions(pattern="*/*.nii.gz",
                                               label_pattern="*/segmentation.nii.gz"))


# ------------------------------------------------ --scale where the maps would ignore it
def _scale_folders(tmp_path, *, dtype, slope=None):
    rng = np.random.default_rng(0)
    probs = rng.random(SHAPE)
    raw = np.round(probs * 255) if np.dtype(dtype).kind in "iu" else probs
    for case in ("a", "b"):
        write_nifti(tmp_path / "pred" / f"{case}.nii.gz", raw, dtype=dtype, slope=slope)
        write_label(tmp_path / "labels" / f"{case}.nii.gz", (probs > 0.5).astype(np.uint8))
    return tmp_path / "pred", tmp_path / "labels"


@pytest.mark.parametrize(("dtype", "slope", "found"), [
    (np.float32, None, "float32"), (np.float64, None, "float64"),
    (np.uint8, 1 / 255, "scl_slope"), (np.int16, 1 / 1000, "scl_slope"),
])
def test_scale_that_the_maps_would_ignore_is_refused(tmp_path, dtype, slope, found):
    pred, labels = _scale_folders(tmp_path, dtype=dtype, slope=slope)
    with pytest.raises(ValueError, match="--scale") as error:
        discover_cases(pred, labels, EvalOptions(scale="1/255"))
    assert found in str(error.value) and "a.nii.gz" in str(error.value)
    assert "leave it out" in str(error.value)
    discover_cases(pred, labels, EvalOptions())  # without --scale: fine


def test_scale_on_unscaled_integer_maps_is_accepted(tmp_path):
    pred, labels = _scale_folders(tmp_path, dtype=np.uint16)
    cases, _ = discover_cases(pred, labels, EvalOptions(scale="1/255"))
    assert [c.case_id for c in cases] == ["a", "b"]


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_scale_applies_to_integer_arrays_only(tmp_path, suffix):
    def folder(dtype):
        root = tmp_path / np.dtype(dtype).name
        root.mkdir()
        array = np.zeros((2, *SHAPE), dtype)
        if suffix == ".npy":
            np.save(root / "a.npy", array)
        else:
            np.savez(root / "a.npz", array)  # arr_0: a generic array
        touch_nifti(root / "labels" / "a.nii.gz")
        return root

    options = EvalOptions(scale="1/255", layout="cijk")
    floats = folder(np.float32)
    with pytest.raises(ValueError, match="stored as float32: leave it out"):
        discover_cases(floats, floats / "labels", options)
    integers = folder(np.uint8)
    cases, _ = discover_cases(integers, integers / "labels", options)
    assert [c.case_id for c in cases] == ["a"]


def test_a_layout_makes_npz_with_nnunet_keys_generic_arrays(tmp_path):
    """Without nnU-Net's dataset.json and plans.json, a member named ``probabilities`` is
    taken for nnU-Net v2 only when no ``--layout`` says the arrays are generic."""
    from calibviz.io.discover import detect_format

    np.savez(tmp_path / "a.npz", probabilities=np.zeros((2, *SHAPE), np.float32))
    assert detect_format(tmp_path, EvalOptions()) == "nnunet-v2"
    assert detect_format(tmp_path, EvalOptions(layout="cijk")) == "npy"


def test_a_symlink_loop_is_its_own_problem_not_the_runs(tmp_path):
    """A looping link in the prediction or label folder is reported as that file's problem;
    the other cases are paired (it once stopped the whole run with a RuntimeError)."""
    import os

    for side in ("pred", "labels"):
        touch_nifti(tmp_path / side / "a.nii.gz")
    os.symlink("loop_b.nii.gz", tmp_path / "pred" / "loop_a.nii.gz")
    os.symlink("loop_a.nii.gz", tmp_path / "pred" / "loop_b.nii.gz")
    os.symlink("self.nii.gz", tmp_path / "labels" / "self.nii.gz")
    cases, problems = discover_cases(tmp_path / "pred", tmp_path / "labels", EvalOptions())
    assert [c.case_id for c in cases] == ["a"]
    assert any("loop" in p.file or "self" in p.file for p in problems)


@pytest.mark.parametrize(("options", "model"), [
    (EvalOptions(ignore_label=1), None),
    (EvalOptions(classes="bg=0,a=1,b=2", ignore_label=2), None),
    (EvalOptions(), LabelSpec((("background", (0,)), ("a", (1,))), ignore_label=1)),
])
def test_an_ignore_label_that_a_class_scores_is_refused(options, model):
    with pytest.raises(ValueError, match="cannot be both ignored and scored"):
        resolve(3 if model is None else 2, options, model)
