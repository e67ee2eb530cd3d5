"""Every gallery script runs and writes its image (into a temporary folder, so the
committed images are not rewritten); every image is shown in gallery/README.md."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

GALLERY = Path(__file__).resolve().parents[1] / "gallery"
SCRIPTS = sorted(p for p in GALLERY.glob("*.py") if not p.name.startswith("_"))


def test_gallery_has_every_figure_type():
    names = {p.stem for p in SCRIPTS}
    assert names >= {"reliability_diagram", "dataset_histogram", "dataset_all_classes",
                     "two_models", "soft_vs_hard"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_gallery_script_runs(script, tmp_path):
    env = {**os.environ, "CALIBVIZ_GALLERY_OUT": str(tmp_path), "MPLBACKEND": "Agg"}
    root = str(GALLERY.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    subprocess.run([sys.executable, str(script)], check=True, env=env, cwd=tmp_path,
                   timeout=300)
    image = tmp_path / f"{script.stem}.png"
    assert image.read_bytes()[:4] == b"\x89PNG"
    assert (GALLERY / image.name).exists(), "the committed image is missing"
    assert f"]({image.name})" in (GALLERY / "README.md").read_text()
