"""Every probability format, read from files written into tmp folders, gives exactly the numbers
of the core engine (`bin_image`) on the same arrays loaded by hand."""

from __future__ import annotations

import numpy as np
import pytest

from calibviz import bin_image, evaluate_folder
from calibviz.io import discover_cases, evaluate_case
from calibviz.options import EvalOptions
from calibviz.synthetic import (
    make_case,
    make_region_case,
    write_label,
    write_monai,
    write_nifti,
    write_nnunet_v1,
    write_nnunet_v2,
)

SHAPE = (12, 12, 6)  # equal in-plane sizes: only the self-check catches an in-plane swap
AFFINE = np.array([[0.8, 0, 0, -10], [0, 0.8, 0, 5], [0, 0, 2.5, 30], [0, 0, 0, 1]])
LPS_PERMUTED = np.array([[0, -0.8, 0, 10], [-0.8, 0, 0, 4], [0, 0, 2.5, -3], [0, 0, 0, 1]])


def only_ok(result, n):
    errors = [p for p in result.problems if p.severity == "error"]
    assert not errors, errors
    assert len(result.cases) == n
    return result


def assert_same(stats, expected):
    """Counts and confusion exactly equal; float sums equal up to summation order (files are
    read in F order, the hand-loaded arrays are binned in C order)."""
    assert stats.class_names == expected.class_names
    for name in ("count", "tp", "fp", "fn", "tn", "n_clipped", "edges"):
        np.testing.assert_array_equal(getattr(stats, name), getattr(expected, name), name)
    assert stats.equals(expected, rtol=1e-12, atol=0)


def softmax_cases(tmp_path, n=2, seed=0):
    cases, labels = {}, {}
    for i in range(n):
        lab, probs = make_case(SHAPE, 3, seed=seed + i)
        cases[f"c{i}"] = (probs, AFFINE)
        labels[f"c{i}"] = lab
        write_label(tmp_path / "labels" / f"c{i}.nii.gz", lab, AFFINE)
    return cases, labels


def test_nnunet_v2_softmax_reversed(tmp_path):
    cases, labels = softmax_cases(tmp_path)
    write_nnunet_v2(tmp_path / "pred", cases, {"background": 0, "liver": 1, "tumour": 2})
    result = only_ok(evaluate_folder(tmp_path / "pred", tmp_path / "labels", n_bins=10), 2)
    for case_id, stats in zip(result.cases, result.stats, strict=True):
        probs, _ = cases[case_id]
        expected = bin_image(probs[1:], labels[case_id], classes=[1, 2], n_bins=10,
                             class_names=["liver", "tumour"])
        assert_same(stats, expected)


def test_nnunet_v2_include_background_and_float16(tmp_path):
    cases, labels = softmax_cases(tmp_path, n=1)
    write_nnunet_v2(tmp_path / "pred", cases, {"background": 0, "liver": 1, "tumour": 2},
                    dtype=np.float16)
    result = only_ok(evaluate_folder(tmp_path / "pred", tmp_path / "labels",
                                     include_background=True), 1)
    probs16 = cases["c0"][0].astype(np.float16)
    expected = bin_image(probs16, labels["c0"], class_names=["background", "liver", "tumour"])
    assert_same(result.stats[0], expected)


def test_nnunet_v2_with_reorient_non_ras_label(tmp_path):
    lab, probs = make_case((10, 12, 6), 3, seed=3)
    write_label(tmp_path / "labels" / "c0.nii.gz", lab, LPS_PERMUTED)
    write_nnunet_v2(tmp_path / "pred", {"c0": (probs, LPS_PERMUTED)},
                    {"background": 0, "a": 1, "b": 2}, reader="NibabelIOWithReorient")
    stored = np.load(tmp_path / "pred" / "c0.npz")["probabilities"]
    assert stored.shape[1:] != probs.shape[1:][::-1]  # really stored in another frame
    result = only_ok(evaluate_folder(tmp_path / "pred", tmp_path / "labels"), 1)
    expected = bin_image(probs[1:], lab, classes=[1, 2], class_names=["a", "b"])
    assert_same(result.stats[0], expected)


