"""Boundary-band ROI and bin sweeps (issue 16).

Run: ``python benchmarks/bench_roi_sweep.py`` (``--quick``: smaller volumes and fewer images).

1. ``roi.band`` (5 mm, spacing 0.8 × 0.8 × 2.5 mm) of every class of 4 images of
   256×256×128 with smooth blobs, against binning the same image (``bin_image``, 20 bins) and
   against the masked binning the ROI run adds (one ``add_class(..., mask=band)`` per class).
   Target: binning + band ≤ 1.5 × binning.
2. End to end: ``calibviz evaluate --roi band:5mm`` against the plain ``evaluate`` of the same
   ``.nii.gz`` folder (4 × 256×256×128 float32 softmax maps, written once into
   ``~/.cache/calibviz-bench``), ``--no-figures --workers 1``.  Target ≤ 1.5×.
3. ``sweep_table`` of 1,000 images × 15 classes × 7 bin counts from synthetic statistics with
   600 fine bins.  Target < 5 s.

Prints times, ratios and the peak resident memory above the start of each step (VmHWM).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from calibviz import BinAccumulator, BinStats, bin_image
from calibviz.roi import band
from calibviz.sweep import sweep_table

SPACING = (0.8, 0.8, 2.5)


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(field)


def timed(function):
    """(result, seconds, peak MiB above the RSS at the start)."""
    reset_peak()
    base = rss_mib("VmRSS")
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start, rss_mib("VmHWM") - base


def blob_image(shape, seed: int, n_classes: int = 3):
    """Labels with two smooth ellipsoid-like blobs and float32 softmax probabilities whose
    argmax is a slightly shifted, noisy version of them."""
    rng = np.random.default_rng(seed)
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    labels = np.zeros(shape, np.uint8)
    for c in range(1, n_classes):
        centre = [rng.uniform(0.3, 0.7) * n for n in shape]
        radii = [rng.uniform(0.08, 0.18) * n for n in shape]
        inside = sum(((g - m) / r) ** 2 for g, m, r in zip(grid, centre, radii)) <= 1
        labels[inside] = c
    logits = np.empty((n_classes, *shape), np.float32)
    for c in range(n_classes):
        onehot = np.roll(labels == c, 2, axis=0).astype(np.float32)
        logits[c] = gaussian_filter(onehot, 2.0) * 8 + rng.normal(0, 0.3, shape)
    logits -= logits.max(axis=0)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=0)
    return logits, labels


def bench_roi(shape, n_images: int) -> None:
    totals = {"bin": 0.0, "band": 0.0, "masked": 0.0}
    peaks = {"bin": 0.0, "band": 0.0, "masked": 0.0}
    for i in range(n_images):
        probs, labels = blob_image(shape, i)
        n_classes = probs.shape[0]
        bin_image(probs[:, :4, :4, :4], labels[:4, :4, :4], n_bins=20)  # compiled before timing
        _, seconds, peak = timed(lambda probs=probs, labels=labels:
                                 bin_image(probs, labels, n_bins=20))
        totals["bin"] += seconds
        peaks["bin"] = max(peaks["bin"], peak)
        seg = probs.argmax(axis=0)

        def bands(seg=seg, labels=labels, n_classes=n_classes):
            return [band(labels == c, seg == c, 5.0, SPACING) for c in range(n_classes)]

        masks, seconds, peak = timed(bands)
        totals["band"] += seconds
        peaks["band"] = max(peaks["band"], peak)

        def masked(probs=probs, labels=labels, masks=masks):
            acc = BinAccumulator([f"c{c}" for c in range(len(masks))], n_bins=20)
            for c, mask in enumerate(masks):
                acc.add_class(c, probs[c], labels, label_value=c, mask=mask)
            return acc.result()

        _, seconds, peak = timed(masked)
        totals["masked"] += seconds
        peaks["masked"] = max(peaks["masked"], peak)
        share = np.mean([m.mean() for m in masks[1:]])
        print(f"  image {i}: foreground band covers {share:.1%} of the volume per class")
    print(f"ROI: {n_images} × {'×'.join(map(str, shape))}, 3 classes (background included), "
          f"band 5 mm, spacing {SPACING}")
    for key, label in (("bin", "bin_image (plain run)"), ("band", "roi.band, all classes"),
                       ("masked", "masked binning (ROI result set)")):
        print(f"  {label:34s} {totals[key]:7.2f} s   peak +{peaks[key]:7.0f} MiB")
    ratio = (totals["bin"] + totals["band"]) / totals["bin"]
    print(f"  (binning + band) / binning         {ratio:7.2f}×  (target ≤ 1.5×)")
    whole = (totals["bin"] + totals["band"] + totals["masked"]) / totals["bin"]
    print(f"  whole ROI run / plain binning      {whole:7.2f}×  (both result sets)")


def roi_folder(shape, n_images: int) -> Path:
    """``pred/`` (4-D ``(i, j, k, C)`` float32) and ``labels/`` with ``SPACING``, cached."""
    from calibviz.synthetic import write_label, write_nifti

    name = f"roi-{n_images}x{'x'.join(map(str, shape))}"
    folder = Path.home() / ".cache" / "calibviz-bench" / name
    if not (folder / "done").exists():
        affine = np.diag([*SPACING, 1.0])
        for i in range(n_images):
            probs, labels = blob_image(shape, i, n_classes=4)
            write_label(folder / "labels" / f"case{i}.nii.gz", labels, affine=affine)
            write_nifti(folder / "pred" / f"case{i}.nii.gz", np.moveaxis(probs, 0, -1),
                        affine=affine, dtype=np.float32)
        (folder / "done").write_text("ok")
    return folder


def bench_roi_run(shape, n_images: int, repeats: int = 2) -> None:
    """Wall time of ``evaluate`` with and without ``--roi band:5mm`` (best of ``repeats``)."""
    import subprocess
    import sys
    import tempfile

    folder = roi_folder(shape, n_images)
    cli = "from calibviz.cli import main; main()"
    base = [sys.executable, "-c", cli, "evaluate", str(folder / "pred"), str(folder / "labels"),
            "--no-figures", "--workers", "1", "--quiet", "--bootstrap", "0", "--overwrite"]
    best = {}
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([*base, "--out", out], check=True)  # compiled, files cached
        for _ in range(repeats):
            for name, extra in (("plain", []), ("roi", ["--roi", "band:5mm"])):
                start = time.perf_counter()
                subprocess.run([*base, "--out", out, *extra], check=True)
                best[name] = min(best.get(name, np.inf), time.perf_counter() - start)
    print(f"ROI end to end: evaluate of {n_images} × 4 × {'×'.join(map(str, shape))} .nii.gz, "
          "--no-figures --workers 1")
    print(f"  evaluate                           {best['plain']:7.2f} s")
    print(f"  evaluate --roi band:5mm            {best['roi']:7.2f} s")
    print(f"  ratio                              {best['roi'] / best['plain']:7.2f}×  "
          "(target ≤ 1.5×)")


def synthetic_stats(n_images: int, n_classes: int, n_fine: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = (np.arange(n_fine) + 0.5) / n_fine
    weights = np.exp(-centres * 12) + 0.05 * np.exp(-(1 - centres) * 12)
    out = []
    zeros = np.zeros(n_classes, np.int64)
    for _ in range(n_images):
        count = rng.poisson(weights * 2000, size=(n_classes, n_fine)).astype(np.int64)
        sum_p = count * centres
        sum_y = rng.binomial(count, np.clip(centres * 0.9, 0, 1)).astype(np.float64)
        out.append(BinStats(count=count, sum_p=sum_p, sum_y=sum_y, sum_p2=sum_p * centres,
                            sum_py=sum_y * centres, tp=zeros + 1, fp=zeros, fn=zeros,
                            tn=zeros, edges=None))
    return out


def bench_sweep(n_images: int, n_classes: int) -> None:
    stats = synthetic_stats(n_images, n_classes, 600)
    bins = (5, 10, 15, 20, 30, 50, 100)
    table, seconds, peak = timed(lambda: sweep_table(stats, bins))
    size = sum(s.count.nbytes * 5 for s in stats) / 2**20
    print(f"sweep: {n_images} images × {n_classes} classes × {len(bins)} bin counts "
          f"(600 fine bins; the statistics take {size:.0f} MiB)")
    print(f"  sweep_table                        {seconds:7.2f} s   peak +{peak:7.0f} MiB "
          f"({len(table)} rows; target < 5 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        bench_roi((128, 128, 64), 2)
        bench_roi_run((128, 128, 64), 2)
        bench_sweep(100, 15)
    else:
        bench_roi((256, 256, 128), 4)
        bench_roi_run((256, 256, 128), 4)
        bench_sweep(1000, 15)


if __name__ == "__main__":
    main()
