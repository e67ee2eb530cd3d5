"""One-pass binning of voxel probabilities into per-bin sufficient statistics.

The private ``@njit`` kernel does no checking; the public functions validate, cast,
allocate and call it (spec §2 and §6).  The kernel runs in parallel over a fixed number of
accumulator *slots*: voxel chunk ``i`` always goes to slot ``i % N_SLOTS`` and slots are
reduced in a fixed order, so results do not depend on the number of threads at all.
"""

from __future__ import annotations

import numbers
from collections import Counter
from collections.abc import Sequence

import numba
import numpy as np

from .options import (
    BINNINGS,
    CLIP_TOLERANCE,
    CLOSURES,
    DEFAULT_EMPTY_WEIGHT,
    MAX_LABEL_SPAN,
    check_choice,
    check_empty_weight,
    check_ignore_unscored,
    check_n_bins,
)
from .stats import BinStats
from .valuecheck import finite_range, out_of_range

N_SLOTS = 64
CHUNK = 8192

# outcome codes stored in the label lookup table
_NEGATIVE, _POSITIVE, _EXCLUDED, _UNDECLARED = 0, 1, 2, 3
# probability decoding modes
_DIRECT, _TABLE, _AFFINE = 0, 1, 2
# per-slot check counters
_NONFINITE, _CLIPPED, _FAR_OUT, _UNDECLARED_N = 0, 1, 2, 3


def _probe():  # pragma: no cover - never called: only its cache location is tried
    return 0


def _cache_setting() -> bool:
    """Whether the compiled kernels can be cached on disk, choosing where if need be.

    Numba caches next to this file, else in the user's cache folder (or ``NUMBA_CACHE_DIR``);
    when none of these is writable (a read-only installation and home), a private temporary
    folder is used; when even that fails, the kernels are compiled in memory only (no
    traceback, only the first-run cost on every run).
    """
    import os
    import tempfile

    from numba.core.caching import FunctionCache

    def works() -> bool:
        try:
            FunctionCache(_probe)
        except (RuntimeError, OSError):
            return False
        return True

    if works():
        return True
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    numba.config.CACHE_DIR = os.path.join(tempfile.gettempdir(), f"calibviz-numba-{uid}")
    if works():
        return True
    numba.config.CACHE_DIR = ""
    return False


_CACHE = _cache_setting()

_COPIES = 4  # accumulator copies: voxel v adds to copy v % 4 (short dependency chains)
_BLOCK = 2048  # voxels decoded and binned at a time inside a chunk (buffers stay in cache)
# leading columns of the kernel's label table: a voxel outside the mask, a value outside it
_IDX_MASKED, _IDX_OUTSIDE, _IDX_FIRST = 0, 1, 2


_JIT = {"cache": _CACHE, "nogil": True, "error_model": "numpy", "no_cfunc_wrapper": True}
# kernels called only from compiled code: no Python entry point to compile
_INNER = {**_JIT, "no_cpython_wrapper": True}


@numba.njit(**_INNER)
def _bin_block(acc, p_buf, idx, lut_row, n, cuts, t_lo, t_hi, near_edge, soft, tolerance,
               count_undeclared, counters, checks, value_range):  # pragma: no cover - compiled
    """Bin the ``n`` decoded voxels of one block of one class into ``acc`` ``[4, B * 5]``.

    Voxel ``i`` adds to copy ``i % 4`` (blocks start at multiples of 4), in voxel order, so
    every sum sees the same additions in the same order whatever the block size. First the
    values outside [0, 1] of scored voxels are counted and clipped (or set to -1: skipped).
    Then, copy by copy: values in ``[0, t_lo]`` are in bin 0 and values in ``[t_hi, 1]`` in
    bin B-1 (``t_lo < 0.5 <= t_hi``, or -1 and 2: no such fast path); the sums of those
    two bins stay in registers and their counts and Σy are counted as integers (exact in
    any order). Other values (with the fast paths: all in the middle bins, as the values
    are in [0, 1]) take ``floor(p·B)``, with the exact edge rule near an edge:
    bin ``k`` holds ``cuts[k] <= p < cuts[k + 1]`` (``cuts``: the edges, or just above
    them when right-closed; see :func:`_cuts`). ``counters`` int64 ``[5]`` (scored,
    predicted positive, true positive, truth, clipped), ``checks`` int64 ``[4]`` and
    ``value_range`` ``[2]`` are updated in place. ``soft``: :data:`_SOFT` for soft binning
    (no fast paths), ``None`` for hard: then Numba prunes the soft branch before typing it.
    """
    n_out = 0
    for i in range(n):
        p = p_buf[i]
        n_out += not (p >= 0.0 and p <= 1.0)
    if n_out:  # rare: check, count and clip the values outside [0, 1] of scored voxels
        for i in range(n):
            p = p_buf[i]
            if p >= 0.0 and p <= 1.0 or lut_row[idx[i]] > _POSITIVE:
                continue
            if not np.isfinite(p):
                checks[_NONFINITE] += 1
                p_buf[i] = -1.0
                continue
            value_range[0] = p if p < value_range[0] else value_range[0]
            value_range[1] = p if p > value_range[1] else value_range[1]
            if p < -tolerance or p > 1.0 + tolerance:
                checks[_FAR_OUT] += 1
                p_buf[i] = -1.0
                continue
            checks[_CLIPPED] += 1
            counters[4] += 1
            p_buf[i] = 0.0 if p < 0.0 else 1.0
    n_bins = cuts.shape[0] - 1
    last = n_bins - 1
    fb = np.float64(n_bins)
    e = last * 5
    near_hi = 1.0 - near_edge
    n_lo = y_lo = n_hi = y_hi = 0  # fast-path voxels (bin 0 never positive, bin B-1 always)
    n_rest = y_rest = pos = pos_y = undeclared = 0  # the others
    stop = np.uint64(n)
    step = np.uint64(_COPIES)
    for copy in range(_COPIES):
        row = acc[copy]
        s0 = row[1]
        s1 = row[3]
        s2 = row[4]
        t0 = row[e + 1]
        t1 = row[e + 3]
        t2 = row[e + 4]
        for i in range(np.uint64(copy), stop, step):  # unsigned: no negative-index wrapping
            outcome = lut_row[np.uint64(idx[i])]
            p = p_buf[i]
            if outcome > _POSITIVE or p < 0.0:  # not scored
                undeclared += outcome == _UNDECLARED
                continue
            if p <= t_lo:
                s0 += p
                s1 += p * p
                if outcome:  # Σp·y: p·1 or p·0, the same sums as adding p·y
                    s2 += p
                    y_lo += 1
                n_lo += 1
                continue
            if p >= t_hi:
                t0 += p
                t1 += p * p
                if outcome:
                    t2 += p
                    y_hi += 1
                n_hi += 1
                continue
            o = np.int64(outcome)
            y = np.float64(o)
            positive = np.int64(p >= 0.5)  # the threshold rule: p >= 0.5, as MONAI AsDiscrete
            n_rest += 1
            y_rest += o
            pos += positive
            pos_y += positive & o
            if soft is not None:  # linear split between neighbouring bin centres (k + 1/2) / B
                _soft_add(row, p, y, fb, last)
                continue
            # x = p·B: away from an integer (farther than the edge rounding allows), floor(x)
            # is the bin under either closure; near one, the edge rule decides
            x = p * fb
            k = np.int64(x)
            frac = x - k
            if frac <= near_edge or frac >= near_hi:
                k = k if k < last else last
                while k > 0 and p < cuts[k]:
                    k -= 1
                while k < last and p >= cuts[k + 1]:
                    k += 1
            # a middle bin (with the fast paths, bins 0 and B-1 take no other value)
            j = k * 5
            row[j] += 1.0
            row[j + 1] += p
            row[j + 2] += y
            row[j + 3] += p * p
            row[j + 4] += p * y
        if t_lo < 0.0:  # no fast path (soft binning too): every voxel went into the row
            continue
        if last > 0:  # one bin: the "last" registers alias bin 0's and stay unused
            row[e + 1] = t0
            row[e + 3] = t1
            row[e + 4] = t2
        row[1] = s0
        row[3] = s1
        row[4] = s2
    acc[0, 0] += np.float64(n_lo)
    acc[0, 2] += np.float64(y_lo)
    acc[0, e] += np.float64(n_hi)
    acc[0, e + 2] += np.float64(y_hi)
    counters[0] += n_lo + n_hi + n_rest
    counters[1] += n_hi + pos
    counters[2] += y_hi + pos_y
    counters[3] += y_lo + y_hi + y_rest
    if count_undeclared:
        checks[_UNDECLARED_N] += undeclared


