"""Exact squared Euclidean distance transform with voxel spacing, compiled (Felzenszwalb &
Huttenlocher 2012: one lower envelope of parabolas per line and axis), its lines shared out
between threads (the compiled code releases the GIL; each line is independent, so the result
does not depend on the thread count). Used by :mod:`calibviz.roi`, where scipy's
feature-transform EDT dominated the run time."""

from __future__ import annotations

import numba
import numpy as np

from .binning import _CACHE


@numba.njit(cache=_CACHE, nogil=True, error_model="numpy", no_cfunc_wrapper=True)
def _pass(lines, lo, hi, s2, f, v, z):  # pragma: no cover - compiled
    """Lines ``lo .. hi - 1`` of ``lines`` ``[L, n]`` in place: ``out[q] = min_p s2·(q − p)² +
    f[p]`` (``f`` may hold ``inf``); ``f`` ``[n]``, ``v`` int64 ``[n]`` and ``z`` ``[n + 1]``
    are work buffers."""
    n = lines.shape[1]
    for line in range(lo, hi):
        out = lines[line]
        for q in range(n):
            f[q] = out[q]
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
            continue
        j = 0
        for q in range(n):
            while z[j + 1] < q:
                j += 1
            d = q - v[j]
            out[q] = s2 * d * d + f[v[j]]


def _run(lines: np.ndarray, s2: float) -> None:
    """:func:`_pass` over all ``lines`` ``[L, n]`` on ``numba.get_num_threads()`` threads."""
    n_lines, n = lines.shape

    def work(lo: int, hi: int) -> None:
        _pass(lines, lo, hi, s2, np.empty(n), np.empty(n, np.int64), np.empty(n + 1))

    threads = max(1, min(numba.get_num_threads(), n_lines // 64))
    if threads == 1:
        work(0, n_lines)
        return
    from concurrent.futures import ThreadPoolExecutor

    bounds = np.linspace(0, n_lines, threads + 1).round().astype(int)
    with ThreadPoolExecutor(threads, thread_name_prefix="calibviz-edt") as pool:
        for future in [pool.submit(work, int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]:
            future.result()


def squared_edt(seeds: np.ndarray, sampling) -> np.ndarray:
    """float64 squared distance (in the units of ``sampling``) of every voxel to the nearest
    True voxel of ``seeds`` (``inf`` when there is none)."""
    d2 = np.where(seeds, 0.0, np.inf)
    for axis, step in enumerate(sampling):
        moved = np.ascontiguousarray(np.moveaxis(d2, axis, -1))
        lines = moved.reshape(-1, moved.shape[-1])
        _run(lines, float(step) ** 2)
        d2 = np.moveaxis(lines.reshape(moved.shape), -1, axis)
    return np.ascontiguousarray(d2)
