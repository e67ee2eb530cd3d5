"""Faulty inputs (issue 10, the reading side): each builds a faulty folder next to a good case
and asserts that the fault is that case's error (or warning) in one line naming the case and
the file, that the good case is still evaluated, or that the folder is refused up front."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from calibviz import evaluate_folder
from calibviz.io import discover_cases
from calibviz.options import EvalOptions
from calibviz.synthetic import (
    make_case,
    write_label,
    write_monai,
    write_nifti,
    write_nnunet_v1,
    write_nnunet_v2,
)

SHAPE = (12, 10, 6)
SQUARE = (16, 16, 6)
AFFINE = np.diag([0.8, 0.8, 2.5, 1.0])
ROOT = Path(__file__).resolve().parents[1]
NNUNET_LABELS = {"background": 0, "liver": 1, "tumour": 2}


def write_folders(root: Path, n: int = 2, shape=SHAPE):
    """Cases c0..c{n-1}: labels and 4-D float32 NIfTI probabilities; returns the folders and
    the arrays."""
    pred, labels = root / "pred", root / "labels"
    data = {}
    for i in range(n):
        lab, probs = make_case(shape, 3, seed=i)
        write_label(labels / f"c{i}.nii.gz", lab, AFFINE)
        write_nifti(pred / f"c{i}.nii.gz", np.moveaxis(probs, 0, -1), AFFINE)
        data[f"c{i}"] = (lab, probs)
    return pred, labels, data


def problem_of(result, case: str, severity: str = "error"):
    """The one problem of ``case`` with ``severity``; its message is one line naming it."""
    found = [p for p in result.problems if p.case == case and p.severity == severity]
    assert len(found) == 1, result.problems
    assert "\n" not in found[0].message and f"case {case}" in found[0].message
    return found[0]


def assert_skipped(result, case: str, *words: str):
    problem = problem_of(result, case)
    assert case in result.skipped and case not in result.cases, result
    for word in words:
        assert word in problem.message, problem.message
    return problem


# ------------------------------------------------------------------ 1. unreadable files
def test_dangling_link_fifo_and_folder_are_case_errors(tmp_path):
    pred, labels, _ = write_folders(tmp_path, n=4)
    (pred / "c1.nii.gz").unlink()
    (pred / "c1.nii.gz").symlink_to(tmp_path / "gone.nii.gz")
    (pred / "c2.nii.gz").unlink()
    os.mkfifo(pred / "c2.nii.gz")  # opening it would block
    (labels / "c3.nii.gz").unlink()
    (labels / "c3.nii.gz").mkdir()
    result = evaluate_folder(pred, labels)
    assert result.cases == ("c0",)
    assert "dangling symbolic link" in assert_skipped(result, "c1", str(pred / "c1.nii.gz")).message
    assert_skipped(result, "c2", "FIFO", str(pred / "c2.nii.gz"))
    assert_skipped(result, "c3", "is a folder", str(labels / "c3.nii.gz"))


def test_every_file_a_case_reads_is_checked_first(tmp_path):
    """Masks and nnU-Net segmentations too; a FIFO named like an npz never blocks discovery."""
    cases, labels = {}, tmp_path / "labels"
    for i in range(3):
        lab, probs = make_case(SHAPE, 3, seed=i)
        write_label(labels / f"c{i}.nii.gz", lab, AFFINE)
        write_label(tmp_path / "masks" / f"c{i}.nii.gz", np.ones(SHAPE, np.uint8), AFFINE)
        cases[f"c{i}"] = (probs, AFFINE)
    pred = write_nnunet_v2(tmp_path / "nnunet", cases, NNUNET_LABELS)
    (pred / "c1.nii.gz").unlink()
    os.mkfifo(pred / "c1.nii.gz")
    (tmp_path / "masks" / "c2.nii.gz").unlink()
    (tmp_path / "masks" / "c2.nii.gz").symlink_to("nowhere.nii.gz")
    os.mkfifo(pred / "a_fifo.npz")
    result = evaluate_folder(pred, labels, mask_dir=str(tmp_path / "masks"))
    assert result.cases == ("c0",)
    assert_skipped(result, "c1", "FIFO", "nnU-Net segmentation")
    assert_skipped(result, "c2", "dangling", "mask")
    assert any(p.case == "a_fifo" and "has no label" in p.message for p in result.warnings)


@pytest.mark.parametrize("pattern", ["/etc/*", "../*.nii.gz"])
def test_patterns_outside_the_folder_are_usage_errors(tmp_path, pattern):
    pred, labels, _ = write_folders(tmp_path)
    with pytest.raises(ValueError, match="relative to its folder"):
        discover_cases(pred, labels, EvalOptions(pattern=pattern))
    with pytest.raises(ValueError, match="relative to its folder"):
        discover_cases(pred, labels, EvalOptions(label_pattern=pattern))


def test_empty_file_is_a_case_error(tmp_path):
    pred, labels, _ = write_folders(tmp_path)
    (pred / "c1.nii.gz").write_bytes(b"")
    assert_skipped(evaluate_folder(pred, labels), "c1", "empty", str(pred / "c1.nii.gz"))


def _world_readable_copy(tmp_path) -> Path:
    """A folder an unprivileged user can read (pytest's tmp folders are private to root)."""
    root = Path(tempfile.mkdtemp(prefix="calibviz-perm-"))
    root.chmod(0o755)
    return root


def _evaluate_as_nobody(root: str) -> None:
    """In a fresh (spawned) process: evaluate once as root, so every module is imported and
    every kernel compiled (an unprivileged user cannot read this Python's install), then as
    the unprivileged user ``nobody``; the results go to ``out.json``."""
    os.chdir(root)
    evaluate_folder("pred", "labels")
    os.setgid(65534)
    os.setuid(65534)
    r = evaluate_folder("pred", "labels")
    Path("out.json").write_text(json.dumps({
        "cases": r.cases, "skipped": r.skipped,
        "problems": [[p.case, p.severity, p.message] for p in r.problems]}))


def _as_nobody(root: Path) -> dict:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user (permission bits are "
                    "ignored for root, and a non-root user cannot become another one)")
    import multiprocessing

    process = multiprocessing.get_context("spawn").Process(target=_evaluate_as_nobody,
                                                           args=(str(root),))
    process.start()
    process.join(300)
    assert process.exitcode == 0, f"exit status {process.exitcode} (-11: a segfault)"
    return json.loads((root / "out.json").read_text())


@pytest.mark.parametrize("what", ["file", "case folder"])
def test_permission_denied_is_a_case_error_not_a_segfault(tmp_path, what):
    root = _world_readable_copy(tmp_path)
    try:
        labels = root / "labels"
        pred = root / "pred"
        for i in range(2):
            lab, probs = make_case(SHAPE, 3, seed=i)
            write_label(labels / f"c{i}.nii.gz", lab, AFFINE)
            write_monai(pred, f"c{i}", probs, AFFINE)
        for path in root.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        root.chmod(0o777)
        if what == "file":
            (pred / "c1" / "c1_seg.nii.gz").chmod(0)
        else:
            (pred / "c1").chmod(0)
        out = _as_nobody(root)
        assert out["cases"] == ["c0"] and out["skipped"] == ["c1"], out
        (message,) = [m for case, sev, m in out["problems"] if case == "c1" and sev == "error"]
        assert "Permission denied" in message or "cannot be read" in message, message
        assert "pred/c1" in message
    finally:
        for path in root.rglob("*"):
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------ 2. memory bombs
PEAK_RSS = """
import resource, sys, calibviz
kwargs = eval(sys.argv[1])
# a first run compiles the kernels (LLVM alone can take a few hundred MB): measure after it
calibviz.evaluate_folder("pred", "labels", **kwargs)
try:  # reset the peak (Linux): then VmHWM is this run's peak alone
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
except OSError:
    pass
r = calibviz.evaluate_folder("pred", "labels", **kwargs)
print([p.message for p in r.problems if p.severity == "error"])
try:
    peak = next(int(line.split()[1]) for line in open("/proc/self/status")
                if line.startswith("VmHWM"))
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("peak_mb", peak / 1024)
"""


def _peak_mb(root: Path, **kwargs) -> tuple[float, str]:
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, repr(kwargs)], cwd=root,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    return float(lines[-1].split()[1]), lines[-2]


