"""Deflate decoding: calibviz's readers with the fast decoder vs the same readers on zlib, next
to the bare decoders on the same bytes (the ceiling any reader can reach).

Run: ``python benchmarks/bench_decompress.py`` (``--small`` for 96×96×48). Data, written once
into ``~/.cache/calibviz-bench``: synthetic softmax maps of 3 classes (MONAI ``.nii.gz`` and
nnU-Net v2 ``.npz``) of two kinds, and their label map (``.nii.gz``, uint8):

* "smooth": logits of sharpness 2 plus noise, probabilities rarely near 0 or 1 (1 % of the
  values below 0.05 or above 0.95): every float has a random mantissa, the files hardly
  compress (0.9), and decoding is mostly copying literals;
* "trained": sharpness 12, as a trained network's maps are (most values below 0.05 or
  above 0.95; the issue counts 89 % in the first bin of a real 16-class map): the exponents
  repeat, the files compress better, and a decoder's speed shows more.

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


#: The two kinds of maps: logit sharpness of :func:`calibviz.synthetic.make_case`.
SHARPNESS = {"smooth": 2.0, "trained": 12.0}


def make_data(shape, kind: str = "smooth") -> Path:
    from calibviz.synthetic import make_case, write_label, write_monai, write_nnunet_v2

    suffix = "" if kind == "smooth" else f"-{kind}"
    folder = CACHE / f"decompress-{'x'.join(map(str, shape))}{suffix}"
    done = folder / "done-2"  # with the label map
    if not done.exists():
        labels, probs = make_case(shape, 3, seed=0, sharpness=SHARPNESS[kind])
        write_monai(folder / "monai", "case", probs)
        write_nnunet_v2(folder / "nnunet", {"case": (probs, np.eye(4))},
                        {"background": 0, "a": 1, "b": 2})
        write_label(folder / "labels" / "case.nii.gz", labels)
        done.write_text("ok")
    return folder


def files(folder: Path) -> dict[str, Path]:
    return {"nii.gz": folder / "monai" / "case" / "case_seg.nii.gz",
            "npz": folder / "nnunet" / "case.npz",
            "label": folder / "labels" / "case.nii.gz"}


def raw_streams(paths: dict[str, Path]) -> dict[str, tuple[bytes, int]]:
    """The deflate stream of each file (gzip: the whole file; npz: the member's raw
    deflate bytes) and its ``wbits``."""
    streams = {"nii.gz": (paths["nii.gz"].read_bytes(), 31),
               "label": (paths["label"].read_bytes(), 31)}
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
    from calibviz.io.nifti import NiftiSource, load_nifti
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

    def label():  # as a case reads its label map
        np.asanyarray(load_nifti(str(paths["label"])).dataobj)

    return {"nii.gz": nifti, "npz": npz, "label": label}


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
    from calibviz.io import inflate

    backends = []
    for name in ("zlib", "isal", "zlib-ng"):
        try:
            inflate._backend(name)
            backends.append(name)
        except ImportError:
            print(f"  {name}: not installed")
    for kind in SHARPNESS:
        report(make_data(shape, kind), kind, shape, backends, args.repeats)
    print("  (x: speed-up over zlib on the same bytes; % of raw: the reader's rate over the "
          "bare decoder's)")


def report(folder: Path, kind: str, shape, backends: list[str], repeats: int) -> None:
    """Print one block: each decoder's rates on the three files of ``folder``."""
    result = compare(folder, backends, repeats)
    best, sizes = result["best"], result["sizes"]
    with np.load(files(folder)["npz"]) as data:
        probs = data["probabilities"]
    saturated = float(((probs < 0.05) | (probs > 0.95)).mean())
    print(f"== {kind} maps: 3 × {'x'.join(map(str, shape))} float32, {saturated:.0%} of values "
          f"below 0.05 or above 0.95 (load {os.getloadavg()[0]:.1f}) ==")
    for name, path in files(folder).items():
        print(f"  {name}: {path.stat().st_size / 1e6:.1f} MB on disk, "
              f"{sizes[name] / 1e6:.1f} MB decoded "
              f"(compressed to {path.stat().st_size / sizes[name]:.2f})")
    for name in backends:
        env = dict(os.environ, CALIBVIZ_INFLATE=name, PYTHONPATH=str(ROOT))
        parts = []
        for file in files(folder):
            done = subprocess.run([sys.executable, __file__, "--memory", f"{folder}::{file}"],
                                  env=env, capture_output=True, text=True, check=True)
            peak = json.loads(done.stdout.strip().splitlines()[-1])
            raw, reader = best[(file, "raw", name)], best[(file, "reader", name)]
            parts.append(
                f"{file} raw {sizes[file] / raw / 1e6:4.0f} MB/s "
                f"(x{best[(file, 'raw', 'zlib')] / raw:.2f}) reader "
                f"{sizes[file] / reader / 1e6:4.0f} MB/s "
                f"(x{best[(file, 'reader', 'zlib')] / reader:.2f}, {raw / reader:.0%} of raw, "
                f"peak +{peak:.0f} MB)")
        print(f"  {name:8s} " + f"\n  {'':8s} ".join(parts))


if __name__ == "__main__":
    main()