def test_nnunet_v2_region_model_brats2021(tmp_path):
    regions = [[1, 2, 4], [1, 4], [4]]
    lab, probs = make_region_case(SHAPE, regions, (0, 1, 2, 4), seed=5)
    write_label(tmp_path / "labels" / "BraTS_01-seg.nii.gz", lab, AFFINE)
    write_nnunet_v2(tmp_path / "pred", {"BraTS_01": (probs, AFFINE)},
                    {"background": 0, "whole tumor": [1, 2, 4], "tumor core": [1, 4],
                     "enhancing tumor": [4]}, regions_class_order=[2, 1, 4])
    result = only_ok(evaluate_folder(tmp_path / "pred", tmp_path / "labels"), 1)
    names = ["whole tumor", "tumor core", "enhancing tumor"]
    expected = bin_image(probs, lab, regions=regions, class_names=names)
    assert_same(result.stats[0], expected)
    # the preset names the same regions
    result = only_ok(evaluate_folder(tmp_path / "pred", tmp_path / "labels",
                                     preset="brats2021"), 1)
    assert_same(result.stats[0], bin_image(probs, lab, regions=regions,
                                           class_names=["WT", "TC", "ET"]))


def test_nnunet_v2_ignore_label(tmp_path):
    lab, probs = make_case(SHAPE, 3, seed=7)
    lab[:3] = 3
    write_label(tmp_path / "labels" / "c0.nii.gz", lab, AFFINE)
    write_nnunet_v2(tmp_path / "pred", {"c0": (probs, AFFINE)},
                    {"background": 0, "a": 1, "b": 2, "ignore": 3})
    result = only_ok(evaluate_folder(tmp_path / "pred", tmp_path / "labels"), 1)
    expected = bin_image(probs[1:], lab, classes=[1, 2], ignore_label=3, class_names=["a", "b"])
    assert_same(result.stats[0], expected)
    assert result.stats[0].n_voxels.sum() < 2 * lab.size


def test_nnunet_v1_float16(tmp_path):
    lab, probs = make_case(SHAPE, 3, seed=8)
    write_label(tmp_path / "labels" / "c0.nii.gz", lab, AFFINE)
    write_nnunet_v1(tmp_path / "pred", "c0", probs, AFFINE)
    result = only_ok(evaluate_folder(tmp_path / "pred", tmp_path / "labels"), 1)
    expected = bin_image(probs[1:].astype(np.float16), lab, classes=[1, 2],
                         class_names=["label1", "label2"])
    assert_same(result.stats[0], expected)


@pytest.mark.parametrize("five_d", [False, True])
def test_monai_one_folder_per_case(tmp_path, five_d):
    cases, labels = softmax_cases(tmp_path)
    for case_id, (probs, affine) in cases.items():
        write_monai(tmp_path / "pred", case_id, probs, affine, postfix="prob", five_d=five_d)
    result = only_ok(evaluate_folder(tmp_path / "pred", tmp_path / "labels", postfix="prob",
                                     classes="liver=1,tumour=2"), 2)
    for case_id, stats in zip(result.cases, result.stats, strict=True):
        expected = bin_image(cases[case_id][0][1:], labels[case_id], classes=[1, 2],
                             class_names=["liver", "tumour"])
        assert_same(stats, expected)


def test_softmax_nifti_scored_on_regions(tmp_path):
    values = (0, 1, 2, 4)
    lab, probs = make_case(SHAPE, 4, seed=9, label_values=values)
    write_label(tmp_path / "labels" / "c0.nii.gz", lab, AFFINE)
    write_nifti(tmp_path / "pred" / "c0.nii.gz", np.moveaxis(probs, 0, -1), AFFINE)
    result = only_ok(evaluate_folder(tmp_path / "pred", tmp_path / "labels",
                                     classes="necrosis=1,edema=2,enhancing=4",
                                     preset="brats2021", dice="threshold"), 1)
    region_probs = np.stack([probs[1] + probs[2] + probs[3], probs[1] + probs[3], probs[3]])
    expected = bin_image(region_probs, lab, regions=[[1, 2, 4], [1, 4], [4]],
                         class_names=["WT", "TC", "ET"])
    assert_same(result.stats[0], expected)