def _nifti_bomb(path: Path, shape, dtype) -> None:
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    with gzip.open(path, "wb") as handle:
        handle.write(header.binaryblock + b"\0" * 4 + b"\0" * 1000)


def test_nifti_header_bomb_is_refused_before_reading(tmp_path):
    pred, labels, _ = write_folders(tmp_path)
    _nifti_bomb(labels / "c1.nii.gz", (2048, 2048, 1024), np.uint8)
    _nifti_bomb(pred / "c1.nii.gz", (2048, 2048, 1024), np.float32)
    peak, errors = _peak_mb(tmp_path)
    assert peak < 600, peak
    assert "c1" in errors and "truncated or corrupt" in errors, errors


def test_npz_header_bomb_with_channel_last_layout(tmp_path):
    pred, labels, data = write_folders(tmp_path)
    for i in range(2):
        (pred / f"c{i}.nii.gz").unlink()
    np.save(pred / "c0.npy", np.moveaxis(data["c0"][1], 0, -1))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (1024, 1024, 512, 3)})
    with zipfile.ZipFile(pred / "c1.npz", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf, \
            zf.open("probs.npy", "w", force_zip64=True) as member:
        member.write(header.getvalue())
        zeros = b"\0" * 2**24
        for _ in range(48):  # 800 MB of zeros, < 1 MB on disk
            member.write(zeros)
    peak, errors = _peak_mb(tmp_path, layout="ijkc", npz_key="probs")
    assert peak < 600, peak
    assert "c1" in errors and "(1024, 1024, 512, 3)" in errors, errors


def test_channel_last_npz_streams_the_same_numbers(tmp_path):
    pred, labels, data = write_folders(tmp_path)
    for case in data:
        (pred / f"{case}.nii.gz").unlink()
    np.savez_compressed(pred / "c0.npz", probabilities=np.moveaxis(data["c0"][1], 0, -1))
    np.savez_compressed(pred / "c1.npz", probs=np.asfortranarray(data["c1"][1]))
    streamed = evaluate_folder(pred, labels, layout="ijkc", npz_key=None, format="npy")
    assert streamed.cases == ("c0",)  # c1 has another layout: its own error
    reference = evaluate_folder(*write_folders(tmp_path / "ref")[:2])
    assert streamed.stats[0].equals(reference.stats[0], rtol=1e-12, atol=0)
    fortran = evaluate_folder(pred, labels, layout="cijk", format="npy")
    assert "c1" in fortran.cases
    assert fortran.case("c1").equals(reference.case("c1"), rtol=1e-12, atol=0)


# ------------------------------------------------------------------ 3. npz keys
def test_npz_array_with_another_name_is_not_taken_for_probabilities(tmp_path):
    labels = tmp_path / "labels"
    cases = {}
    for i in range(2):
        lab, probs = make_case(SHAPE, 3, seed=i)
        write_label(labels / f"c{i}.nii.gz", lab, AFFINE)
        cases[f"c{i}"] = (probs, AFFINE)
    pred = write_nnunet_v2(tmp_path / "nnunet", cases, NNUNET_LABELS)
    with np.load(pred / "c1.npz") as npz:
        np.savez_compressed(pred / "c1.npz", seg=npz["probabilities"])
    result = evaluate_folder(pred, labels)
    assert result.cases == ("c0",)
    assert_skipped(result, "c1", "'seg'", "probabilities", str(pred / "c1.npz"))
    generic = tmp_path / "generic"
    generic.mkdir()
    np.savez_compressed(generic / "c0.npz", seg=cases["c0"][0])
    np.savez_compressed(generic / "c1.npz", arr_0=cases["c1"][0])
    result = evaluate_folder(generic, labels, layout="cijk")
    assert result.cases == ("c1",)
    assert_skipped(result, "c0", "['seg']", "npz_key")
    assert evaluate_folder(generic, labels, layout="cijk", npz_key="seg").cases == ("c0",)


def test_npz_key_for_an_nnunet_folder_is_a_usage_error(tmp_path):
    lab, probs = make_case(SHAPE, 3, seed=0)
    write_label(tmp_path / "labels" / "c0.nii.gz", lab, AFFINE)
    pred = write_nnunet_v2(tmp_path / "nnunet", {"c0": (probs, AFFINE)}, NNUNET_LABELS)
    with pytest.raises(ValueError, match="npz-key 'probs' does not apply"):
        discover_cases(pred, tmp_path / "labels", EvalOptions(npz_key="probs"))
    with pytest.raises(ValueError, match="layout 'cijk' does not apply"):
        discover_cases(pred, tmp_path / "labels", EvalOptions(layout="cijk"))


# ------------------------------------------------------------------ 4. names
def test_two_files_for_one_case_are_ambiguous(tmp_path):
    pred, labels, data = write_folders(tmp_path, n=3)
    write_nifti(pred / "c1.nii", np.moveaxis(data["c1"][1], 0, -1), AFFINE)
    write_label(labels / "c2_seg.nii.gz", data["c2"][0], AFFINE)
    result = evaluate_folder(pred, labels)
    assert result.cases == ("c0",)
    assert_skipped(result, "c1", "ambiguous", str(pred / "c1.nii"), str(pred / "c1.nii.gz"))
    assert_skipped(result, "c2", "ambiguous", str(labels / "c2.nii.gz"),
                   str(labels / "c2_seg.nii.gz"))


@pytest.mark.parametrize("name", ["..%2F..%2Fc1.nii.gz", "..\\..\\c1.nii.gz", ".c1.nii.gz",
                                  "c1.nii.gz.txt", "c1.npy"])
def test_every_file_not_used_is_reported(tmp_path, name):
    pred, labels, _ = write_folders(tmp_path)
    (pred / "c1.nii.gz").rename(pred / name)
    result = evaluate_folder(pred, labels)
    assert result.cases == ("c0",)
    (unused,) = [p for p in result.warnings if p.file == str(pred / name)]
    assert "not used" in unused.message and name in unused.message
    assert any(p.case == "c1" and "has no prediction" in p.message for p in result.problems)


def test_nnunet_companions_are_not_reported_as_unused(tmp_path):
    lab, probs = make_case(SHAPE, 3, seed=0)
    write_label(tmp_path / "labels" / "c0.nii.gz", lab, AFFINE)
    pred = write_nnunet_v2(tmp_path / "nnunet", {"c0": (probs, AFFINE)}, NNUNET_LABELS)
    (pred / "notes.txt").write_text("x")
    result = evaluate_folder(pred, tmp_path / "labels")
    assert [p.file for p in result.problems] == [str(pred / "notes.txt")]


# ------------------------------------------------------------------ 5. nothing to score
def test_zero_size_volume_and_empty_mask_are_case_errors(tmp_path):
    pred, labels, data = write_folders(tmp_path, n=3)
    write_nifti(labels / "c1.nii.gz", np.zeros((0, 10, 6), dtype=np.uint8), AFFINE)
    write_nifti(pred / "c1.nii.gz", np.zeros((0, 10, 6, 3), dtype=np.float32), AFFINE)
    masks = tmp_path / "masks"
    for case in data:
        mask = np.zeros(SHAPE, dtype=np.uint8) if case == "c2" else np.ones(SHAPE, np.uint8)
        write_label(masks / f"{case}.nii.gz", mask, AFFINE)
    (masks / "c1.nii.gz").unlink()
    write_nifti(masks / "c1.nii.gz", np.zeros((0, 10, 6), dtype=np.uint8), AFFINE)
    result = evaluate_folder(pred, labels, mask_dir=str(masks))
    assert result.cases == ("c0",)
    assert_skipped(result, "c1", "zero-size")
    assert_skipped(result, "c2", "excludes every voxel", str(masks / "c2.nii.gz"))
    assert all(np.isfinite(s.count).all() for s in result.stats)


# ------------------------------------------------------------------ 6. not probabilities
def test_all_zero_and_hard_maps_are_scored_with_a_warning(tmp_path):
    pred, labels, data = write_folders(tmp_path, n=4)
    write_nifti(pred / "c1.nii.gz", np.zeros((*SHAPE, 3), dtype=np.float32), AFFINE)
    one_hot = np.eye(3, dtype=np.float32)[data["c2"][0]]
    write_nifti(pred / "c2.nii.gz", one_hot, AFFINE)
    (pred / "c3.nii.gz").unlink()
    write_nifti(tmp_path / "scaled" / "c3.nii.gz", (one_hot * 255).astype(np.uint8), AFFINE,
                slope=1 / 255)
    result = evaluate_folder(pred, labels)
    assert result.cases == ("c0", "c1", "c2") and not result.errors
    assert "every probability is 0:" in problem_of(result, "c1", "warning").message
    scaled = evaluate_folder(tmp_path / "scaled", labels)
    assert scaled.cases == ("c3",)
    for res, case in ((result, "c2"), (scaled, "c3")):
        assert "every probability is 0 or 1: a hard segmentation, not probabilities; " \
               "calibration of it is meaningless" in problem_of(res, case, "warning").message
    assert not [p for p in result.problems if p.case == "c0"]


# ------------------------------------------------------------------ 7. false warnings
def test_quantised_maps_give_no_false_warnings(tmp_path):
    _, labels, data = write_folders(tmp_path, n=2)
    for slope in (1 / 255, None):
        pred = tmp_path / f"quantised-{bool(slope)}"
        for case, (_, probs) in data.items():
            quantised = np.rint(np.moveaxis(probs, 0, -1) * 255).astype(np.uint8)
            write_nifti(pred / f"{case}.nii.gz", quantised, AFFINE, slope=slope)
        scaled = evaluate_folder(pred, labels, scale=None if slope else "1/255")
        assert scaled.cases == ("c0", "c1") and not scaled.problems, scaled.problems
    unscaled = evaluate_folder(pred, labels)
    assert not unscaled.warnings, unscaled.warnings
    assert_skipped(unscaled, "c1", "scale")


# ------------------------------------------------------------------ 8. axes
def test_transposed_square_nifti_with_the_affine_kept_is_flagged(tmp_path):
    pred, labels, data = write_folders(tmp_path, shape=SQUARE)
    swapped = np.swapaxes(data["c1"][1], 1, 2)
    write_nifti(pred / "c1.nii.gz", np.moveaxis(swapped, 0, -1), AFFINE)
    result = evaluate_folder(pred, labels)
    assert "looks transposed" in problem_of(result, "c1", "warning").message
    assert "i and j" in problem_of(result, "c1", "warning").message
    assert not [p for p in result.problems if p.case == "c0"]


def test_wrong_layout_on_square_arrays_is_flagged(tmp_path):
    pred, labels, data = write_folders(tmp_path, shape=SQUARE)
    for case, (_, probs) in data.items():
        (pred / f"{case}.nii.gz").unlink()
        np.save(pred / f"{case}.npy", probs)  # stored cijk
    result = evaluate_folder(pred, labels, layout="cjik")
    for case in data:
        assert "looks transposed" in problem_of(result, case, "warning").message


# ------------------------------------------------------------------ 9. diagnoses
def test_nnunet_folder_without_probabilities(tmp_path):
    lab, probs = make_case(SHAPE, 3, seed=0)
    write_label(tmp_path / "labels" / "c0.nii.gz", lab, AFFINE)
    pred = write_nnunet_v2(tmp_path / "nnunet", {"c0": (probs, AFFINE)}, NNUNET_LABELS)
    for path in pred.glob("*.npz"):
        path.unlink()
    with pytest.raises(ValueError, match="this folder holds segmentations, not probabilities: "
                                         "rerun nnU-Net with --save_probabilities"):
        discover_cases(pred, tmp_path / "labels")


def test_channel_first_nifti_is_diagnosed(tmp_path):
    pred, labels, data = write_folders(tmp_path)
    write_nifti(pred / "c1.nii.gz", data["c1"][1], AFFINE)  # (C, i, j, k)
    problem = assert_skipped(evaluate_folder(pred, labels), "c1", "channel axis looks first")
    assert "another grid" not in problem.message


def test_swapped_folders_are_refused_once(tmp_path):
    pred, labels, _ = write_folders(tmp_path)
    with pytest.raises(ValueError, match="the folders look swapped: .* holds label maps; .*"
                                         "give the predictions first"):
        discover_cases(labels, pred)
    discover_cases(pred, labels)  # the right order passes


def test_logits_are_diagnosed_and_activation_reads_them(tmp_path):
    pred, labels, data = write_folders(tmp_path)
    logits = tmp_path / "logits"
    for case, (_, probs) in data.items():
        values = np.log(probs.astype(np.float64)) + 3.0 * (case == "c1")
        write_nifti(logits / f"{case}.nii.gz", np.moveaxis(values, 0, -1).astype(np.float32),
                    AFFINE)
    plain = evaluate_folder(logits, labels)
    for case in data:
        assert_skipped(plain, case, "these look like logits: apply softmax or pass "
                                    "--activation softmax|sigmoid")
    activated = evaluate_folder(logits, labels, activation="softmax")
    direct = evaluate_folder(pred, labels)
    assert activated.cases == direct.cases == ("c0", "c1")
    for a, b in zip(activated.stats, direct.stats, strict=True):
        np.testing.assert_allclose(a.count, b.count, atol=2)
        np.testing.assert_allclose(a.sum_p, b.sum_p, rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="activation"):
        EvalOptions(activation="relu")


def test_sigmoid_activation_of_a_binary_map(tmp_path):
    lab, probs = make_case(SHAPE, 2, seed=3)
    write_label(tmp_path / "labels" / "c0.nii.gz", lab, AFFINE)
    p = np.clip(probs[1].astype(np.float64), 1e-6, 1 - 1e-6)
    write_nifti(tmp_path / "pred" / "c0.nii.gz", p.astype(np.float32), AFFINE)
    write_nifti(tmp_path / "logit" / "c0.nii.gz", np.log(p / (1 - p)).astype(np.float32), AFFINE)
    direct = evaluate_folder(tmp_path / "pred", tmp_path / "labels")
    activated = evaluate_folder(tmp_path / "logit", tmp_path / "labels", activation="sigmoid")
    np.testing.assert_allclose(activated.stats[0].sum_p, direct.stats[0].sum_p, rtol=1e-4)


# ------------------------------------------------------------------ 10. exotic files
@pytest.mark.parametrize("content", [b"not a nifti at all", gzip.compress(b"\0" * 100),
                                     gzip.compress(b"x" * 400)[:30]])
def test_exotic_files_are_one_line_case_errors(tmp_path, content):
    pred, labels, _ = write_folders(tmp_path)
    (pred / "c1.nii.gz").write_bytes(content)
    (labels / "c0.nii.gz").write_bytes(content)
    result = evaluate_folder(pred, labels)
    assert result.cases == ()
    assert_skipped(result, "c0", str(labels / "c0.nii.gz"))
    assert_skipped(result, "c1", str(pred / "c1.nii.gz"))


# ------------------------------------------------------------------ inputs that are not inputs
def test_out_in_or_equal_to_an_input_folder_is_refused_before_any_case(tmp_path):
    from calibviz.run import UsageError, run_evaluation

    pred, labels, _ = write_folders(tmp_path)
    masks = tmp_path / "masks"
    for case in ("c0", "c1"):
        write_label(masks / f"{case}.nii.gz", np.ones(SHAPE, np.uint8), AFFINE)
    (tmp_path / "link").symlink_to(pred)
    for out, folder in ((pred / "calib", pred), (pred, pred), (labels / "a" / "b", labels),
                        (masks / "out", masks), (tmp_path / "link" / "res", pred)):
        with pytest.raises(UsageError, match="(lies inside|is) the .* folder") as err:
            run_evaluation(pred, labels, out, EvalOptions(mask_dir=str(masks)), workers=1,
                           figures=False, n_bootstrap=0)
        assert str(out) in str(err.value) and str(folder) in str(err.value)
        assert not (folder / "calib").exists() and not (labels / "a").exists()
    # next to the inputs (or holding them) is fine
    run_evaluation(pred, labels, tmp_path / "out", EvalOptions(), workers=1, figures=False,
                   n_bootstrap=0)


def test_the_same_folder_twice_is_refused(tmp_path):
    _, labels, _ = write_folders(tmp_path)
    (tmp_path / "again").symlink_to(labels)
    for second in (labels, tmp_path / "again"):
        with pytest.raises(ValueError, match="is the label folder") as err:
            discover_cases(labels, second)
        assert str(labels) in str(err.value)


def test_a_prediction_folder_of_label_maps_is_diagnosed(tmp_path):
    pred, labels, data = write_folders(tmp_path)
    segs = tmp_path / "segs"
    for case, (lab, _) in data.items():
        write_label(segs / f"{case}.nii.gz", lab, AFFINE)
    with pytest.raises(ValueError, match="seems to hold label maps") as err:
        discover_cases(segs, labels)
    assert str(segs / "c0.nii.gz") in str(err.value)
    discover_cases(segs, labels, EvalOptions(scale="1/255"))  # quantised: the user says so
    np.save(tmp_path / "c0.npy", data["c0"][0].astype(np.int16))
    arrays = tmp_path / "arrays"
    arrays.mkdir()
    (tmp_path / "c0.npy").rename(arrays / "c0.npy")
    with pytest.raises(ValueError, match="seems to hold label maps"):
        discover_cases(arrays, labels, EvalOptions(layout="ijk"))
    floats = tmp_path / "floats"  # label maps stored as float: values above 1
    for case, (lab, _) in data.items():
        write_nifti(floats / f"{case}.nii.gz", lab.astype(np.float32), AFFINE)
    with pytest.raises(ValueError, match="seems to hold label maps") as err:
        discover_cases(floats, labels)
    assert "scale" not in str(err.value)
    discover_cases(floats, labels, EvalOptions(activation="sigmoid"))  # logits, says the user
    hard = tmp_path / "hard"  # a float map of only 0 and 1 may be confident probabilities
    for case, (lab, _) in data.items():
        write_nifti(hard / f"{case}.nii.gz", (lab == 1).astype(np.float32), AFFINE)
    discover_cases(hard, labels)


def test_pickled_and_truncated_npy_are_named(tmp_path):
    pred, labels, data = write_folders(tmp_path, n=4)
    arrays = tmp_path / "arrays"
    arrays.mkdir()
    np.save(arrays / "c0.npy", data["c0"][1])
    objects = np.empty(3, dtype=object)
    objects[:] = [1, "x", None]
    np.save(arrays / "c1.npy", objects, allow_pickle=True)
    (arrays / "c2.npy").write_bytes(b"\x80\x04\x95" + b"\0" * 64)  # a raw pickle
    np.savez(arrays / "c4.npz", probs=objects, allow_pickle=True)
    (arrays / "c5.npz").write_bytes(b"\x80\x04\x95" + b"\0" * 64)
    write_label(labels / "c4.nii.gz", data["c0"][0], AFFINE)
    write_label(labels / "c5.nii.gz", data["c0"][0], AFFINE)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (3, *SHAPE)})
    offset = len(header.getvalue())
    (arrays / "c3.npy").write_bytes(header.getvalue() + b"\0" * 100)
    result = evaluate_folder(arrays, labels, layout="cijk")
    assert result.cases == ("c0",)
    for case, ext in (("c1", "npy"), ("c2", "npy"), ("c4", "npz"), ("c5", "npz")):
        problem = assert_skipped(result, case, "holds Python objects (pickled); calibviz never "
                                 "unpickles: save the probabilities as a numeric array",
                                 str(arrays / f"{case}.{ext}"))
        assert "allow_pickle" not in problem.message
    claimed = offset + 3 * int(np.prod(SHAPE)) * 4
    assert_skipped(result, "c3", f"header claims {claimed:,} bytes",
                   f"{offset + 100:,} bytes", "truncated", str(arrays / "c3.npy"))