@numba.njit(**_INNER)
def _soft_add(row, p, y, fb, last):  # pragma: no cover - compiled
    """Soft binning of one voxel: linear split between neighbouring bin centres (k + 1/2) / B."""
    x = p * fb - 0.5
    if x <= 0.0:
        k, w_lo = 0, 1.0
    elif x >= fb - 1.0:
        k, w_lo = last, 1.0
    else:
        k = np.int64(x)
        w_lo = 1.0 - (x - k)
    for step in range(2):
        w = w_lo if step == 0 else 1.0 - w_lo
        if w == 0.0:
            continue
        j = (k + step) * 5
        row[j] += w
        row[j + 1] += w * p
        row[j + 2] += w * y
        row[j + 3] += w * p * p
        row[j + 4] += w * p * y


@numba.njit(**_JIT)
def _bin_slots(
    slot_lo, slot_hi, sums, counters, checks, value_range, p_buf, idx, probs, labels, mode,
    table, slope, divisor, intercept, lut, offset, mask, use_mask, cuts, t_lo, t_hi,
    near_edge, soft, tolerance,
):  # pragma: no cover - compiled
    """Bin every chunk of slots ``slot_lo .. slot_hi - 1`` into their rows of the outputs.

    probs ``[C, N]`` (decoded by table, affine or directly), labels ``[1 or C, N]``; one
    compiled version per pair of their dtypes, made when first used. lut uint8 ``[C, 2 + L]``
    (columns: masked, outside the values, values ``offset ..``); p_buf float64 and idx
    uint32 ``[_BLOCK]`` are this thread's work buffers: the block's probabilities of one
    class and columns of its labels.
    Outputs: sums float64 ``[S, C, copies, B * 5]`` (interleaved n or W, Σp, Σy, Σp², Σp·y
    per bin), counters int64 ``[S, C, 5]`` (scored, predicted positive, true positive, truth,
    clipped), checks int64 ``[S, 4]`` and the out-of-range value span ``[S, 2]``.
    Chunk ``i`` always belongs to slot ``i % N_SLOTS``: the result does not depend on how the
    slots are shared out between threads.
    """
    n_classes, n_vox = probs.shape
    n_lut = lut.shape[1] - _IDX_FIRST
    n_chunks = (n_vox + CHUNK - 1) // CHUNK
    for slot in range(slot_lo, slot_hi):
        for chunk in range(slot, n_chunks, N_SLOTS):
            chunk_stop = (chunk + 1) * CHUNK
            chunk_stop = chunk_stop if chunk_stop < n_vox else n_vox
            for start in range(chunk * CHUNK, chunk_stop, _BLOCK):
                n = _BLOCK if start + _BLOCK < chunk_stop else chunk_stop - start
                for c in range(n_classes):
                    if c == 0 or labels.shape[0] > 1:
                        r = c if labels.shape[0] > 1 else 0
                        for i in range(n):  # compared before subtracting: no wrap-around
                            lab = np.int64(labels[r, start + i])
                            inside = lab >= offset and lab - offset < n_lut
                            idx[i] = lab - offset + _IDX_FIRST if inside else _IDX_OUTSIDE
                        if use_mask:
                            for i in range(n):
                                if not mask[start + i]:
                                    idx[i] = _IDX_MASKED
                    if mode == _TABLE:
                        for i in range(n):
                            p_buf[i] = table[np.int64(probs[c, start + i])]
                    else:
                        for i in range(n):
                            p_buf[i] = np.float64(probs[c, start + i])
                        if mode == _AFFINE:
                            for i in range(n):
                                p_buf[i] = p_buf[i] * slope / divisor + intercept
                    _bin_block(
                        sums[slot, c], p_buf, idx, lut[c], n, cuts, t_lo, t_hi, near_edge,
                        soft, tolerance, c == 0, counters[slot, c], checks[slot],
                        value_range[slot],
                    )


