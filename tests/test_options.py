"""One validation layer: options are checked once, when built, naming the option."""

from __future__ import annotations

import subprocess
import sys

import pytest

from calibviz import evaluate_folder
from calibviz.options import EvalOptions, parse_scale


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