def test_uint8_with_scl_slope_binary_model(tmp_path):
    lab, probs = make_case(SHAPE, 2, seed=10)
    raw = np.round(probs[1] * 255).astype(np.uint8)
    write_label(tmp_path / "labels" / "c0.nii.gz", lab, AFFINE)
    write_nifti(tmp_path / "pred" / "c0.nii.gz", raw, AFFINE, slope=1 / 255)
    result = only_ok(evaluate_folder(tmp_path / "pred", tmp_path / "labels"), 1)
    expected = bin_image(raw, lab, scale=1 / 255, class_names=["foreground"], classes=[1])
    assert_same(result.stats[0], expected)


def test_generic_npy_and_npz_layouts(tmp_path):
    lab, probs = make_case(SHAPE, 3, seed=11)
    write_label(tmp_path / "labels" / "c0.nii.gz", lab, AFFINE)
    write_label(tmp_path / "labels" / "c1.nii.gz", lab, AFFINE)
    (tmp_path / "pred").mkdir()
    np.save(tmp_path / "pred" / "c0.npy", probs.transpose(0, 3, 2, 1).astype(np.float16))
    np.savez_compressed(tmp_path / "pred" / "c1.npz", other=np.zeros(2),
                        probs=probs.transpose(0, 3, 2, 1).astype(np.float16))
    result = only_ok(evaluate_folder(tmp_path / "pred", tmp_path / "labels", layout="ckji",
                                     npz_key="probs", classes="a=1,b=2"), 2)
    expected = bin_image(probs[1:].astype(np.float16), lab, classes=[1, 2], class_names=["a", "b"])
    for stats in result.stats:
        assert_same(stats, expected)
    # channel-last layout
    (tmp_path / "pred2").mkdir()
    np.save(tmp_path / "pred2" / "c0.npy", np.moveaxis(probs, 0, -1).astype(np.float16))
    result = only_ok(evaluate_folder(tmp_path / "pred2", tmp_path / "labels", layout="ijkc",
                                     classes="a=1,b=2"), 1)
    assert_same(result.stats[0], expected)


def test_per_class_files(tmp_path):
    lab, probs = make_case(SHAPE, 3, seed=12)
    write_label(tmp_path / "labels" / "c0.nii.gz", lab, AFFINE)
    for name, c in (("liver", 1), ("tumour", 2)):
        write_nifti(tmp_path / "pred" / f"c0_{name}.nii.gz", probs[c], AFFINE)
    result = only_ok(evaluate_folder(tmp_path / "pred", tmp_path / "labels",
                                     class_pattern="{case}_{class}.nii.gz",
                                     classes="liver=1,tumour=2"), 1)
    expected = bin_image(probs[1:], lab, classes=[1, 2], class_names=["liver", "tumour"])
    assert_same(result.stats[0], expected)


def test_masks_and_options(tmp_path):
    cases, labels = softmax_cases(tmp_path, n=1)
    probs = cases["c0"][0]
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[2:9, 3:10] = 1
    write_label(tmp_path / "masks" / "c0.nii.gz", mask, AFFINE)
    write_nifti(tmp_path / "pred" / "c0.nii.gz", np.moveaxis(probs, 0, -1), AFFINE)
    result = only_ok(evaluate_folder(tmp_path / "pred", tmp_path / "labels",
                                     mask_dir=str(tmp_path / "masks"), n_bins=7,
                                     closure="left"), 1)
    expected = bin_image(probs[1:], labels["c0"], classes=[1, 2], mask=mask.astype(bool),
                         n_bins=7, closure="left", class_names=["label1", "label2"])
    assert_same(result.stats[0], expected)


def test_evaluate_case_in_a_process_pool(tmp_path):
    import multiprocessing
    import pickle
    from concurrent.futures import ProcessPoolExecutor

    cases, labels = softmax_cases(tmp_path)
    write_nnunet_v2(tmp_path / "pred", cases, {"background": 0, "liver": 1, "tumour": 2})
    options = EvalOptions(n_bins=10)
    found, problems = discover_cases(tmp_path / "pred", tmp_path / "labels", options)
    assert not problems and len(found) == 2
    assert pickle.loads(pickle.dumps(found[0])) == found[0]
    # numba's OpenMP threading layer makes fork() unsafe: workers must be spawned
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        results = list(pool.map(evaluate_case, found, [options] * len(found)))
    serial = [evaluate_case(c, options) for c in found]
    for a, b in zip(results, serial, strict=True):
        assert a.case_id == b.case_id and a.stats.equals(b.stats)


