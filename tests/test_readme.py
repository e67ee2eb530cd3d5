"""The README's Python examples run, and its quick start holds the two commands."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_quick_start_opens_with_the_two_commands():
    text = README.read_text()
    block = text.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    assert block.splitlines()[:2] == [
        "pip install . && calibviz demo calibviz-demo",
        "pip install '.[test]' && python -m pytest",
    ]


def test_ci_runs_the_readme_test_command():
    ci = (README.parent / ".ci" / "run").read_text()
    assert "pip install '.[test]' && python -m pytest" in ci


def test_python_example_runs(capsys):
    namespace = {}
    exec(compile(python_blocks()[0], "README.md", "exec"), namespace)
    images, hist = namespace["images"], namespace["hist"]
    assert images[0].class_names == ("liver", "tumour")
    assert hist.counts.shape == (2, 20, 20)
    assert np.isfinite(namespace["calibviz"].ace(images[0])).all()
    assert "[" in capsys.readouterr().out


def test_losses_example_runs():
    pytest.importorskip("torch")
    namespace = {}
    exec(compile(python_blocks()[1], "README.md", "exec"), namespace)
    loss_fn = namespace["loss_fn"]
    assert loss_fn.ace.n_bins == 20 and type(loss_fn).__name__ == "HardL1ACEAndDiceCELoss"