def _bin_kernel(*args, n_classes: int, n_vox: int, n_bins: int):
    """Run :func:`_bin_slots` over the slots that hold chunks on ``numba.get_num_threads()``
    threads (the compiled code releases the GIL); returns (sums, counters, checks,
    value_range)."""
    n_chunks = -(-n_vox // CHUNK)
    used = max(1, min(N_SLOTS, n_chunks))  # slots past the chunk count would stay empty
    sums = np.zeros((used, n_classes, _COPIES, n_bins * 5), dtype=np.float64)
    counters = np.zeros((used, n_classes, 5), dtype=np.int64)
    checks = np.zeros((used, 4), dtype=np.int64)
    value_range = np.empty((used, 2), dtype=np.float64)
    value_range[:, 0] = np.inf
    value_range[:, 1] = -np.inf
    outputs = (sums, counters, checks, value_range)
    threads = max(1, min(numba.get_num_threads(), used))

    def work(lo, hi):
        buffers = np.empty(_BLOCK, dtype=np.float64), np.empty(_BLOCK, dtype=np.uint32)
        _bin_slots(lo, hi, *outputs, *buffers, *args)

    if threads == 1:
        work(0, used)
        return outputs
    bounds = np.linspace(0, used, threads + 1).round().astype(int)
    with _pool(threads) as pool:
        futures = [pool.submit(work, int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]
        for future in futures:
            future.result()
    return outputs


def _pool(threads: int):
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(threads, thread_name_prefix="calibviz-bin")


def _reduce_slots(sums: np.ndarray) -> np.ndarray:
    """float64 ``[C, B * 5]``: the slots and their copies added in one fixed order."""
    out = np.zeros(sums.shape[1:2] + sums.shape[3:])
    for slot in range(sums.shape[0]):
        for copy in range(sums.shape[2]):
            out += sums[slot, :, copy]
    return out


def bin_edges(n_bins: int, dtype=np.float64) -> np.ndarray:
    """float64 ``[n_bins + 1]`` edges ``k / n_bins`` rounded to the precision of ``dtype``.

    Integer-stored maps are scaled to float64 first, so their edges are float64.

    >>> bool(bin_edges(5, np.float32)[1] == np.float32(0.2))
    True
    """
    n_bins = check_n_bins(n_bins)
    dtype = np.dtype(dtype)
    exact = np.arange(n_bins + 1, dtype=np.float64) / n_bins
    if dtype.kind == "f" and dtype.itemsize < 8:
        return exact.astype(dtype).astype(np.float64)
    return exact


class BinAccumulator:
    """Accumulates per-bin statistics class by class, so channels can be streamed.

    ``BinAccumulator(["liver", "tumour"])`` then
    ``add_class(0, probs_liver, labels, label_value=1)`` … and ``result()``.
    Adding every class once gives exactly what :func:`bin_image` gives on the stacked array:
    the edges follow the data (``k/B`` rounded to the precision of the probabilities'
    dtype, float64 for integer maps, spec §2), fixed by ``precision`` or else by the first
    class added; a class whose dtype needs other edges, a class added twice and duplicate
    class names raise ``ValueError``.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        *,
        n_bins: int = 20,
        precision=None,
        closure: str = "right",
        binning: str = "hard",
        empty_weight: float = DEFAULT_EMPTY_WEIGHT,
        where: str = "",
    ) -> None:
        self.n_bins = check_n_bins(n_bins)
        self.closure = check_choice("closure", closure, CLOSURES)
        self.binning = check_choice("binning", binning, BINNINGS)
        self.empty_weight = check_empty_weight(empty_weight)
        self.where = where
        self.class_names = _unique_names(class_names, where)
        #: float dtype whose rounding the edges follow (None: the first class's dtype)
        self.precision = None if precision is None else _edge_precision(np.dtype(precision))
        #: float64 ``[B + 1]`` edges the voxels are assigned with (None until fixed)
        self.edges = None if precision is None else bin_edges(self.n_bins, self.precision)
        shape = (len(self.class_names), self.n_bins)
        self._count = np.zeros(shape, dtype=np.int64 if binning == "hard" else np.float64)
        self._sums = np.zeros((*shape, 4))
        self._confusion = np.zeros((shape[0], 5), dtype=np.int64)
        self._done = np.zeros(shape[0], dtype=bool)
        #: (lowest, highest) probability seen so far, before clipping
        self.value_range = (np.inf, -np.inf)
        self._pending_precision = self.precision

    def add_class(
        self,
        index: int,
        probs: np.ndarray,
        labels: np.ndarray,
        *,
        label_value: int | None = None,
        region: Sequence[int] | None = None,
        mask: np.ndarray | None = None,
        ignore_label: int | None = None,
        declared_labels: Sequence[int] | None = None,
        scale: float | None = None,
        intercept: float = 0.0,
        input_dtype=None,
    ) -> None:
        """Bin one class (once).

        probs: ``(*spatial)`` probabilities of this class (float, or integers with ``scale``
        as the multiplier, e.g. ``1/255``; uint8 without scale means ``/255``).
        labels: ``(*spatial)`` integer label map (outcome ``label == label_value`` or
        ``isin(label, region)``: give one of the two), or a boolean outcome when neither is
        given. ``ignore_label`` must not be a value the class scores.
        declared_labels: when given, label values outside it (and the class values) raise;
        otherwise every other value is simply a negative outcome.
        input_dtype: the dtype of the input ``probs`` derive from, when that is not
        ``probs.dtype`` (e.g. a float32 sum of float16 channels): the edges follow it.
        """
        index = _class_index(index, len(self.class_names), self.where)
        name = self.class_names[index]
        self._check_not_added([index])
        if label_value is not None and region is not None:
            raise ValueError(f"{self.where}class {name!r}: give label_value or region, "
                             "not both")
        _not_a_string(region, "region", self.where)
        probs = np.asarray(probs)
        labels = np.asarray(labels)
        self._fix_edges(probs.dtype if input_dtype is None else np.dtype(input_dtype), name)
        if probs.shape != labels.shape:
            raise ValueError(
                f"{self.where}class {name!r}: probabilities have shape {probs.shape} "
                f"but labels have {labels.shape}"
            )
        if labels.dtype == bool and label_value is None and region is None:
            lut_rows, offset = np.array([[_NEGATIVE, _POSITIVE]], dtype=np.uint8), 0
            strict = True
            if ignore_label is not None:
                raise ValueError(f"{self.where}ignore_label needs an integer label map")
        else:
            if label_value is None and region is None:
                raise ValueError(f"{self.where}class {name!r}: give label_value or region")
            members = [label_value] if region is None else list(region)
            strict = declared_labels is not None
            lut_rows, offset = _label_lut(
                [members], ignore_label, declared_labels, strict=strict, where=self.where,
                names=[name],
            )
        probs_flat, labels_flat, mask_flat = _flatten_together(
            probs, _as_int_labels(labels, self.where), mask, self.where
        )
        result = _run_kernel(
            probs_flat[None], labels_flat[None], lut_rows, offset, strict, mask_flat,
            self, scale, intercept, [name],
        )
        self._merge(result, [index])

    def add_all(
        self,
        probs: np.ndarray,
        labels: np.ndarray,
        *,
        classes: Sequence[int] | None = None,
        regions: Sequence[Sequence[int]] | None = None,
        mask: np.ndarray | None = None,
        ignore_label: int | None = None,
        declared_labels: Sequence[int] | None = None,
        scale: float | None = None,
        intercept: float = 0.0,
    ) -> None:
        """Bin every class of ``probs`` ``(C, *spatial)`` in one pass (see :func:`bin_image`)."""
        probs = np.asarray(probs)
        labels = np.asarray(labels)
        n_classes = len(self.class_names)
        self._check_not_added(range(n_classes))
        if classes is not None and regions is not None:
            raise ValueError(f"{self.where}give classes or regions, not both")
        _not_a_string(classes, "classes", self.where)
        _not_a_string(regions, "regions", self.where)
        if probs.ndim < 1 or probs.shape[0] != n_classes:
            raise ValueError(
                f"{self.where}probabilities of shape {probs.shape} have "
                f"{probs.shape[0] if probs.ndim else 0} channels but {n_classes} classes "
                "are declared"
            )
        self._fix_edges(probs.dtype, self.class_names[0])
        spatial = probs.shape[1:]
        if labels.dtype == bool and classes is None and regions is None:
            if labels.shape != probs.shape:
                raise ValueError(
                    f"{self.where}boolean outcomes have shape {labels.shape} but "
                    f"probabilities have {probs.shape}; expected one outcome per class"
                )
            if ignore_label is not None:
                raise ValueError(f"{self.where}ignore_label needs an integer label map")
            lut = np.tile(np.array([[_NEGATIVE, _POSITIVE]], dtype=np.uint8), (n_classes, 1))
            offset = 0
            label_rows = labels.reshape(n_classes, -1).view(np.uint8)
            probs_rows = probs.reshape(n_classes, -1)
            mask_flat = _flat_mask(mask, spatial, self.where)
        else:
            if labels.shape != spatial:
                raise ValueError(
                    f"{self.where}probabilities have shape {probs.shape} but labels have "
                    f"{labels.shape}; expected labels of shape {spatial}"
                )
            if regions is not None:
                members = [list(r) for r in regions]
            else:
                values = range(n_classes) if classes is None else classes
                members = [[v] for v in values]
            if len(members) != n_classes:
                raise ValueError(
                    f"{self.where}{len(members)} label values/regions given "
                    f"for {n_classes} probability channels"
                )
            lut, offset = _label_lut(members, ignore_label, declared_labels, where=self.where,
                                     names=self.class_names)
            probs_rows = probs.reshape(n_classes, -1)
            label_rows = _as_int_labels(labels, self.where).reshape(1, -1)
            mask_flat = _flat_mask(mask, spatial, self.where)
        result = _run_kernel(
            probs_rows, label_rows, lut, offset, True, mask_flat, self, scale, intercept,
            list(self.class_names),
        )
        self._merge(result, list(range(n_classes)))

    def _check_not_added(self, indices) -> None:
        added = [self.class_names[i] for i in indices if self._done[i]]
        if added:
            raise ValueError(f"{self.where}class {', '.join(map(repr, added))} was already "
                             "added; add each class once (its sums would count twice)")

    def _fix_edges(self, dtype: np.dtype, name: str) -> None:
        """Set the edges by ``dtype`` until a class is added (then they are fixed), or check
        that ``dtype`` needs the fixed edges: mixed precisions would bin unlike
        :func:`bin_image`."""
        wanted = _edge_precision(dtype)
        if self.precision is None:  # fixed by _merge, once the class is binned
            self._pending_precision = wanted
            self.edges = bin_edges(self.n_bins, wanted)
        elif wanted != self.precision:
            raise ValueError(
                f"{self.where}class {name!r}: probabilities of dtype {dtype} are binned with "
                f"{wanted} edges (k/B rounded to the input's precision), but this "
                f"accumulator's edges are {self.precision} (its precision argument, or the "
                "dtype of the first class added); give every class the dtype of the others (and "
                "no precision, or that one), or input_dtype when the values derive from "
                "another input"
            )

    def _merge(self, result, indices) -> None:
        count, sums, confusion = result
        if self.precision is None:
            self.precision = self._pending_precision
        self._count[indices] += count
        self._sums[indices] += sums
        self._confusion[indices] += confusion
        self._done[indices] = True

    def result(self, *, require_all: bool = True) -> BinStats:
        """The accumulated :class:`BinStats` (``require_all``: every class was added)."""
        if require_all and not self._done.all():
            missing = [n for n, d in zip(self.class_names, self._done) if not d]
            raise ValueError(f"{self.where}no probabilities were added for {missing}")
        return BinStats(
            count=self._count.copy(),
            sum_p=self._sums[..., 0], sum_y=self._sums[..., 1],
            sum_p2=self._sums[..., 2], sum_py=self._sums[..., 3],
            tp=self._confusion[:, 0], fp=self._confusion[:, 1],
            fn=self._confusion[:, 2], tn=self._confusion[:, 3],
            n_clipped=self._confusion[:, 4],
            edges=self.edges, class_names=self.class_names, closure=self.closure,
            binning=self.binning, empty_weight=self.empty_weight, n_images=1,
        )


def bin_image(
    probs: np.ndarray,
    labels: np.ndarray,
    *,
    n_bins: int = 20,
    classes: Sequence[int] | None = None,
    mask: np.ndarray | None = None,
    ignore_label: int | None = None,
    closure: str = "right",
    binning: str = "hard",
    regions: Sequence[Sequence[int]] | None = None,
    class_names: Sequence[str] | None = None,
    empty_weight: float = DEFAULT_EMPTY_WEIGHT,
    scale: float | None = None,
    declared_labels: Sequence[int] | None = None,
    where: str = "",
    outcomes: bool | None = None,
) -> BinStats:
    """Bin one image in one pass and return its :class:`BinStats`.

    Parameters
    ----------
    probs : ``(C, *spatial)`` probabilities (float16/32/64, or integers: uint8 means ``/255``,
        other integers need ``scale``); a ``(*spatial)`` array is one foreground class.
    labels : ``(*spatial)`` integer label map, or ``(C, *spatial)`` per-channel outcomes
        (bool or 0/1: one-hot, regions, multi-label). Labels of the probabilities' own shape
        (2-D or more) are read by ``outcomes``: True, ``(C, *spatial)`` outcomes; False, one
        class over ``(*spatial)`` (a mask, or a label map whose class value is ``classes=[v]``,
        default 1); None (default) decides only where the data leave no doubt: a label map
        with values other than 0 and 1 is one class, and 0/1 labels with exactly one 1 along
        the first axis at every position are a one-hot; any other 0/1 labels (a binary mask,
        or regions, or a one-hot with unlabelled voxels) are refused until ``outcomes`` (or
        ``classes``/``regions`` for one class) says which.
    classes : label value of each channel (default ``0..C-1``; ``[1]`` for one channel);
        not together with ``regions``.
    regions : instead of ``classes``, the label values of each channel's region
        (outcome ``isin(label, region)``).
    mask : optional bool ``(*spatial)``; voxels outside it are ignored.
    ignore_label : voxels with this label value are ignored (a value no class or region
        scores).
    closure : ``"right"`` (``e_k < p <= e_k+1``, default) or ``"left"``.
    binning : ``"hard"`` or ``"soft"`` (linear split between bin centres, spec §6).
    declared_labels : label values allowed in ``labels`` (default: background 0, every
        class or region value and the ignore label); others raise ``ValueError``.
    where : prefix for error messages, e.g. ``"case 0042: "``.
    outcomes : how to read labels of the probabilities' own shape (see ``labels``): True,
        ``(C, *spatial)`` per-channel outcomes; False, one class over ``(*spatial)``; None,
        decided from the data where they leave no doubt, else refused.

    >>> import numpy as np
    >>> p = np.array([[0.8, 0.1], [0.3, 0.6]])
    >>> y = np.array([[1, 0], [0, 1]])
    >>> stats = bin_image(p, y, n_bins=5, classes=[1])
    >>> stats.count.tolist()
    [[1, 1, 1, 1, 0]]
    """
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    if classes is not None and regions is not None:
        raise ValueError(f"{where}give classes or regions, not both")
    if probs.ndim == labels.ndim:
        probs, labels, classes = _same_axes(probs, labels, classes, regions, outcomes, where)
    if probs.ndim < 2:
        raise ValueError(f"{where}probabilities must be at least 1-D per class, got {probs.shape}")
    n_classes = probs.shape[0]
    if n_classes == 0:
        raise ValueError(f"{where}probabilities have 0 channels (shape {probs.shape}); "
                         "expected (C, *spatial) with at least one class")
    if class_names is None:
        if regions is not None:
            class_names = [f"region{i}" for i in range(n_classes)]
        elif classes is not None:
            class_names = [f"label{v}" for v in classes]
        else:
            class_names = [f"class{c}" for c in range(n_classes)]
    accumulator = BinAccumulator(
        class_names, n_bins=n_bins, precision=probs.dtype, closure=closure,
        binning=binning, empty_weight=empty_weight, where=where,
    )
    accumulator.add_all(
        probs, labels, classes=classes, regions=regions, mask=mask,
        ignore_label=ignore_label, declared_labels=declared_labels, scale=scale,
    )
    return accumulator.result()


# --------------------------------------------------------------------------- helpers
def _same_axes(probs, labels, classes, regions, outcomes, where: str):
    """``(probs, labels, classes)`` for labels with as many axes as ``probs``: per-channel
    outcomes (bool labels, probs as given) or one class over ``(*spatial)`` (``probs[None]``,
    the label map, its class value); see :func:`bin_image` for the rule. ``ValueError``
    when the shapes differ (e.g. labels with a channel axis) or the reading is in doubt."""
    _check_same_shape(probs, labels, where)
    one_class = classes is not None or regions is not None
    if outcomes is None and not one_class:
        outcomes = _reading(probs, labels, where)
    if outcomes:
        if one_class:
            raise ValueError(f"{where}outcomes=True takes (C, *spatial) outcomes, which need "
                             "no classes or regions")
        if labels.dtype != bool and not np.isin(labels, (0, 1)).all():
            raise ValueError(f"{where}outcomes must hold 0 and 1 only (found "
                             f"{_some_values(labels)})")
        return probs, labels.astype(bool, copy=False), classes
    if labels.dtype == bool:  # a mask: its class value is 1
        labels = labels.astype(np.uint8)
    given = regions if regions is not None else classes
    if given is not None and len(given) != 1:
        raise ValueError(
            f"{where}labels have the shape of the probabilities {probs.shape}, which makes "
            f"them one class over (*spatial), but {len(given)} classes or regions are given; "
            f"for (C, *spatial) probabilities pass a label map of shape {probs.shape[1:]} or "
            "outcomes=True")
    return probs[None], labels, classes if given is not None else [1]


def _check_same_shape(probs, labels, where: str) -> None:
    if labels.shape == probs.shape:
        return
    spatial = probs.shape[1:]
    if probs.ndim >= 2 and labels.shape[0] == 1 and labels.shape[1:] == spatial:
        raise ValueError(f"{where}labels {labels.shape} have a channel axis; pass a label "
                         f"map of shape {spatial} (labels[0]) with probabilities {probs.shape}")
    expected = (f"a label map of shape {spatial} for {probs.shape[0]} channels, or "
                f"{probs.shape} for one class" if probs.ndim >= 2 else f"{probs.shape}")
    raise ValueError(f"{where}probabilities {probs.shape} and labels {labels.shape}: the "
                     f"shapes do not fit; expected labels of shape {expected}")


def _reading(probs, labels, where: str) -> bool:
    """``outcomes`` for labels of the probabilities' shape where the data leave no doubt
    (1-D: one class; values other than 0/1: a label map of one class; 0/1 with one channel,
    or with exactly one 1 along the first axis everywhere: outcomes, a one-hot);
    ``ValueError`` otherwise."""
    if probs.ndim == 1:
        return False
    binary = labels.dtype == bool or bool(np.isin(labels, (0, 1)).all())
    if not binary:
        return False
    if labels.shape[0] == 1:  # (1, *spatial): both readings give the same numbers
        return True
    if bool((labels.sum(axis=0, dtype=np.int64) == 1).all()):
        return True
    raise ValueError(
        f"{where}0/1 labels of the probabilities' shape {probs.shape} could be a mask of one "
        "class over (*spatial) or (C, *spatial) outcomes (regions, multi-label, a one-hot "
        "with unlabelled voxels): say which, outcomes=False (or classes=[1]) for one class, "
        "outcomes=True for per-channel outcomes")


def _some_values(labels: np.ndarray) -> str:
    found = np.unique(labels[~np.isin(labels, (0, 1))])[:3]
    return ", ".join(f"{v:g}" for v in found.tolist())


def _unique_names(class_names: Sequence[str], where: str) -> tuple[str, ...]:
    """The class names as strings: at least one, each once (a name selects one class)."""
    if isinstance(class_names, (str, bytes)):
        raise ValueError(f"{where}class_names must be a list of names, got the string "
                         f"{class_names!r}; pass a list of names ([{class_names!r}] for one "
                         "class)")
    names = tuple(str(n) for n in class_names)
    if not names:
        raise ValueError(f"{where}no class names given; expected at least one class")
    repeated = sorted(n for n, k in Counter(names).items() if k > 1)
    if repeated:
        raise ValueError(f"{where}class names must be unique; {', '.join(map(repr, repeated))} "
                         f"repeated in {list(names)}")
    return names


def _class_index(index, n_classes: int, where: str) -> int:
    """``index`` as an int in ``0..n_classes - 1`` (not a bool, a float or a string)."""
    integral = isinstance(index, numbers.Integral) and not isinstance(index, (bool, np.bool_))
    if not integral or not 0 <= index < n_classes:
        raise ValueError(f"{where}class index must be an integer 0..{n_classes - 1}, "
                         f"got {index!r}")
    return int(index)


def _label_value(value, what: str, where: str) -> int:
    """One label value (of ``what``) as an int: an integer or an integral float (labels are
    integers); bools, strings and fractions are refused."""
    if (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
            and float(value).is_integer()):
        return int(value)
    raise ValueError(f"{where}{what} must be integers, got {value!r}")


def _not_a_string(value, what: str, where: str) -> None:
    """A bare string where a list is expected would be split into characters: refuse it."""
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{where}{what} must be a list, got the string {value!r}; pass a "
                         f"list of names or label values")


def _edge_precision(dtype: np.dtype) -> np.dtype:
    """The float dtype whose rounding the edges of ``dtype`` probabilities follow."""
    dtype = np.dtype(dtype)
    return dtype.newbyteorder("=") if dtype.kind == "f" else np.dtype(np.float64)


def _label_lut(members, ignore_label, declared_labels, *, strict: bool = True, where: str,
               names: Sequence[str]):
    """uint8 ``[C, L]`` outcome table over label values ``offset .. offset + L - 1``; the
    ignore label must not be a member of any class (``names``: the classes' names)."""
    members = [[_label_value(v, f"class {name!r}: label values", where) for v in m]
               for name, m in zip(names, members, strict=True)]
    all_members = sorted({int(v) for m in members for v in m})
    declared = set(all_members) | {0}
    if declared_labels is not None:
        _not_a_string(declared_labels, "declared_labels", where)
        declared |= {_label_value(v, "declared_labels", where) for v in declared_labels}
    if ignore_label is not None:
        if not float(ignore_label).is_integer():
            raise ValueError(f"{where}ignore_label must be an integer, got {ignore_label!r}")
        check_ignore_unscored(int(ignore_label), zip(names, members), where)
        declared.add(int(ignore_label))
    low, high = min(declared), max(declared)
    if high - low > MAX_LABEL_SPAN:
        raise ValueError(f"{where}label values span {low}..{high}; too wide for a label map")
    fill = _UNDECLARED if strict else _NEGATIVE
    lut = np.full((len(members), high - low + 1), fill, dtype=np.uint8)
    lut[:, [v - low for v in declared]] = _NEGATIVE
    for row, values in enumerate(members):
        lut[row, [int(v) - low for v in values]] = _POSITIVE
    if ignore_label is not None:
        lut[:, int(ignore_label) - low] = _EXCLUDED
    return lut, low


def _as_int_labels(labels: np.ndarray, where: str) -> np.ndarray:
    if labels.dtype == bool:
        return labels.view(np.uint8)
    if labels.dtype.kind in "iu":
        return labels
    if labels.dtype.kind == "f":
        finite = np.isfinite(labels)
        if not finite.all() or not np.array_equal(labels, np.round(labels)):
            bad = labels[~finite | (labels != np.round(labels))]
            raise ValueError(
                f"{where}labels must be integral; found {bad.size} non-integral values "
                f"such as {bad.ravel()[:3].tolist()}"
            )
        return labels.astype(np.int32)
    raise ValueError(f"{where}labels must be integers or booleans, got dtype {labels.dtype}")


def _checked_mask(mask, spatial, where) -> np.ndarray | None:
    """The mask as a boolean array of shape ``spatial`` (or None), else ``ValueError``."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape != tuple(spatial):
        raise ValueError(f"{where}mask has shape {mask.shape}, expected {tuple(spatial)}")
    if mask.dtype != bool:
        raise ValueError(f"{where}mask must be boolean, got dtype {mask.dtype}")
    return mask


def _flat_mask(mask, spatial, where):
    mask = _checked_mask(mask, spatial, where)
    return None if mask is None else mask.reshape(-1)


def _flatten_together(probs, labels, mask, where):
    """Flatten arrays of one spatial shape in a common memory order, copying only if needed."""
    mask = _checked_mask(mask, probs.shape, where)
    arrays = [probs, labels] + ([] if mask is None else [mask])
    order = "F" if all(a.flags.f_contiguous for a in arrays) else "C"
    mask_flat = None if mask is None else mask.ravel(order=order)
    return probs.ravel(order=order), labels.ravel(order=order), mask_flat


def _decoder(dtype: np.dtype, scale, intercept, where: str):
    """(mode, table, slope, divisor, intercept): stored value → ``raw * slope / divisor + b``.

    A scale that is ``1/n`` for an integer ``n`` divides by ``n``, so ``k/255`` values are
    exactly the float64 numbers ``k/255`` and land on the same side of every edge.
    """
    empty = np.zeros(1)
    if dtype == np.float16:
        table = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float64)
        return _TABLE, table, 1.0, 1.0, 0.0
    if dtype.kind == "f" and dtype.itemsize > 8:
        raise ValueError(f"{where}dtype {dtype} is not a probability dtype (expected "
                         "float16, float32 or float64, or integer)")
    if dtype.kind == "f":
        if scale is not None and (scale != 1 or intercept != 0):
            slope, divisor = _slope_divisor(scale)
            return _AFFINE, empty, slope, divisor, float(intercept)
        return _DIRECT, empty, 1.0, 1.0, 0.0
    if dtype.kind in "iu":
        if scale is None:
            if dtype != np.uint8:
                raise ValueError(
                    f"{where}integer probabilities of dtype {dtype} need a scale factor "
                    "(e.g. scale=1/65535); only uint8 defaults to /255"
                )
            scale = 1 / 255
        slope, divisor = _slope_divisor(scale)
        if dtype in (np.uint8, np.uint16):
            values = np.arange(2 ** (8 * dtype.itemsize), dtype=np.float64)
            return _TABLE, values * slope / divisor + float(intercept), 1.0, 1.0, 0.0
        return _AFFINE, empty, slope, divisor, float(intercept)
    raise ValueError(f"{where}dtype {dtype} is not a probability dtype (expected float or "
                     "integer)")


def _slope_divisor(scale) -> tuple[float, float]:
    scale = float(scale)
    if scale <= 0 or not np.isfinite(scale):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    inverse = 1.0 / scale
    if abs(inverse - round(inverse)) < 1e-6 * inverse:
        return 1.0, float(round(inverse))
    return scale, 1.0


# the dtypes the kernel reads (one compiled version per pair in use); others are converted
_P_TYPES = tuple(np.dtype(t) for t in (np.float32, np.float64, np.uint8, np.uint16, np.int16,
                                       np.int32))
_L_TYPES = tuple(np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.int32, np.int64))
_NO_MASK = np.zeros(1, dtype=bool)
#: The kernels' ``soft`` argument: this for soft binning, ``None`` for hard. Its type chooses
#: the compiled version, so hard binning (the default) never compiles the soft path.
_SOFT = 1.0


def _writable(array: np.ndarray) -> np.ndarray:
    """C-contiguous, writable (read-only arrays would need a second compiled signature)."""
    if not array.flags.c_contiguous or not array.flags.writeable:
        return np.array(array, order="C")
    return array


def _kernel_probs(probs: np.ndarray) -> np.ndarray:
    """``probs`` ``[C, N]`` in one of the kernel's dtypes with unchanged decoded values:
    float16 as its bits (decoded by table), int8 widened, 32/64-bit integers as float64 (the
    kernel's own conversion), other byte orders swapped."""
    dtype = probs.dtype
    if not dtype.isnative:
        probs = probs.astype(dtype.newbyteorder("="))
        dtype = probs.dtype
    if dtype == np.float16:
        probs = probs.view(np.uint16)
    elif dtype == np.int8:
        probs = probs.astype(np.int16)
    elif dtype.kind in "iu" and dtype not in _P_TYPES:
        probs = probs.astype(np.float64)
    return _writable(probs)


def _kernel_labels(labels: np.ndarray, offset: int, n_lut: int) -> np.ndarray:
    """``labels`` ``[1 or C, N]`` in one of the kernel's label dtypes; values outside the
    table stay outside it (others are clipped just past its ends)."""
    dtype = labels.dtype
    if not dtype.isnative:
        labels = labels.astype(dtype.newbyteorder("="))
        dtype = labels.dtype
    if dtype == np.int8:
        labels = labels.astype(np.int16)
    elif dtype not in _L_TYPES:
        low, high = offset - 1, offset + n_lut
        labels = np.clip(labels, max(low, np.iinfo(dtype).min), high).astype(np.int64)
    return _writable(labels)


def _run_kernel(
    probs, labels, lut, offset, strict, mask, acc: BinAccumulator, scale, intercept, names
):
    """Call the kernel on ``probs`` ``[C, N]`` and turn its slots into class sums."""
    where = acc.where
    mode, table, slope, divisor, inter = _decoder(probs.dtype, scale, intercept, where)
    probs = _kernel_probs(probs)
    labels = _kernel_labels(labels, offset, lut.shape[1])
    use_mask = mask is not None  # shape checked by _checked_mask
    if use_mask and not mask.flags.c_contiguous:
        mask = np.ascontiguousarray(mask)
    soft = acc.binning == "soft"
    t_lo, t_hi = (-1.0, 2.0) if soft else _end_bin_bounds(acc.edges, acc.closure)
    sums, counters, checks, value_range = _bin_kernel(
        probs, labels, mode, table, float(slope), float(divisor), float(inter),
        _kernel_lut(lut, strict), np.int64(offset), mask if use_mask else _NO_MASK, use_mask,
        _cuts(acc.edges, acc.closure), t_lo, t_hi, float(_near_edge(acc.edges)),
        _SOFT if soft else None, float(CLIP_TOLERANCE), n_classes=probs.shape[0],
        n_vox=probs.shape[1], n_bins=len(acc.edges) - 1,
    )
    checks = checks.sum(axis=0)
    low, high = value_range[:, 0].min(), value_range[:, 1].max()
    acc.value_range = (min(acc.value_range[0], low), max(acc.value_range[1], high))
    classes = ", ".join(map(repr, names))
    if checks[_NONFINITE]:
        raise ValueError(
            f"{where}probabilities of {classes} contain {checks[_NONFINITE]} non-finite "
            "values (NaN or inf); expected finite values in [0, 1]"
        )
    if checks[_FAR_OUT]:
        n_out = int(checks[_FAR_OUT])
        overall = _decoded_range(probs, mode, table, slope, divisor, inter)
        raise out_of_range(f"{where}probabilities of {classes}", n_out,
                           int(counters[..., 0].sum()) + n_out, *overall, low, high)
    if checks[_UNDECLARED_N]:
        raise ValueError(
            f"{where}labels hold {checks[_UNDECLARED_N]} voxels with values that no class "
            f"declares (declared: {_declared_values(lut, offset)})"
        )
    # fixed-order reduction over slots and copies: independent of the thread count
    per_bin = _reduce_slots(sums).reshape(len(names), -1, 5)
    counts = per_bin[..., 0]
    if acc.binning == "hard":
        counts = np.rint(counts).astype(np.int64)
    scored, positive, true_positive, truth, clipped = counters.sum(axis=0).T
    confusion = np.stack([
        true_positive,                               # tp
        positive - true_positive,                    # fp
        truth - true_positive,                       # fn
        scored - positive - truth + true_positive,   # tn
        clipped,
    ], axis=1)
    return counts, per_bin[..., 1:], confusion


def _decoded_range(probs, mode, table, slope, divisor, intercept) -> tuple[float, float]:
    """(lowest, highest) finite decoded value of the kernel's ``probs`` (every voxel, masked
    or not), for the message about values outside [0, 1]."""
    if mode == _TABLE:  # float16 bits or small integers: the decoded values present
        present = np.bincount(probs.ravel().astype(np.intp), minlength=len(table)) > 0
        return finite_range(table[present[: len(table)]])
    low, high = finite_range(probs)
    if mode == _AFFINE:
        low, high = (low * slope / divisor + intercept, high * slope / divisor + intercept)
    return low, high


def _kernel_lut(lut: np.ndarray, strict: bool) -> np.ndarray:
    """uint8 ``[C, 2 + L]``: ``lut`` behind two columns, a voxel outside the mask (excluded)
    and a label value outside the table (undeclared when ``strict``, else negative)."""
    lead = np.empty((lut.shape[0], _IDX_FIRST), dtype=np.uint8)
    lead[:, _IDX_MASKED] = _EXCLUDED
    lead[:, _IDX_OUTSIDE] = _UNDECLARED if strict else _NEGATIVE
    return np.concatenate([lead, lut], axis=1)


def _end_bin_bounds(edges: np.ndarray, closure: str) -> tuple[float, float]:
    """(t_lo, t_hi): values in ``[0, t_lo]`` belong to bin 0 and values in ``[t_hi, 1]`` to
    the last bin under the closure's edge rule, with ``t_lo < 0.5 <= t_hi`` (so neither
    needs the threshold test); no fast path (-1, 2) with fewer than 3 bins."""
    last = len(edges) - 2
    if last < 2:
        return -1.0, 2.0
    if closure == "right":  # bin 0: p <= e_1; last bin: p > e_B-1
        t_lo, t_hi = edges[1], np.nextafter(edges[last], np.inf)
    else:  # bin 0: p < e_1; last bin: p >= e_B-1
        t_lo, t_hi = np.nextafter(edges[1], -np.inf), edges[last]
    return float(t_lo), float(t_hi)


def _cuts(edges: np.ndarray, closure: str) -> np.ndarray:
    """float64 ``[B + 1]``: bin ``k`` holds ``cuts[k] <= p < cuts[k + 1]`` for p in [0, 1]:
    the edges when left-closed; when right-closed (``e_k < p <= e_k+1``) the next float64
    above each edge, so one comparison serves both closures."""
    return edges if closure == "left" else np.nextafter(edges, np.inf)


def _near_edge(edges: np.ndarray) -> float:
    """Distance from an integer of ``p·B`` (in bin widths) within which the exact edge
    comparison decides: the edges' rounding to the input precision, the rounding of the
    product, and a wide safety factor."""
    n_bins = len(edges) - 1
    exact = np.arange(n_bins + 1) / n_bins
    rounding = float(np.max(np.abs(edges - exact))) * n_bins
    return 4.0 * rounding + 64 * np.finfo(np.float64).eps * n_bins


def _declared_values(lut: np.ndarray, offset: int) -> list[int]:
    return [int(i) + offset for i in np.flatnonzero(lut[0] != _UNDECLARED)]
