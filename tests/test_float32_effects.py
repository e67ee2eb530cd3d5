"""Measured effects of accumulating the per-bin sums in float32, as the reference code does
(numbers for the README's "Known differences from the reference code"; run with ``-s`` to
see them).

The float32 side is an independent re-implementation of per-image ECE whose sums are naive
float32 *running* sums, voxel after voxel, as a float32 accumulator (``+=`` in a loop,
``scatter_add``/atomic adds into one cell) computes them.  ``np.sum`` would hide the effect:
NumPy sums pairwise, which keeps float32 partial sums small, so its float32 totals are far
more accurate than a running sum.  ``np.cumsum`` is strictly sequential, and is used here.
The exact side is calibviz itself, checked against a float64/int64 oracle.
"""

from __future__ import annotations

import numpy as np
import pytest

from calibviz import bin_image, ece

N_BINS = 20
TWO_24 = 2**24  # 16,777,216: above it float32 has no odd integers, so count += 1 stalls


def running_sum_float32(values: np.ndarray, chunk: int = 1 << 22) -> np.float32:
    """``s = float32(0); for v in values: s = float32(s + v)`` (sequential, chunked so the
    temporary stays small; each chunk starts from the carried float32 total)."""
    total = np.float32(0.0)
    for start in range(0, len(values), chunk):
        part = np.asarray(values[start:start + chunk], dtype=np.float32)
        with_carry = np.concatenate([np.array([total], dtype=np.float32), part])
        total = np.cumsum(with_carry, dtype=np.float32)[-1]
    return total


def float32_bins(p: np.ndarray, y: np.ndarray, n_bins: int = N_BINS):
    """Per bin: voxel count, Σp, Σy as float32 running sums. Right-closed bins with float32
    edges ``k/B`` (``e_k < p <= e_k+1``, p = 0 in bin 0)."""
    inner = (np.arange(1, n_bins) / n_bins).astype(np.float32)
    index = np.searchsorted(inner, p, side="left").astype(np.uint8)
    count = np.zeros(n_bins, dtype=np.float32)
    sum_p = np.zeros(n_bins, dtype=np.float32)
    sum_y = np.zeros(n_bins, dtype=np.float32)
    for k in np.flatnonzero(np.bincount(index, minlength=n_bins)):
        selected = index == k
        n = int(selected.sum())
        count[k] = running_sum_float32(np.ones(n, dtype=np.float32))
        sum_p[k] = running_sum_float32(p[selected])
        sum_y[k] = running_sum_float32(y[selected])
    return count, sum_p, sum_y, index


def float32_ece(count, sum_p, sum_y) -> float:
    """ECE from float32 sums in float32 arithmetic: Σ n_k |p̄_k − ȳ_k| / Σ n_k."""
    keep = count > 0
    n = count[keep]
    gaps = np.abs(sum_p[keep] / n - sum_y[keep] / n)
    return float(running_sum_float32(n * gaps) / running_sum_float32(n))


def float64_bin_sums(p, y, index, n_bins: int = N_BINS) -> np.ndarray:
    """``[3, B]``: int64 counts, float64 (pairwise) Σp and exact Σy on the same bins."""
    count = np.bincount(index, minlength=n_bins)
    sums = np.zeros((3, n_bins))
    sums[0] = count
    for k in np.flatnonzero(count):
        selected = index == k
        sums[1, k] = np.sum(p[selected], dtype=np.float64)
        sums[2, k] = np.count_nonzero(y[selected])
    return sums


def oracle_ece(count, sum_p, sum_y) -> float:
    keep = count > 0
    gaps = np.abs(sum_p[keep] / count[keep] - sum_y[keep] / count[keep])
    return float((count[keep] * gaps).sum() / count[keep].sum())


def float64_oracle_ece(p, y, index, n_bins: int = N_BINS) -> tuple[float, np.ndarray]:
    """ECE and int64 counts from :func:`float64_bin_sums`."""
    sums = float64_bin_sums(p, y, index, n_bins)
    return oracle_ece(*sums), sums[0].astype(np.int64)


def report(request, **numbers):
    line = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in numbers.items())
    print(f"\n[{request.node.name}] {line}")
    for key, value in numbers.items():
        request.node.user_properties.append((key, value))


def test_running_float32_sum_saturates_but_numpy_sum_does_not():
    ones = np.ones(TWO_24 + 8, dtype=np.float32)
    assert running_sum_float32(ones) == TWO_24
    assert np.sum(ones, dtype=np.float32) == TWO_24 + 8  # pairwise: hides the drift


