"""Deflate decoding: calibviz's readers with the fast decoder vs the same readers on zlib.

Run: ``python benchmarks/bench_decompress.py`` (``--small`` for 96×96×48). Data: smooth
synthetic softmax maps (3 classes, MONAI ``.nii.gz`` and nnU-Net v2 ``.npz``), written once
into ``~/.cache/calibviz-bench``. Each decoder runs in its own subprocess (``CALIBVIZ_INFLATE``
picks it); times are CPU seconds (best of 3), so a busy machine distorts them less; peak
memory is the resident high-water mark above the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's calibviz, not an installed one
CACHE = Path.home() / ".cache" / "calibviz-bench"


def make_data(shape) -> Path:
    from calibviz.synthetic import make_case, write_monai, write_nnunet_v2

    folder = CACHE / f"decompress-{'x'.join(map(str, shape))}"
    done = folder / "done"
    if not done.exists():
        labels, probs = make_case(shape, 3, seed=0)
        write_monai(folder / "monai", "case", probs)
        write_nnunet_v2(folder / "nnunet", {"case": (probs, np.eye(4))},
                        {"background": 0, "a": 1, "b": 2})
        done.write_text("ok")
    return folder


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def measure(folder: Path) -> dict:
    from calibviz.io import inflate
    from calibviz.io.nifti import NiftiSource
    from calibviz.io.readers import NpyStream

    def nifti():
        source = NiftiSource(str(folder / "monai" / "case" / "case_seg.nii.gz"))
        for c in range(source.n_channels):
            source.channel(c)
        source.close()

    def npz():
        stream = NpyStream(str(folder / "nnunet" / "case.npz"), "probabilities")
        for c in range(stream.shape[0]):
            stream.read(c)
        stream.close()

    out = {"backend": inflate.BACKEND}
    for name, function in (("nii.gz", nifti), ("npz", npz)):
        function()
        Path("/proc/self/clear_refs").write_text("5")
        base = _rss_kb("VmRSS")
        best = np.inf
        for _ in range(3):
            start = time.process_time()
            function()
            best = min(best, time.process_time() - start)
        out[name] = best
        out[name + "_peak_mb"] = (_rss_kb("VmHWM") - base) / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure))))
        return
    shape = (96, 96, 48) if args.small else (192, 192, 96)
    folder = make_data(shape)
    rows = {}
    for backend in ("zlib", "isal", "zlib-ng"):
        env = dict(os.environ, CALIBVIZ_INFLATE=backend, PYTHONPATH=str(ROOT))
        done = subprocess.run([sys.executable, __file__, "--measure", str(folder)], env=env,
                              capture_output=True, text=True)
        if done.returncode:
            print(f"  {backend}: not installed")
            continue
        rows[backend] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"== reading 3 × {'x'.join(map(str, shape))} float32 channel by channel ==")
    for backend, r in rows.items():
        line = "   ".join(
            f"{kind} {r[kind] * 1e3:6.0f} ms CPU (x{rows['zlib'][kind] / r[kind]:.2f} vs zlib, "
            f"peak +{r[kind + '_peak_mb']:.0f} MB)" for kind in ("nii.gz", "npz")
        )
        print(f"  {backend:8s} {line}")


if __name__ == "__main__":
    main()
