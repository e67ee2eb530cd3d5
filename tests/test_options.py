"""One validation layer: options are checked once, when built, naming the option."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from calibviz import evaluate_folder
from calibviz.options import (
    MAX_BINS,
    MAX_RESAMPLES,
    MAX_SEED,
    EvalOptions,
    check_confidence,
    check_label_value,
    check_n_bins,
    check_resamples,
    check_seed,
    parse_scale,
)


@pytest.mark.parametrize(("options", "name"), [
    ({"n_bins": 0}, "n_bins"), ({"n_bins": 2.5}, "n_bins"), ({"n_bins": True}, "n_bins"),
    ({"closure": "middle"}, "closure"), ({"binning": "fuzzy"}, "binning"),
    ({"empty_weight": -1}, "empty_weight"), ({"format": "dicom"}, "format"),
    ({"preset": "brats2099"}, "preset"), ({"classes": "liver"}, "classes"),
    ({"regions": "WT="}, "WT"), ({"scale": "zero"}, "scale"), ({"scale": -1}, "scale"),
    ({"regions": "A=1", "preset": "kits23"}, "regions or preset"),
])
def test_bad_options_raise_naming_the_option(options, name):
    with pytest.raises(ValueError, match=name):
        EvalOptions(**options)


def test_library_entry_point_validates_before_reading(tmp_path):
    with pytest.raises(ValueError, match="n_bins"):
        evaluate_folder(tmp_path / "missing", tmp_path / "missing", n_bins=0)
    with pytest.raises(TypeError, match="unknown option"):
        evaluate_folder(tmp_path, tmp_path, bins=3)


def test_scale_accepts_fractions():
    assert parse_scale("1/255") == pytest.approx(1 / 255)
    assert EvalOptions(scale="1/255").scale == pytest.approx(1 / 255)
    assert parse_scale(None) is None


def test_importing_calibviz_stays_light():
    code = ("import sys, calibviz; heavy = [m for m in ('matplotlib', 'nibabel', 'pandas', "
            "'torch', 'typer', 'rich', 'numba') if m in sys.modules]; "
            "from calibviz import bin_image; print(','.join(heavy), bin_image.__module__, "
            "'numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["calibviz.binning", "True"]  # nothing heavy until the kernels are used


# ------------------------------------------------ numeric options that reach numpy
@pytest.mark.parametrize(("options", "name"), [
    ({"n_bins": 10**9}, "n_bins"), ({"n_bins": 100_001}, "n_bins"),
    ({"ignore_label": 10**20}, "ignore_label"), ({"ignore_label": 2.5}, "ignore_label"),
    ({"ignore_label": True}, "ignore_label"), ({"classes": "a=1,b=99999999999"}, "label value"),
    ({"regions": "WT=1,-10000001"}, "label value"),
])
def test_out_of_range_numbers_are_refused_when_options_are_built(options, name):
    with pytest.raises(ValueError, match=name):
        EvalOptions(**options)


@pytest.mark.parametrize(("check", "value", "name"), [
    (check_seed, -1, "seed"), (check_seed, MAX_SEED + 1, "seed"), (check_seed, True, "seed"),
    (check_seed, 1.5, "seed"), (check_seed, "0", "seed"),
    (check_resamples, -1, "n_bootstrap"), (check_resamples, MAX_RESAMPLES + 1, "n_bootstrap"),
    (check_resamples, 2.5, "n_bootstrap"), (check_resamples, float("nan"), "n_bootstrap"),
    (check_resamples, "10", "n_bootstrap"),
    (check_confidence, 0, "confidence"), (check_confidence, 1, "confidence"),
    (check_confidence, float("nan"), "confidence"), (check_confidence, "high", "confidence"),
    (check_n_bins, MAX_BINS + 1, "n_bins"), (check_label_value, 10**20, "ignore_label"),
])
def test_numeric_checks_name_the_option(check, value, name):
    with pytest.raises(ValueError, match=name):
        check(value)


def test_numeric_checks_accept_the_edges_as_numbers():
    assert check_seed(None) is None and check_seed(np.int64(7)) == 7
    assert check_seed(MAX_SEED) == MAX_SEED and check_seed(0) == 0
    assert check_resamples(2000.0) == 2000 and check_resamples(0) == 0
    assert check_resamples(MAX_RESAMPLES) == MAX_RESAMPLES
    assert check_confidence(0.95) == 0.95
    assert check_n_bins(MAX_BINS) == MAX_BINS and check_n_bins(np.int32(5)) == 5
    assert EvalOptions(ignore_label=255.0).ignore_label == 255
    assert EvalOptions(ignore_label=np.int16(-1)).ignore_label == -1


def test_the_bin_cap_matches_the_kernels_memory():
    """The kernel's bin arrays per class (slots × copies × 5 sums × float64) at the cap stay
    about 1 GiB, as :data:`MAX_BINS` says."""
    from calibviz.binning import _COPIES, N_SLOTS

    per_bin = N_SLOTS * _COPIES * 5 * 8
    assert per_bin == 10 * 2**10
    assert per_bin * MAX_BINS <= 2**30


def test_classes_and_regions_as_mappings_and_text_fields_typed():
    """The Python forms a user reaches for: a dict of classes or regions, a Path mask
    folder; anything else where text is expected is one TypeError naming the field."""
    from pathlib import Path

    from calibviz.options import EvalOptions, parse_classes, parse_regions

    options = EvalOptions(classes={"liver": 1, "tumour": 2},
                          regions={"WT": [1, 2, 4], "ET": 4}, mask_dir=Path("/masks"))
    assert parse_classes(options.classes) == (("liver", 1), ("tumour", 2))
    assert parse_regions(options.regions) == (("WT", (1, 2, 4)), ("ET", (4,)))
    assert options.mask_dir == "/masks"
    for field, value in [("classes", 3), ("pattern", Path("*.nii")), ("dice", 1)]:
        with pytest.raises(TypeError, match=f"^{field} must be text"):
            EvalOptions(**{field: value})
    with pytest.raises(ValueError, match="without '=', ',' or ';'; got 'a=b'"):
        EvalOptions(classes={"a=b": 1})