def test_a_bin_of_24_million_voxels_stops_counting_in_float32(request):
    # 24 M voxels of a small structure's background in one scan (a 512 × 512 × 92 CT):
    # p uniform on (0, 0.05) — all in bin 0 — and outcomes drawn from p (calibrated).
    rng = np.random.default_rng(0)
    n_voxels = 24_000_000
    p = rng.random(n_voxels, dtype=np.float32) * np.float32(0.05)
    y = rng.random(n_voxels, dtype=np.float32) < p
    count32, sum_p32, sum_y32, index = float32_bins(p, y)
    assert count32[0] == TWO_24 == 16_777_216  # the count stopped at 2**24
    exact, count = float64_oracle_ece(p, y, index)
    assert count[0] == n_voxels
    background = bin_image(p[None], y[None], n_bins=N_BINS)
    assert ece(background)[0] == pytest.approx(exact, rel=1e-9, abs=0)
    single = float32_ece(count32, sum_p32, sum_y32)
    factor = single / exact
    assert factor > 10  # the float32 ECE is an order of magnitude (or more) too high
    # the same scan with the structure itself: 1 M voxels spread over bins 1..19
    # (p uniform on (0.06, 1), truth drawn from p**1.3: over-confident). Its bins are
    # disjoint from bin 0, so the per-bin sums of both parts simply sit side by side.
    q = (0.06 + 0.94 * rng.random(1_000_000)).astype(np.float32)
    yq = rng.random(q.size) < q.astype(np.float64) ** 1.3
    c2, p2, y2, index2 = float32_bins(q, yq)
    assert c2[0] == 0 and count32[1:].sum() == 0
    with_structure32 = float32_ece(count32 + c2, sum_p32 + p2, sum_y32 + y2)
    oracle_sums = float64_bin_sums(p, y, index) + float64_bin_sums(q, yq, index2)
    with_structure = oracle_ece(*oracle_sums)
    ours = ece(background + bin_image(q[None], yq[None], n_bins=N_BINS))[0]
    assert ours == pytest.approx(with_structure, rel=1e-9, abs=0)
    factor_structure = with_structure32 / with_structure
    assert factor_structure > 1.2
    report(
        request, voxels=n_voxels, count_float32=int(count32[0]),
        sum_p_float32=float(sum_p32[0]), sum_p_exact=float(p.sum(dtype=np.float64)),
        sum_y_float32=float(sum_y32[0]), sum_y_exact=int(y.sum()),
        ece_exact=exact, ece_float32=single, factor=factor,
        with_structure_ece_exact=with_structure, with_structure_ece_float32=with_structure32,
        with_structure_factor=factor_structure,
    )


def tissue_layer(shape=(160, 192, 160), seed=0, width=1.0):
    """A smooth tissue-like layer (an ellipsoidal shell, ~6 % of the volume) in a 1 mm brain
    MRI grid: the model's p is a sigmoid of the signed distance to the layer's boundary
    (``width`` voxels per logit unit / 3), the truth is drawn from a slightly flatter,
    shifted sigmoid, so the model is a little over-confident (ECE of order 1e-3)."""
    rng = np.random.default_rng(seed)
    axes = [np.linspace(-1, 1, s, dtype=np.float32) for s in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    radius = np.sqrt((x / 0.6) ** 2 + (y / 0.7) ** 2 + (z / 0.6) ** 2)
    distance = np.minimum(radius - 0.8, 1.0 - radius) / (2.0 / shape[0] * width)
    logit = np.clip(3.0 * distance, -60, 60)
    p = (1 / (1 + np.exp(-logit))).astype(np.float32)
    truth = 1 / (1 + np.exp(-(0.85 * logit + 0.1)))
    outcome = rng.random(shape, dtype=np.float32) < truth
    return p.ravel(), outcome.ravel()


def test_float32_drift_on_a_smooth_tissue_like_case(request):
    p, y = tissue_layer()
    count32, sum_p32, sum_y32, index = float32_bins(p, y)
    exact, count = float64_oracle_ece(p, y, index)
    assert (count32 == count).all()  # no bin reaches 2**24 here: the drift is in Σp
    ours = ece(bin_image(p[None], y[None], n_bins=N_BINS))[0]
    assert ours == pytest.approx(exact, rel=1e-9, abs=0)
    single = float32_ece(count32, sum_p32, sum_y32)
    percent = (single - exact) / exact * 100
    assert abs(percent) > 0.5  # measurable, not rounding noise
    report(
        request, voxels=p.size, ece_exact=exact, ece_float32=single, percent=percent,
        bin0_voxels=int(count[0]),
        bin0_sum_p_rel_error=float(sum_p32[0] / np.sum(p[index == 0], dtype=np.float64) - 1),
    )
