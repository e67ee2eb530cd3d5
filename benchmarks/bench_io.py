"""Reading benchmark: a 16-class 256×256×160 case as a 4-D ``.nii.gz`` and as an nnU-Net npz.

    python benchmarks/bench_io.py            # full size (~2-3 min on 2 cores)
    python benchmarks/bench_io.py --small    # 128×128×80 (seconds)

Prints, per format, the time ``evaluate_case`` needs next to the time nibabel / ``np.load`` alone
need to read the file, and the peak resident memory above the process baseline next to the
size of the full float32 ``(C, …)`` array. Every measurement runs in its own subprocess; the
baseline is the resident set after imports and a warm-up on a tiny case (numba loaded), and the
peak is the kernel's high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``; the
``ru_maxrss`` fallback where that is unavailable). The ``indexed_gzip`` gain is measured by
switching nibabel's use of it off in the subprocess.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_CLASSES = 16


# --------------------------------------------------------------------------- data
def make_data(folder: Path, shape, n_classes: int = N_CLASSES, seed: int = 0) -> dict:
    from scipy.ndimage import zoom

    from calibviz.synthetic import write_label, write_nifti, write_nnunet_v2

    rng = np.random.default_rng(seed)
    affine = np.diag([0.8, 0.8, 1.5, 1.0])
    low = tuple(max(2, s // 8) for s in shape)
    probs = np.empty((n_classes, *shape), dtype=np.float32)
    for c in range(n_classes):
        logit = rng.normal(scale=4.0, size=low).astype(np.float32)
        probs[c] = zoom(logit, [s / n for s, n in zip(shape, low, strict=True)], order=1)[
            : shape[0], : shape[1], : shape[2]
        ]
    for k in range(shape[2]):  # softmax slab by slab, in place
        slab = probs[:, :, :, k]
        slab -= slab.max(axis=0)
        np.exp(slab, out=slab)
        slab /= slab.sum(axis=0)
    labels = np.argmax(probs, axis=0).astype(np.uint8)
    labels[rng.random(shape) < 0.05] = 0  # not a perfect model
    write_label(folder / "labels" / "case.nii.gz", labels, affine)
    t = time.perf_counter()
    write_nifti(folder / "nifti" / "case.nii.gz", np.moveaxis(probs, 0, -1), affine)
    t_nifti = time.perf_counter() - t
    names = {"background": 0, **{f"class{c}": c for c in range(1, n_classes)}}
    t = time.perf_counter()
    write_nnunet_v2(folder / "nnunet", {"case": (probs, affine)}, names)
    t_npz = time.perf_counter() - t
    # tiny warm-up cases of the same dtypes
    small = probs[:, :8, :8, :4].copy()
    write_label(folder / "warm_labels" / "case.nii.gz", labels[:8, :8, :4], affine)
    write_nifti(folder / "warm_nifti" / "case.nii.gz", np.moveaxis(small, 0, -1), affine)
    write_nnunet_v2(folder / "warm_nnunet", {"case": (small, affine)}, names)
    return {"full_bytes": probs.nbytes, "write_nifti_s": t_nifti, "write_npz_s": t_npz}


# --------------------------------------------------------------------------- measuring
def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def measure(kind: str, folder: Path) -> dict:
    """Run one measurement in this process and return seconds and peak MB above baseline."""
    import resource

    import nibabel
    import nibabel.openers

    from calibviz.io import discover_cases, evaluate_case
    from calibviz.io.nifti import NiftiSource
    from calibviz.io.readers import NpyStream
    from calibviz.options import EvalOptions

    no_igzip = kind.endswith("-no-igzip")
    kind = kind.removesuffix("-no-igzip")
    if no_igzip:
        nibabel.openers.HAVE_INDEXED_GZIP = False
        import nibabel._compression

        nibabel._compression.HAVE_INDEXED_GZIP = False
    fmt = "nnunet" if "npz" in kind else "nifti"
    options = EvalOptions()

    def case_in(pred, labels):
        cases, _ = discover_cases(folder / pred, folder / labels, options)
        return cases[0]

    warm = evaluate_case(case_in(f"warm_{fmt}", "warm_labels"), options)
    assert warm.stats is not None, warm.problems
    case = case_in(fmt, "labels")
    nifti_path = folder / "nifti" / "case.nii.gz"
    npz_path = folder / "nnunet" / "case.npz"

    reset = True
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        reset = False
    baseline = _rss_kb("VmRSS")
    t = time.perf_counter()
    if kind.startswith("read-nifti-full"):
        data = np.asanyarray(nibabel.load(nifti_path).dataobj)
        assert data.dtype == np.float32
    elif kind == "read-nifti-channels-nibabel":
        img = nibabel.load(nifti_path, keep_file_open=True)
        for c in range(img.shape[-1]):
            data = np.asanyarray(img.dataobj[..., c])
    elif kind == "read-nifti-channels-stream":  # what calibviz does: one sequential gzip stream
        source = NiftiSource(str(nifti_path))
        for c in range(source.n_channels):
            data = source.channel(c)
        source.close()
    elif kind == "read-npz-full":
        with np.load(npz_path) as npz:
            data = npz["probabilities"]
    elif kind == "read-npz-stream":
        stream = NpyStream(str(npz_path), "probabilities")
        for c in range(stream.shape[0]):
            data = stream.read(c)
        stream.close()
    elif kind.startswith("eval"):
        result = evaluate_case(case, options)
        assert result.stats is not None, result.problems
    else:
        raise ValueError(kind)
    seconds = time.perf_counter() - t
    peak = _rss_kb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"kind": kind + ("-no-igzip" if no_igzip else ""), "seconds": seconds,
            "peak_mb": (peak - baseline) / 1024,
            "peak_method": "VmHWM reset" if reset else "ru_maxrss"}


def run_sub(kind: str, folder: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", kind, "--data", str(folder)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="128×128×80 instead of 256×256×160")
    parser.add_argument("--data", help="use/keep the data in this folder")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, Path(args.data))))
        return
    shape = (128, 128, 80) if args.small else (256, 256, 160)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.data or tmp)
        t = time.perf_counter()
        info = make_data(folder, shape)
        full_mb = info["full_bytes"] / 2**20
        print(f"case: {N_CLASSES} classes × {shape}, full float32 array {full_mb:.0f} MB; "
              f"data written in {time.perf_counter() - t:.0f} s "
              f"(nii.gz {info['write_nifti_s']:.0f} s, npz {info['write_npz_s']:.0f} s)")
        rows = {}
        for kind in ("read-nifti-full", "read-nifti-full-no-igzip",
                     "read-nifti-channels-nibabel", "read-nifti-channels-nibabel-no-igzip",
                     "read-nifti-channels-stream", "eval-nifti",
                     "read-npz-full", "read-npz-stream", "eval-npz"):
            rows[kind] = r = run_sub(kind, folder)
            print(f"  {kind:38s} {r['seconds']:7.2f} s   peak +{r['peak_mb']:7.0f} MB "
                  f"({r['peak_mb'] / full_mb:6.1%} of full array)", flush=True)
        print(f"peak memory measured as {rows['eval-npz']['peak_method']} above the RSS after "
              "imports and warm-up, one subprocess per row")
        for fmt, read in (("nifti", "read-nifti-full"), ("npz", "read-npz-full")):
            ev = rows[f"eval-{fmt}"]
            ratio = ev["seconds"] / rows[read]["seconds"]
            mem = ev["peak_mb"] / full_mb
            print(f"{fmt:5s}: eval / bare read = {ratio:.2f} (target <= 1.3), "
                  f"peak memory = {mem:.1%} of the full array (target < 25 %)")
        sec = {k: r["seconds"] for k, r in rows.items()}
        nib_no = sec["read-nifti-channels-nibabel-no-igzip"]
        print(f"indexed_gzip gain (time without / with): whole-file read "
              f"{sec['read-nifti-full-no-igzip'] / sec['read-nifti-full']:.2f}×, nibabel "
              f"channel-by-channel read (kept-open handle) "
              f"{nib_no / sec['read-nifti-channels-nibabel']:.2f}×"
              f"; calibviz's sequential gzip stream vs nibabel+indexed_gzip channel reads: "
              f"{sec['read-nifti-channels-nibabel'] / sec['read-nifti-channels-stream']:.2f}×")


if __name__ == "__main__":
    main()