@pytest.mark.parametrize("dtype", [np.complex64, [("x", "<f4")], "<U2", "<M8[s]"])
@pytest.mark.parametrize("fmt", ["npy", "npz", "nnunet-v2"])
def test_non_probability_dtypes_are_named(tmp_path, dtype, fmt):
    """Complex, structured, text and date arrays: one message naming the dtype, whatever the
    reader (never numpy's own casting errors)."""
    lab, probs = make_case(SHAPE, 3, seed=11)
    write_label(tmp_path / "labels" / "c0.nii.gz", lab, AFFINE)
    stored = np.ascontiguousarray(probs.transpose(0, 3, 2, 1)).astype(np.float32)
    dtype = np.dtype(dtype)
    bad = stored.view(dtype) if dtype.kind == "V" else stored.astype(dtype)  # structured
    pred = tmp_path / "pred"
    options = {"layout": "ckji", "npz_key": "probs"} if fmt != "nnunet-v2" else {}
    if fmt == "npy":
        pred.mkdir()
        np.save(pred / "c0.npy", bad)
    elif fmt == "npz":
        pred.mkdir()
        np.savez(pred / "c0.npz", probs=bad)
    else:
        write_nnunet_v2(pred, {"c0": (probs, AFFINE)}, {"background": 0, "a": 1, "b": 2})
        np.savez_compressed(pred / "c0.npz", probabilities=bad)
    result = evaluate_folder(pred, tmp_path / "labels", **options)
    (error,) = result.errors
    assert f"dtype {dtype} is not a probability dtype (expected float or integer)" \
        in error.message, error.message
    assert str(pred / f"c0.{'npy' if fmt == 'npy' else 'npz'}") in error.message


@pytest.mark.skipif(np.dtype(np.longdouble).itemsize <= 8, reason="long double is float64")
def test_extended_floats_are_named(tmp_path):
    lab, probs = make_case(SHAPE, 3, seed=11)
    write_label(tmp_path / "labels" / "c0.nii.gz", lab, AFFINE)
    (tmp_path / "pred").mkdir()
    np.save(tmp_path / "pred" / "c0.npy", probs.astype(np.longdouble))
    (error,) = evaluate_folder(tmp_path / "pred", tmp_path / "labels", layout="cijk").errors
    assert (f"dtype {np.dtype(np.longdouble)} is not a probability dtype (expected float16, "
            "float32 or float64, or integer)") in error.message


def test_integer_arrays_are_quantised_probabilities_with_scale(tmp_path):
    """A uint8 ``.npy`` folder with ``scale=1/255`` gives the numbers of the same
    probabilities stored as floats; without the scale it is refused, saying to give one."""
    from calibviz import evaluate_folder
    from calibviz.synthetic import make_case, write_label

    quantised, floats, labels = tmp_path / "q", tmp_path / "f", tmp_path / "labels"
    for folder in (quantised, floats):
        folder.mkdir()
    for i in range(2):
        label, probs = make_case((12, 10, 8), 3, seed=i)
        write_label(labels / f"c{i}.nii.gz", label)
        q = np.rint(probs * 255).astype(np.uint8)
        np.save(quantised / f"c{i}.npy", q)
        np.save(floats / f"c{i}.npy", q.astype(np.float64) / 255)
    scaled = evaluate_folder(quantised, labels, layout="cijk", scale=1 / 255)
    plain = evaluate_folder(floats, labels, layout="cijk")
    assert not scaled.errors and not plain.errors
    for a, b in zip(scaled.stats, plain.stats, strict=True):
        np.testing.assert_array_equal(a.count, b.count)
        np.testing.assert_allclose(a.sum_p, b.sum_p, rtol=1e-12)
        np.testing.assert_array_equal(a.sum_y, b.sum_y)
    refused = evaluate_folder(quantised, labels, layout="cijk")
    assert len(refused.errors) == 2
    assert all("give the scale option" in e.message for e in refused.errors)