@pytest.mark.parametrize("reader", ["SimpleITKIO", "NibabelIOWithReorient"])
def test_nnunet_fortran_order_npz_reads_the_same_numbers(tmp_path, reader):
    from calibviz.io.readers import NpzStreamSource

    affine = np.array([[0, -0.8, 0, 10], [-0.8, 0, 0, 5], [0, 0, 2.5, 0], [0, 0, 0, 1.0]])
    cases, labels = {}, tmp_path / "labels"
    for i in range(2):
        lab, probs = make_case(SHAPE, 3, seed=i)
        cases[f"c{i}"] = (probs, affine)
        write_label(labels / f"c{i}.nii.gz", lab, affine)
    c_order = write_nnunet_v2(tmp_path / "c", cases, NNUNET_LABELS, reader=reader)
    f_order = write_nnunet_v2(tmp_path / "f", cases, NNUNET_LABELS, reader=reader)
    for case in cases:
        with np.load(c_order / f"{case}.npz") as npz:
            stored = npz["probabilities"]
        np.savez_compressed(f_order / f"{case}.npz", probabilities=np.asfortranarray(stored))
        with zipfile.ZipFile(f_order / f"{case}.npz") as zf, zf.open("probabilities.npy") as f:
            np.lib.format.read_magic(f)
            assert np.lib.format.read_array_header_1_0(f)[1]  # really stored in Fortran order
        reorient = reader.endswith("WithReorient")
        want = NpzStreamSource(str(c_order / f"{case}.npz"), label_affine=affine,
                               reorient=reorient)
        source = NpzStreamSource(str(f_order / f"{case}.npz"), label_affine=affine,
                                 reorient=reorient)
        assert source.spatial_shape == want.spatial_shape
        for c in (2, 0, 1, 1):
            expected = want.channel(c)
            got = source.channel(c)
            assert got.shape == expected.shape and np.array_equal(got, expected)
        source.close()
        want.close()
    want, got = evaluate_folder(c_order, labels), evaluate_folder(f_order, labels)
    assert got.cases == want.cases == ("c0", "c1") and not got.problems
    for a, b in zip(want.stats, got.stats, strict=True):
        assert a.equals(b, rtol=0, atol=0)


