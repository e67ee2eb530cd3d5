"""Data objects that flow through calibviz: per-bin sufficient statistics and the
dataset reliability histogram. NumPy only.

A :class:`BinStats` holds, per class ``c`` and bin ``k``, the additive sums from which
every calibration number is derived (spec §2): voxel count ``n`` (int64; for soft
binning the float64 soft weight ``W``), and float64 sums of ``p``, ``y``, ``p²``,
``p·y``.  It also keeps the per-class confusion counts at threshold 0.5 (for Dice) and
the convention it was made with.  ``a + b`` pools two of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .options import BINNINGS, CLOSURES, DEFAULT_EMPTY_WEIGHT

#: The name of the top-label row (confidence the largest class probability, outcome
#: ``argmax == label``): a summary over classes, never pooled with the class rows.
TOP_LABEL = "top-label"

#: The additive (per-image, poolable) array fields of BinStats.
SUM_FIELDS = (
    "count", "sum_p", "sum_y", "sum_p2", "sum_py", "tp", "fp", "fn", "tn", "n_clipped"
)


def nonempty_bins(count, binning: str, empty_weight: float) -> np.ndarray:
    """bool ``[..., B]``: bins that hold data: ``n > 0`` (hard); ``W > 0`` and
    ``W >= empty_weight`` (soft: a bin of weight 0 is empty whatever the threshold, so a
    threshold of 0 gives no 0/0 means).

    >>> nonempty_bins(np.array([0.0, 0.005, 0.5]), "soft", 0.0).tolist()
    [False, True, True]
    """
    count = np.asarray(count)
    if binning == "soft":
        return (count > 0) & (count >= empty_weight)
    return count > 0


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class BinStats:
    """Per-class, per-bin sufficient statistics of one image (or pooled images).

    Attributes
    ----------
    count : int64 ``[C, B]`` voxels per bin (float64 soft weights ``W`` when ``binning="soft"``)
    sum_p, sum_y, sum_p2, sum_py : float64 ``[C, B]`` sums of p, y, p², p·y per bin
    tp, fp, fn, tn : int64 ``[C]`` confusion counts of ``p >= 0.5`` against the outcome
    edges : float64 ``[B + 1]`` bin edges ``k/B`` (the convention; voxels were assigned with
        the edges rounded to their input's precision); derived from the shape when None
    class_names : tuple of C names
    closure : ``"right"`` (``e_k < p <= e_k+1``) or ``"left"`` (``e_k <= p < e_k+1``)
    binning : ``"hard"`` or ``"soft"``
    empty_weight : soft bins with ``W < empty_weight`` (or ``W = 0``) count as empty
        (ignored when hard)
    n_images : how many images were pooled into these sums
    n_clipped : int64 ``[C]`` values outside [0, 1] (within tolerance) that were clipped
    """

    count: np.ndarray
    sum_p: np.ndarray
    sum_y: np.ndarray
    sum_p2: np.ndarray
    sum_py: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray
    edges: np.ndarray | None = None
    class_names: tuple[str, ...] = ()
    closure: str = "right"
    binning: str = "hard"
    empty_weight: float = DEFAULT_EMPTY_WEIGHT
    n_images: int = 1
    n_clipped: np.ndarray | None = None

    def __post_init__(self) -> None:
        count_dtype = np.int64 if self.binning == "hard" else np.float64
        set_ = object.__setattr__
        set_(self, "count", _readonly(np.asarray(self.count, dtype=count_dtype)))
        for name in ("sum_p", "sum_y", "sum_p2", "sum_py"):
            set_(self, name, _readonly(np.asarray(getattr(self, name), dtype=np.float64)))
        if self.n_clipped is None:
            set_(self, "n_clipped", np.zeros(self.count.shape[0], dtype=np.int64))
        for name in ("tp", "fp", "fn", "tn", "n_clipped"):
            set_(self, name, _readonly(np.asarray(getattr(self, name), dtype=np.int64)))
        n_classes, n_bins = self.count.shape
        if self.edges is not None and np.shape(self.edges) != (n_bins + 1,):
            raise ValueError(f"edges must have shape ({n_bins + 1},), got {np.shape(self.edges)}")
        # bins are a convention (B, closure): the edges are k/B whatever precision the
        # input had (its rounded edges only decided which bin each voxel went to)
        set_(self, "edges", _readonly(np.arange(n_bins + 1, dtype=np.float64) / n_bins))
        if not self.class_names:
            set_(self, "class_names", tuple(f"class{c}" for c in range(n_classes)))
        else:
            set_(self, "class_names", tuple(str(n) for n in self.class_names))
        if self.closure not in CLOSURES:
            raise ValueError(f"closure must be one of {CLOSURES}, got {self.closure!r}")
        if self.binning not in BINNINGS:
            raise ValueError(f"binning must be one of {BINNINGS}, got {self.binning!r}")
        if len(self.class_names) != n_classes:
            raise ValueError(
                f"{len(self.class_names)} class names given for {n_classes} classes"
            )
        for name in ("sum_p", "sum_y", "sum_p2", "sum_py"):
            if getattr(self, name).shape != (n_classes, n_bins):
                raise ValueError(f"{name} must have shape {(n_classes, n_bins)}")
        for name in ("tp", "fp", "fn", "tn", "n_clipped"):
            if getattr(self, name).shape != (n_classes,):
                raise ValueError(f"{name} must have shape ({n_classes},)")

    # ------------------------------------------------------------------ shape
    @property
    def n_classes(self) -> int:
        return self.count.shape[0]

    @property
    def n_bins(self) -> int:
        return self.count.shape[1]

    # ------------------------------------------------------------ derived
    @property
    def n_voxels(self) -> np.ndarray:
        """int64 ``[C]`` voxels scored per class."""
        return self.tp + self.fp + self.fn + self.tn

    @property
    def n_truth(self) -> np.ndarray:
        """int64 ``[C]`` ground-truth (outcome 1) voxels per class."""
        return self.tp + self.fn

    @property
    def absent(self) -> np.ndarray:
        """bool ``[C]``: the class has no ground-truth voxel in this image."""
        return self.n_truth == 0

    @property
    def nonempty(self) -> np.ndarray:
        """bool ``[C, B]``: bins that hold data (see :func:`nonempty_bins`)."""
        return nonempty_bins(self.count, self.binning, self.empty_weight)

    def _mean(self, sums: np.ndarray) -> np.ndarray:
        out = np.full(sums.shape, np.nan)
        ok = self.nonempty
        np.divide(sums, self.count, out=out, where=ok)
        return out

    @property
    def mean_confidence(self) -> np.ndarray:
        """float64 ``[C, B]`` mean predicted probability per bin; NaN for empty bins."""
        return self._mean(self.sum_p)

    @property
    def frequency(self) -> np.ndarray:
        """float64 ``[C, B]`` observed foreground frequency per bin; NaN for empty bins."""
        return self._mean(self.sum_y)

    def compatible_with(self, other: BinStats) -> None:
        """Raise ``ValueError`` unless ``other`` can be added to ``self``."""
        problems = []
        if self.count.shape != other.count.shape:
            problems.append(f"shape {self.count.shape} vs {other.count.shape}")
        if self.class_names != other.class_names:
            problems.append(f"classes {self.class_names} vs {other.class_names}")
        if self.closure != other.closure:
            problems.append(f"closure {self.closure!r} vs {other.closure!r}")
        if self.binning != other.binning:
            problems.append(f"binning {self.binning!r} vs {other.binning!r}")
        elif self.binning == "soft" and self.empty_weight != other.empty_weight:
            problems.append(f"empty_weight {self.empty_weight} vs {other.empty_weight}")
        if problems:
            raise ValueError("cannot pool BinStats with " + "; ".join(problems))

    def __add__(self, other: BinStats) -> BinStats:
        if not isinstance(other, BinStats):
            return NotImplemented
        self.compatible_with(other)
        sums = {name: getattr(self, name) + getattr(other, name) for name in SUM_FIELDS}
        return self.replace(**sums, n_images=self.n_images + other.n_images)

    def __radd__(self, other):  # lets ``sum(list_of_stats)`` work
        if isinstance(other, int) and other == 0:
            return self
        return NotImplemented

    def replace(self, **changes) -> BinStats:
        """A copy with some fields replaced."""
        fields = {name: getattr(self, name) for name in (*SUM_FIELDS, "edges")}
        fields.update(
            class_names=self.class_names,
            closure=self.closure,
            binning=self.binning,
            empty_weight=self.empty_weight,
            n_images=self.n_images,
        )
        fields.update(changes)
        return BinStats(**fields)

    def select(self, classes) -> BinStats:
        """The statistics of some classes only (indices or names, or one name or index), in
        the given order."""
        if isinstance(classes, (str, int, np.integer)):
            classes = [classes]
        index = [self.class_index(c) for c in classes]
        fields = {name: getattr(self, name)[index] for name in SUM_FIELDS}
        return self.replace(**fields, class_names=tuple(self.class_names[i] for i in index))

    def class_index(self, name_or_index) -> int:
        if isinstance(name_or_index, (int, np.integer)):
            if not 0 <= name_or_index < self.n_classes:
                raise ValueError(
                    f"class index {name_or_index} out of range for {self.n_classes} classes"
                )
            return int(name_or_index)
        name = str(name_or_index)
        rows = [i for i, n in enumerate(self.class_names) if n == name]
        if not rows:
            raise ValueError(f"unknown class {name_or_index!r}; known: "
                             f"{', '.join(self.class_names)}")
        if len(rows) > 1:
            raise ValueError(f"class name {name!r} is ambiguous: rows {rows} carry it; "
                             "select by index")
        return rows[0]

    def sum_classes(self, name: str = "all classes") -> BinStats:
        """One class named ``name`` whose sums are those of all classes added (the bins of
        every class pooled; a ``top-label`` row is not a class and is left out)."""
        rows = self.class_rows
        fields = {n: getattr(self, n)[rows].sum(axis=0, keepdims=True) for n in SUM_FIELDS}
        return self.replace(**fields, class_names=(name,))

    @property
    def class_rows(self) -> np.ndarray:
        """int64 indices of the class rows (every row but a ``top-label`` one)."""
        return np.array([i for i, n in enumerate(self.class_names) if n != TOP_LABEL],
                        dtype=np.int64)

    def join(self, other: BinStats) -> BinStats:
        """The rows of ``self`` followed by those of ``other`` (same bins and convention)."""
        if (other.n_bins, other.closure, other.binning) != (self.n_bins, self.closure,
                                                            self.binning) or (
                self.binning == "soft" and self.empty_weight != other.empty_weight):
            raise ValueError("cannot join statistics of different bins or conventions")
        fields = {n: np.concatenate([getattr(self, n), getattr(other, n)]) for n in SUM_FIELDS}
        return self.replace(**fields, class_names=self.class_names + other.class_names)

    def mask_classes(self, keep: np.ndarray) -> BinStats:
        """Zero the sums of classes where ``keep`` (bool ``[C]``) is False."""
        keep = np.asarray(keep, dtype=bool)
        fields = {}
        for name in SUM_FIELDS:
            value = getattr(self, name)
            shape = (-1, 1) if value.ndim == 2 else (-1,)
            fields[name] = np.where(keep.reshape(shape), value, 0)
        return self.replace(**fields)

    @classmethod
    def zeros(
        cls,
        n_classes: int,
        edges: np.ndarray,
        *,
        class_names=(),
        closure: str = "right",
        binning: str = "hard",
        empty_weight: float = DEFAULT_EMPTY_WEIGHT,
        n_images: int = 0,
    ) -> BinStats:
        """Empty statistics, the identity of ``+``."""
        n_bins = len(edges) - 1
        count_dtype = np.int64 if binning == "hard" else np.float64
        zeros2 = np.zeros((n_classes, n_bins))
        zeros1 = np.zeros(n_classes, dtype=np.int64)
        return cls(
            count=np.zeros((n_classes, n_bins), dtype=count_dtype),
            sum_p=zeros2, sum_y=zeros2, sum_p2=zeros2, sum_py=zeros2,
            tp=zeros1, fp=zeros1, fn=zeros1, tn=zeros1, n_clipped=zeros1,
            edges=edges, class_names=class_names, closure=closure, binning=binning,
            empty_weight=empty_weight, n_images=n_images,
        )

    # ------------------------------------------------------- serialisation
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for ``np.savez`` (see :meth:`from_arrays`)."""
        out = {name: getattr(self, name) for name in (*SUM_FIELDS, "edges")}
        out["class_names"] = np.array(self.class_names, dtype=str)
        out["closure"] = np.array(self.closure)
        out["binning"] = np.array(self.binning)
        out["empty_weight"] = np.array(self.empty_weight)
        out["n_images"] = np.array(self.n_images)
        return out

    @classmethod
    def from_arrays(cls, arrays) -> BinStats:
        return cls(
            **{name: np.asarray(arrays[name]) for name in (*SUM_FIELDS, "edges")},
            class_names=tuple(str(s) for s in np.asarray(arrays["class_names"]).tolist()),
            closure=str(arrays["closure"]),
            binning=str(arrays["binning"]),
            empty_weight=float(arrays["empty_weight"]),
            n_images=int(arrays["n_images"]),
        )

    def equals(self, other: BinStats, *, rtol: float = 0.0, atol: float = 0.0) -> bool:
        """True when both hold the same convention and (within tolerance) the same sums."""
        try:
            self.compatible_with(other)
        except ValueError:
            return False
        return all(
            np.allclose(getattr(self, n), getattr(other, n), rtol=rtol, atol=atol)
            for n in SUM_FIELDS
        )


def column_normalised(counts: np.ndarray) -> np.ndarray:
    """float64 grid(s) ``[..., B_freq, B_conf]`` with each column summed to 1; empty columns
    are NaN (drawn blank), without 0/0 warnings."""
    grid = np.asarray(counts)
    totals = grid.sum(axis=-2, keepdims=True)
    out = np.full(grid.shape, np.nan)
    np.divide(grid, totals, out=out, where=np.broadcast_to(totals > 0, grid.shape))
    return out


def images_per_column(counts: np.ndarray) -> np.ndarray:
    """``[..., B_conf]`` images with data in each confidence bin of histogram grid(s)
    ``[..., B_freq, B_conf]`` (each image adds at most one count per column)."""
    return np.asarray(counts).sum(axis=-2)


@dataclass(frozen=True, eq=False)
class ReliabilityHistogram:
    """Dataset reliability histogram (spec §7).

    Attributes
    ----------
    counts : int64 ``[C, B_freq, B_conf]``; ``counts[c, r, k]`` is the number of images whose
        frequency in confidence bin ``k`` of class ``c`` falls in frequency bin ``r``
        (row 0 = lowest frequency; draw with ``origin="lower"``).
    voxel_counts : int64/float64 ``[C, B_freq, B_conf]`` the same grid weighted by voxels
    pooled : the micro (pooled) :class:`BinStats` of the same images, for the overlay curve
    n_images : int number of images added
    """

    counts: np.ndarray
    voxel_counts: np.ndarray
    pooled: BinStats
    n_images: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "counts", _readonly(np.asarray(self.counts, dtype=np.int64)))
        object.__setattr__(self, "voxel_counts", _readonly(np.asarray(self.voxel_counts)))
        expected = (self.pooled.n_classes, self.pooled.n_bins, self.pooled.n_bins)
        if self.counts.shape != expected:
            raise ValueError(f"counts must have shape {expected}, got {self.counts.shape}")

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.pooled.class_names

    @property
    def edges(self) -> np.ndarray:
        return self.pooled.edges

    @property
    def images_per_column(self) -> np.ndarray:
        """int64 ``[C, B_conf]`` images that have data in each confidence bin."""
        return images_per_column(self.counts)

    @property
    def all_classes(self) -> np.ndarray:
        """int64 ``[B_freq, B_conf]``: the grids of all classes summed (not a ``top-label``
        row)."""
        return self.counts[self.pooled.class_rows].sum(axis=0)

    def column_normalised(self, counts: np.ndarray | None = None) -> np.ndarray:
        """float64 grid(s) with each column summed to 1; empty columns are NaN (blank)."""
        return column_normalised(self.counts if counts is None else counts)

    def __add__(self, other: ReliabilityHistogram) -> ReliabilityHistogram:
        if not isinstance(other, ReliabilityHistogram):
            return NotImplemented
        return ReliabilityHistogram(
            counts=self.counts + other.counts,
            voxel_counts=self.voxel_counts + other.voxel_counts,
            pooled=self.pooled + other.pooled,
            n_images=self.n_images + other.n_images,
        )
