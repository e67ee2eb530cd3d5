"""Exact squared Euclidean distance transform with voxel spacing, compiled (Felzenszwalb &
Huttenlocher 2012: one lower envelope of parabolas per line and axis), parallel over lines.
Used by :mod:`calibviz.roi`, where scipy's feature-transform EDT dominated the run time."""

from __future__ import annotations

import numba
import numpy as np

from .binning import _CACHE


@numba.njit(cache=_CACHE, nogil=True)
def _envelope(f, s2, out, v, z):  # pragma: no cover - compiled
    """``out[q] = min_p s2·(q − p)² + f[p]`` over one line (``f`` may hold ``inf``)."""
    n = f.shape[0]
    k = -1
    for q in range(n):
        fq = f[q]
        if fq == np.inf:
            continue
        x = -np.inf
        while k >= 0:
            p = v[k]
            x = ((fq + s2 * q * q) - (f[p] + s2 * p * p)) / (2.0 * s2 * (q - p))
            if x <= z[k]:
                k -= 1
                x = -np.inf
            else:
                break
        k += 1
        v[k] = q
        z[k] = x
        z[k + 1] = np.inf
    if k < 0:
        for q in range(n):
            out[q] = np.inf
        return
    j = 0
    for q in range(n):
        while z[j + 1] < q:
            j += 1
        d = q - v[j]
        out[q] = s2 * d * d + f[v[j]]


@numba.njit(cache=_CACHE, parallel=True)
def _pass(lines, s2):  # pragma: no cover - compiled
    n_lines, n = lines.shape
    for i in numba.prange(n_lines):
        v = np.empty(n, np.int64)
        z = np.empty(n + 1)
        row = lines[i].copy()
        _envelope(row, s2, lines[i], v, z)


def squared_edt(seeds: np.ndarray, sampling) -> np.ndarray:
    """float64 squared distance (in the units of ``sampling``) of every voxel to the nearest
    True voxel of ``seeds`` (``inf`` when there is none)."""
    d2 = np.where(seeds, 0.0, np.inf)
    for axis, step in enumerate(sampling):
        moved = np.ascontiguousarray(np.moveaxis(d2, axis, -1))
        lines = moved.reshape(-1, moved.shape[-1])
        _pass(lines, float(step) ** 2)
        d2 = np.moveaxis(lines.reshape(moved.shape), -1, axis)
    return np.ascontiguousarray(d2)