def test_outputs_an_earlier_run_left_in_the_prediction_folder_are_not_cases(tmp_path):
    from calibviz.run import run_evaluation

    cases, labels = {}, tmp_path / "labels"
    for i in range(2):
        lab, probs = make_case(SHAPE, 3, seed=i)
        cases[f"c{i}"] = (probs, AFFINE)
        write_label(labels / f"c{i}.nii.gz", lab, AFFINE)
    nn = write_nnunet_v2(tmp_path / "nn", cases, NNUNET_LABELS)
    run_evaluation(nn, labels, tmp_path / "out", EvalOptions(), workers=1, figures=False,
                   n_bootstrap=0, fine_bins=20, absent="include")
    for name in ("stats.npz", "stats_fine.npz", "run.json"):
        shutil.copy(tmp_path / "out" / name, nn / name)  # as an earlier version let it write
    found, problems = discover_cases(nn, labels, EvalOptions(strict=True))
    assert [c.case_id for c in found] == ["c0", "c1"]
    assert all(p.severity == "warning" and "calibviz's own output" in p.message
               for p in problems) and len(problems) == 3
    v1 = tmp_path / "v1"  # no dataset.json: the format comes from the first .npz's keys
    for case, (probs, _) in cases.items():
        write_nnunet_v1(v1, f"z{case}", probs, AFFINE)
        (tmp_path / "labels_z").mkdir(exist_ok=True)
        shutil.copy(labels / f"{case}.nii.gz", tmp_path / "labels_z" / f"z{case}.nii.gz")
    for name in ("stats.npz", "run.json"):
        shutil.copy(tmp_path / "out" / name, v1 / name)
    found, _ = discover_cases(v1, tmp_path / "labels_z", EvalOptions(strict=True))
    assert [c.case_id for c in found] == ["zc0", "zc1"] and found[0].format == "nnunet-v1"
