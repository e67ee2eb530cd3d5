"""Deflate decoding: calibviz's readers with the fast decoder vs the same readers on zlib, next
to the bare decoders on the same bytes (the ceiling any reader can reach).

Run: ``python benchmarks/bench_decompress.py`` (``--small`` for 96×96×48). Data: smooth
synthetic softmax maps (3 classes, MONAI ``.nii.gz`` and nnU-Net v2 ``.npz``), written once
into ``~/.cache/calibviz-bench``.

* "raw": the decoder alone on the file's bytes already in memory (1 MiB of input at a time,
  output discarded) — no reader can beat it;
* "reader": ``NiftiSource`` / ``NpyStream`` reading every channel into its array (file reads,
  header parsing, the arrays' allocation and the copies included).

The decoders take turns in one process, repeated; times are this thread's CPU seconds (best
of the repeats), so a busy machine distorts them less. Peak memory is the reader's resident
high-water mark above its baseline, in a fresh process per decoder and file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's calibviz, not an installed one
CACHE = Path.home() / ".cache" / "calibviz-bench"
CHUNK = 2**20


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


def files(folder: Path) -> dict[str, Path]:
    return {"nii.gz": folder / "monai" / "case" / "case_seg.nii.gz",
            "npz": folder / "nnunet" / "case.npz"}


def raw_streams(paths: dict[str, Path]) -> dict[str, tuple[bytes, int]]:
    """The deflate stream of each file (gzip: the whole file; npz: the member's raw
    deflate bytes) and its ``wbits``."""
    streams = {"nii.gz": (paths["nii.gz"].read_bytes(), 31)}
    with zipfile.ZipFile(paths["npz"]) as zf:
        info = zf.getinfo("probabilities.npy")
        with open(paths["npz"], "rb") as file:
            file.seek(info.header_offset)
            header = file.read(30)
            skip = int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30],
                                                                            "little")
            file.seek(info.header_offset + 30 + skip)
            streams["npz"] = (file.read(info.compress_size), -15)
    return streams


def readers(paths: dict[str, Path]):
    from calibviz.io.nifti import NiftiSource
    from calibviz.io.readers import NpyStream

    def nifti():
        source = NiftiSource(str(paths["nii.gz"]))
        for c in range(source.n_channels):
            source.channel(c)
        source.close()

    def npz():
        stream = NpyStream(str(paths["npz"]), "probabilities")
        for c in range(stream.shape[0]):
            stream.read(c)
        stream.close()

    return {"nii.gz": nifti, "npz": npz}


def decode(module, data: bytes, wbits: int) -> int:
    decoder, view, total = module.decompressobj(wbits), memoryview(data), 0
    for start in range(0, len(data), CHUNK):
        total += len(decoder.decompress(view[start:start + CHUNK]))
    return total + len(decoder.flush())


def compare(folder: Path, backends: list[str], repeats: int) -> dict:
    """Best CPU seconds of each (kind, raw|reader, backend), the decoders taking turns."""
    from calibviz.io import inflate

    paths = files(folder)
    streams, read = raw_streams(paths), readers(paths)
    modules = {name: inflate._backend(name)[1] for name in backends}
    best: dict = {}
    sizes = {kind: decode(modules["zlib"], *streams[kind]) for kind in streams}
    for _ in range(repeats):
        for name in backends:
            inflate.BACKEND, inflate._zlib = name, modules[name]  # what the readers use
            for kind in streams:
                for what, run in (("raw", lambda k=kind, n=name: decode(modules[n],
                                                                        *streams[k])),
                                  ("reader", read[kind])):
                    start = time.thread_time()
                    run()
                    seconds = time.thread_time() - start
                    key = (kind, what, name)
                    best[key] = min(best.get(key, np.inf), seconds)
    return {"best": best, "sizes": sizes}


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_memory(folder: Path, kind: str) -> float:
    """In a fresh process (``CALIBVIZ_INFLATE`` picks the decoder): MB above the baseline
    while the ``kind`` reader first reads every channel (imports done before)."""
    from calibviz.io.nifti import NiftiSource
    from calibviz.io.readers import NpyStream

    paths = files(folder)
    NiftiSource(str(paths["nii.gz"])).close()
    NpyStream(str(paths["npz"]), "probabilities").close()
    Path("/proc/self/clear_refs").write_text("5")
    base = _rss_kb("VmRSS")
    readers(paths)[kind]()
    return (_rss_kb("VmHWM") - base) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory:
        folder, kind = args.memory.split("::")
        print(json.dumps(peak_memory(Path(folder), kind)))
        return
    shape = (96, 96, 48) if args.small else (192, 192, 96)
    folder = make_data(shape)
    from calibviz.io import inflate

    backends = []
    for name in ("zlib", "isal", "zlib-ng"):
        try:
            inflate._backend(name)
            backends.append(name)
        except ImportError:
            print(f"  {name}: not installed")
    result = compare(folder, backends, args.repeats)
    best, sizes = result["best"], result["sizes"]
    print(f"== decoding 3 × {'x'.join(map(str, shape))} float32 (load "
          f"{os.getloadavg()[0]:.1f}) ==")
    for kind, path in files(folder).items():
        print(f"  {kind}: {path.stat().st_size / 1e6:.1f} MB on disk, {sizes[kind] / 1e6:.1f} "
              "MB decoded")
    for name in backends:
        env = dict(os.environ, CALIBVIZ_INFLATE=name, PYTHONPATH=str(ROOT))
        peak = {}
        for kind in ("nii.gz", "npz"):
            done = subprocess.run([sys.executable, __file__, "--memory", f"{folder}::{kind}"],
                                  env=env, capture_output=True, text=True, check=True)
            peak[kind] = json.loads(done.stdout.strip().splitlines()[-1])
        parts = []
        for kind in ("nii.gz", "npz"):
            raw, reader = best[(kind, "raw", name)], best[(kind, "reader", name)]
            zlib_raw = best[(kind, "raw", "zlib")]
            parts.append(
                f"{kind} raw {sizes[kind] / raw / 1e6:4.0f} MB/s (x{zlib_raw / raw:.2f})"
                f" reader {sizes[kind] / reader / 1e6:4.0f} MB/s "
                f"(x{best[(kind, 'reader', 'zlib')] / reader:.2f}, {raw / reader:.0%} of raw, "
                f"peak +{peak[kind]:.0f} MB)")
        print(f"  {name:8s} " + "   ".join(parts))
    print("  (x: speed-up over zlib on the same bytes; % of raw: the reader's rate over the "
          "bare decoder's)")


if __name__ == "__main__":
    main()
