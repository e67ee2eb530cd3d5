"""One deliberately broken file per check: each gives its own clear message naming the case and
both files, the other cases are still evaluated, and nothing is written."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from calibviz import evaluate_folder
from calibviz.synthetic import (
    make_case,
    write_label,
    write_nifti,
    write_nnunet_v1,
    write_nnunet_v2,
)

SHAPE = (12, 12, 6)
AFFINE = np.array([[0.8, 0, 0, -10], [0, 0.8, 0, 5], [0, 0, 2.5, 30], [0, 0, 0, 1]])


def good_and_bad(tmp_path, *, bad_probs=None, bad_label=None, bad_affine=None, bad_raw=None,
                 write_bad_label=True):
    """Case ``good`` and case ``bad`` as 4-D NIfTI; returns the folders."""
    pred, labels = tmp_path / "pred", tmp_path / "labels"
    for case_id, seed in (("good", 0), ("bad", 1)):
        lab, probs = make_case(SHAPE, 3, seed=seed)
        affine = AFFINE
        if case_id == "bad":
            probs = probs if bad_probs is None else bad_probs(probs)
            lab = lab if bad_label is None else bad_label(lab)
            affine = AFFINE if bad_affine is None else bad_affine
            if not write_bad_label:
                lab = None
        if case_id == "bad" and bad_raw is not None:
            write_nifti(pred / "bad.nii.gz", bad_raw, affine)
        else:
            write_nifti(pred / f"{case_id}.nii.gz", np.moveaxis(probs, 0, -1), affine)
        if lab is not None:
            write_label(labels / f"{case_id}.nii.gz", lab, AFFINE)
    return pred, labels


def the_error(result, case="bad"):
    assert "good" in result.cases, result.problems
    assert case not in result.cases
    errors = [p for p in result.problems if p.severity == "error" and p.case == case]
    assert len(errors) == 1, result.problems
    message = errors[0].message
    assert message.startswith(f"case {case}:")
    return message


def listing(*folders):
    return sorted(str(p) for f in folders for p in f.rglob("*"))


def test_shifted_affine(tmp_path):
    shifted = AFFINE.copy()
    shifted[0, 3] += 0.5
    pred, labels = good_and_bad(tmp_path, bad_affine=shifted)
    before = listing(pred, labels)
    message = the_error(evaluate_folder(pred, labels))
    assert "affine" in message and "differs from the label's by up to 0.5" in message
    assert "bad.nii.gz" in message and str(labels / "bad.nii.gz") in message
    assert listing(pred, labels) == before  # nothing written


def test_transposed_volume(tmp_path):
    lab, probs = make_case((12, 10, 6), 3, seed=1)
    pred, labels = good_and_bad(tmp_path, bad_label=lambda _: lab,
                                bad_raw=np.moveaxis(probs, 0, -1).transpose(1, 0, 2, 3))
    message = the_error(evaluate_folder(pred, labels))
    assert "spatial shape (10, 12, 6)" in message and "(12, 10, 6)" in message


def test_reversed_volume_suggests_layout(tmp_path):
    lab, probs = make_case((12, 10, 6), 3, seed=1)
    pred, labels = good_and_bad(tmp_path, bad_label=lambda _: lab,
                                bad_raw=np.moveaxis(probs, 0, -1).transpose(2, 1, 0, 3))
    message = the_error(evaluate_folder(pred, labels))
    assert "reversed" in message and "layout" in message


def test_probabilities_of_1_3(tmp_path):
    def broken(p):
        p = p.copy()
        p[1, 2, 2, 2] = 1.3
        return p

    message = the_error(evaluate_folder(*good_and_bad(tmp_path, bad_probs=broken)))
    assert "range over" in message and "1.3" in message and "label1" in message


def test_small_excursions_are_clipped_with_a_warning(tmp_path):
    def slightly(p):
        p = p.copy()
        p[1, 2, 2, 2] = 1.0005
        return p

    result = evaluate_folder(*good_and_bad(tmp_path, bad_probs=slightly))
    assert result.cases == ("bad", "good",)
    assert any("clipped" in p.message for p in result.warnings)
    assert result.stats[0].n_clipped.sum() == 1


def test_nan(tmp_path):
    def broken(p):
        p = p.copy()
        p[2, 0, 0, 0] = np.nan
        return p

    message = the_error(evaluate_folder(*good_and_bad(tmp_path, bad_probs=broken)))
    assert "non-finite" in message and "label2" in message


def test_missing_label_file(tmp_path):
    pred, labels = good_and_bad(tmp_path, write_bad_label=False)
    result = evaluate_folder(pred, labels)
    assert result.cases == ("good",)
    (warning,) = result.problems
    assert warning.severity == "warning" and "has no label file" in warning.message
    assert "bad.nii.gz" in warning.message
    strict = evaluate_folder(pred, labels, strict=True)
    assert strict.cases == ("good",) and strict.problems[0].severity == "error"


def test_undeclared_label_value(tmp_path):
    def seven(lab):
        lab = lab.copy()
        lab[0, 0, :2] = 7
        return lab

    message = the_error(evaluate_folder(*good_and_bad(tmp_path, bad_label=seven)))
    assert "values [7]" in message and "2 voxels" in message and "no class declares" in message


def test_non_integral_label(tmp_path):
    pred, labels = good_and_bad(tmp_path)
    lab, _ = make_case(SHAPE, 3, seed=1)
    write_nifti(labels / "bad.nii.gz", lab.astype(np.float32) + 0.25, AFFINE)
    message = the_error(evaluate_folder(pred, labels))
    assert "non-integral" in message


def test_hard_mask_as_probabilities(tmp_path):
    lab, _ = make_case(SHAPE, 2, seed=1)
    pred, labels = good_and_bad(tmp_path, bad_label=lambda _: lab,
                                bad_raw=(lab == 1).astype(np.uint8))
    message = the_error(evaluate_folder(pred, labels))
    assert "hard segmentation mask" in message


def test_unscaled_integers_need_a_scale(tmp_path):
    lab, probs = make_case(SHAPE, 2, seed=1)
    raw = np.round(probs[1] * 255).astype(np.uint8)
    pred, labels = good_and_bad(tmp_path, bad_label=lambda _: lab, bad_raw=raw)
    assert "scale" in the_error(evaluate_folder(pred, labels))


def test_truncated_nii_gz(tmp_path):
    pred, labels = good_and_bad(tmp_path)
    data = (pred / "bad.nii.gz").read_bytes()
    (pred / "bad.nii.gz").write_bytes(data[: len(data) // 2])
    message = the_error(evaluate_folder(pred, labels))
    assert "bad.nii.gz" in message and ("cannot read" in message or "ends" in message)


def test_truncated_uncompressed_header(tmp_path):
    pred, labels = good_and_bad(tmp_path)
    (pred / "bad.nii.gz").write_bytes(gzip.compress(b"\0" * 40))
    assert "cannot read" in the_error(evaluate_folder(pred, labels))


def test_empty_folder(tmp_path):
    (tmp_path / "pred").mkdir()
    write_label(tmp_path / "labels" / "a.nii.gz", np.zeros(SHAPE, np.uint8))
    with pytest.raises(ValueError, match="no prediction files found in"):
        evaluate_folder(tmp_path / "pred", tmp_path / "labels")
    with pytest.raises(ValueError, match="does not exist"):
        evaluate_folder(tmp_path / "nowhere", tmp_path / "labels")


def test_softmax_sums_warning(tmp_path):
    result = evaluate_folder(*good_and_bad(tmp_path, bad_probs=lambda p: p * 0.9))
    assert result.cases == ("bad", "good",)
    (warning,) = result.warnings
    assert warning.case == "bad" and "100.00% of voxels" in warning.message


def test_qform_sform_disagree_warning(tmp_path):
    import nibabel as nib

    pred, labels = good_and_bad(tmp_path)
    img = nib.load(pred / "bad.nii.gz")
    img = nib.Nifti1Image(np.asanyarray(img.dataobj), AFFINE)
    qform = AFFINE.copy()
    qform[1, 3] += 3
    img.set_qform(qform, code=1)
    img.set_sform(AFFINE, code=1)
    nib.save(img, pred / "bad.nii.gz")
    result = evaluate_folder(pred, labels)
    assert result.cases == ("bad", "good",)
    assert any("qform and sform disagree" in p.message for p in result.warnings)


def test_nnunet_self_check_catches_in_plane_swap(tmp_path):
    cases, segs = {}, {}
    for i, case_id in enumerate(("bad", "good")):
        lab, probs = make_case(SHAPE, 3, seed=i)
        write_label(tmp_path / "labels" / f"{case_id}.nii.gz", lab, AFFINE)
        segs[case_id] = np.argmax(probs, axis=0).astype(np.uint8)
        if case_id == "bad":  # equal in-plane sizes: the shape check cannot see this
            probs = probs.transpose(0, 2, 1, 3)
        cases[case_id] = (probs, AFFINE)
    write_nnunet_v2(tmp_path / "pred", cases, {"background": 0, "a": 1, "b": 2},
                    segmentations=segs)
    message = the_error(evaluate_folder(tmp_path / "pred", tmp_path / "labels"))
    assert "self-check" in message and "argmax" in message
    result = evaluate_folder(tmp_path / "pred", tmp_path / "labels", self_check=False)
    assert result.cases == ("bad", "good",)


def test_nnunet_v1_cropped(tmp_path):
    for i, case_id in enumerate(("bad", "good")):
        lab, probs = make_case(SHAPE, 3, seed=i)
        write_label(tmp_path / "labels" / f"{case_id}.nii.gz", lab, AFFINE)
        if case_id == "bad":
            probs = probs[:, 1:-1, 2:]
        write_nnunet_v1(tmp_path / "pred", case_id, probs, AFFINE)
    message = the_error(evaluate_folder(tmp_path / "pred", tmp_path / "labels"))
    assert "cropped" in message


def test_nnunet_wrong_channel_count(tmp_path):
    lab, probs = make_case(SHAPE, 3, seed=0)
    write_label(tmp_path / "labels" / "good.nii.gz", lab, AFFINE)
    write_label(tmp_path / "labels" / "bad.nii.gz", lab, AFFINE)
    write_nnunet_v2(tmp_path / "pred", {"good": (probs, AFFINE), "bad": (probs[:2], AFFINE)},
                    {"background": 0, "a": 1, "b": 2})
    message = the_error(evaluate_folder(tmp_path / "pred", tmp_path / "labels"))
    assert "defines 3 channels" in message and "has 2" in message


# ------------------------------------------------------------------ activation on probabilities
@pytest.mark.parametrize("version", ["v2", "v1"])
def test_activation_refused_on_nnunet_probabilities(tmp_path, version):
    cases = {}
    for i, case_id in enumerate(("bad", "good")):
        lab, probs = make_case(SHAPE, 3, seed=i)
        write_label(tmp_path / "labels" / f"{case_id}.nii.gz", lab, AFFINE)
        if version == "v2":
            cases[case_id] = (probs, AFFINE)
        else:
            write_nnunet_v1(tmp_path / "pred", case_id, probs, AFFINE)
    if version == "v2":
        write_nnunet_v2(tmp_path / "pred", cases, {"background": 0, "a": 1, "b": 2})
    for activation in ("softmax", "sigmoid"):
        with pytest.raises(ValueError, match=f"--activation {activation}.*nnU-Net.*hold "
                                             "probabilities.*leave --activation out"):
            evaluate_folder(tmp_path / "pred", tmp_path / "labels", activation=activation)


def test_activation_refused_up_front_by_a_run(tmp_path):
    from calibviz.options import EvalOptions
    from calibviz.run import UsageError, run_evaluation

    lab, probs = make_case(SHAPE, 3, seed=0)
    write_label(tmp_path / "labels" / "c0.nii.gz", lab, AFFINE)
    write_nnunet_v2(tmp_path / "pred", {"c0": (probs, AFFINE)},
                    {"background": 0, "a": 1, "b": 2})
    with pytest.raises(UsageError, match="--activation softmax"):
        run_evaluation(tmp_path / "pred", tmp_path / "labels", tmp_path / "out",
                       EvalOptions(activation="softmax"), figures=False, n_bootstrap=0)
    assert not (tmp_path / "out" / "per_image.csv").exists()


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_activation_on_probabilities_warns(tmp_path, activation):
    pred, labels = good_and_bad(tmp_path)
    result = evaluate_folder(pred, labels, activation=activation)
    assert result.cases == ("bad", "good")
    doubled = [p for p in result.warnings if "already look like probabilities" in p.message]
    assert [p.case for p in doubled] == ["bad", "good"]  # one per case, not per voxel
    message = doubled[0].message
    assert f"--activation {activation}" in message and "channels sum to 1" in message
    assert "leave --activation out" in message and str(pred / "bad.nii.gz") in message
    # no sums warning suggesting that the input is at fault: the one warning explains it
    assert len(result.warnings) == 2, result.warnings


def test_activation_on_single_channel_probabilities_warns(tmp_path):
    lab, probs = make_case(SHAPE, 2, seed=3)
    write_label(tmp_path / "labels" / "c0.nii.gz", lab, AFFINE)
    write_nifti(tmp_path / "pred" / "c0.nii.gz", probs[1].astype(np.float32), AFFINE)
    result = evaluate_folder(tmp_path / "pred", tmp_path / "labels", activation="sigmoid")
    (warning,) = result.warnings
    assert "already look like probabilities (in [0, 1])" in warning.message


def _logit_folders(tmp_path):
    """One case whose prediction holds softmax logits (log p + 1), and its label."""
    pred, labels = tmp_path / "pred", tmp_path / "labels"
    lab, probs = make_case(SHAPE, 3, seed=0)
    write_label(labels / "c0.nii.gz", lab, AFFINE)
    logits = np.log(probs.astype(np.float64)) + 1.0
    write_nifti(pred / "c0.nii.gz", np.moveaxis(logits, 0, -1).astype(np.float32), AFFINE)
    return pred, labels


def test_sigmoid_on_softmax_logits_questions_the_activation(tmp_path):
    pred, labels = _logit_folders(tmp_path)
    (warning,) = evaluate_folder(pred, labels, activation="sigmoid").warnings
    assert "channel sums differ from 1" in warning.message
    assert "after --activation sigmoid: is that the model's activation?" in warning.message


def test_activation_on_logits_gives_no_probability_warning(tmp_path):
    pred, labels = _logit_folders(tmp_path)
    result = evaluate_folder(pred, labels, activation="softmax")
    assert result.cases == ("c0",)
    assert not any("already look like" in p.message for p in result.warnings)


# ------------------------------------------------------------------ mask values
def mask_case(tmp_path, mask):
    pred, labels = good_and_bad(tmp_path)
    masks = tmp_path / "masks"
    box = np.zeros(SHAPE, np.uint8)
    box[2:10, 2:10, 1:5] = 1
    write_label(masks / "good.nii.gz", box, AFFINE)
    write_nifti(masks / "bad.nii.gz", mask(box), AFFINE)
    return evaluate_folder(pred, labels, mask_dir=str(masks)), masks / "bad.nii.gz"


def with_nan(box):
    out = box.astype(np.float32)
    out[0, 0, 0] = np.nan
    return out


@pytest.mark.parametrize("mask, found", [
    (with_nan, "NaN"),
    (lambda box: box.astype(np.float32) * 0.5, "0.5"),
    (lambda box: box * 7, "7"),
    (lambda box: box.astype(np.int16) - 1, "-1"),
])
def test_mask_values_must_be_0_or_1(tmp_path, mask, found):
    result, path = mask_case(tmp_path, mask)
    message = the_error(result)
    assert f"mask {path}" in message and "expected 0 and 1" in message
    assert found in message


@pytest.mark.parametrize("mask", [lambda box: box.astype(np.float32),
                                  lambda box: box.astype(bool).astype(np.uint8),
                                  lambda box: box.astype(np.float64)])
def test_binary_masks_pass(tmp_path, mask):
    result, _ = mask_case(tmp_path, mask)
    assert result.cases == ("bad", "good")
    assert result.stats[0].n_voxels[0] == 8 * 8 * 4


# ------------------------------------------------------------------ affine labels
def test_mask_affine_mismatch_names_the_mask(tmp_path):
    shifted = AFFINE.copy()
    shifted[2, 3] += 3
    pred, labels = good_and_bad(tmp_path)
    write_label(tmp_path / "masks" / "good.nii.gz", np.ones(SHAPE, np.uint8), AFFINE)
    write_label(tmp_path / "masks" / "bad.nii.gz", np.ones(SHAPE, np.uint8), shifted)
    message = the_error(evaluate_folder(pred, labels, mask_dir=str(tmp_path / "masks")))
    assert f"mask affine {np.round(shifted, 4).tolist()}" in message
    assert "prediction affine" not in message


def test_prediction_affine_mismatch_names_the_prediction(tmp_path):
    shifted = AFFINE.copy()
    shifted[0, 3] += 0.5
    message = the_error(evaluate_folder(*good_and_bad(tmp_path, bad_affine=shifted)))
    assert f"prediction affine {np.round(shifted, 4).tolist()}" in message


def test_segmentation_affine_mismatch_names_the_segmentation(tmp_path):
    shifted = AFFINE.copy()
    shifted[1, 3] += 2
    cases = {}
    for i, case_id in enumerate(("bad", "good")):
        lab, probs = make_case(SHAPE, 3, seed=i)
        write_label(tmp_path / "labels" / f"{case_id}.nii.gz", lab, AFFINE)
        cases[case_id] = (probs, AFFINE)
    write_nnunet_v2(tmp_path / "pred", cases, {"background": 0, "a": 1, "b": 2})
    seg = np.asanyarray(__import__("nibabel").load(tmp_path / "pred" / "bad.nii.gz").dataobj)
    write_label(tmp_path / "pred" / "bad.nii.gz", seg, shifted)
    message = the_error(evaluate_folder(tmp_path / "pred", tmp_path / "labels"))
    assert f"nnU-Net segmentation affine {np.round(shifted, 4).tolist()}" in message
    assert "prediction affine" not in message


# ------------------------------------------------------------------ values outside [0, 1]
@pytest.mark.parametrize("channel", [0, 1])
def test_one_bad_voxel_is_counted_not_called_logits(tmp_path, channel):
    def broken(p):
        p = p.copy()
        p[channel, 2, 2, 2] = -0.5
        return p

    message = the_error(evaluate_folder(*good_and_bad(tmp_path, bad_probs=broken)))
    n = int(np.prod(SHAPE))
    assert f"1 of {n} values" in message and "-0.5" in message
    assert "logits" not in message and "--activation" not in message
    assert ("'background' (channel 0)" if channel == 0 else "'label1'") in message
    # the overall range of the map, not only that of the offending value
    assert "[-0.5, -0.5]" not in message


@pytest.mark.parametrize("channel", [0, 1])
def test_logits_are_still_called_logits(tmp_path, channel):
    def logits(p):
        p = p.copy()
        p[channel] = np.log(p[channel] + 1e-6)
        return p

    message = the_error(evaluate_folder(*good_and_bad(tmp_path, bad_probs=logits)))
    assert "these look like logits" in message and "--activation" in message
    assert f"of {int(np.prod(SHAPE))} values" in message


# ------------------------------------------------------------------ stored types
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_nifti_is_not_a_probability_dtype(tmp_path, dtype):
    pred, labels = good_and_bad(tmp_path)
    lab, probs = make_case(SHAPE, 3, seed=1)
    write_nifti(pred / "bad.nii.gz", np.moveaxis(probs, 0, -1).astype(dtype), AFFINE)
    for activation in (None, "softmax"):
        message = the_error(evaluate_folder(pred, labels, activation=activation))
        assert (f"dtype {np.dtype(dtype)} is not a probability dtype (expected float or "
                "integer)") in message
        assert str(pred / "bad.nii.gz") in message


def test_percentages_are_not_called_logits_alone(tmp_path):
    message = the_error(evaluate_folder(*good_and_bad(tmp_path, bad_probs=lambda p: p * 100)))
    assert "these look like logits" not in message
    assert "above 1" in message and "another scale (percentages" in message
