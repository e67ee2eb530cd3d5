"""The model's own segmentation, for Dice: the rule (argmax of a softmax map, or each channel
thresholded at ``p >= 0.5``) and the confusion counts of the argmax segmentation.

``argmax`` is what nnU-Net's and MONAI's inference write (ties go to the lowest channel, as
``numpy.argmax``) and the default for softmax maps; ``threshold`` is the paper's evaluation
(MONAI ``AsDiscrete(threshold=0.5)``) and the only rule for sigmoid or region maps. The
threshold counts come from the kernel's single pass; the argmax counts from one pass over the
argmax label map kept while the channels stream.
"""

from __future__ import annotations

import numpy as np

from .classes import Resolved

#: Voxels handled at a time when counting (bounds the transient index arrays).
_CHUNK = 1 << 20


def dice_rule(requested: str, resolved: Resolved) -> str:
    """The rule used: ``"auto"`` is argmax for softmax maps, threshold otherwise. Asking for
    argmax on a map that is not a softmax raises ``ValueError``."""
    if requested == "auto":
        return "argmax" if resolved.softmax else "threshold"
    if requested == "argmax" and not resolved.softmax:
        raise ValueError(
            "--dice argmax needs a softmax map (one channel per label, background included); "
            f"these channels ({', '.join(resolved.channel_names)}) are scored independently: "
            "use --dice threshold")
    return requested


def track_argmax(best: np.ndarray, argbest: np.ndarray, values: np.ndarray, c: int) -> None:
    """One channel of a running argmax, in place: where ``values > best``, ``best`` takes the
    value and ``argbest`` (an integer array) becomes ``c``; ties keep the earlier channel (as
    ``numpy.argmax``) and NaN never wins. All three arrays share one shape.

    Whole-array passes instead of masked copies (``copyto(where=)`` is ~10x slower).
    """
    better = np.greater(values, best)
    np.fmax(best, values, out=best)  # = values where better; a NaN value keeps best
    step = np.subtract(argbest.dtype.type(c), argbest)  # wraps around in unsigned types...
    step *= better
    argbest += step  # ...and back: argbest + (c - argbest) = c where better


def argmax_confusion(argmax: np.ndarray, resolved: Resolved, labels: np.ndarray,
                     valid: np.ndarray | None) -> np.ndarray:
    """int64 ``[T, 4]`` (tp, fp, fn, tn) of each scored target against the argmax
    segmentation: predicted positive where the argmax label is one of the target's members.

    argmax : ``(*spatial)`` channel index of the largest probability per voxel
    labels : ``(*spatial)`` integer label map; valid : bool ``(*spatial)`` voxels scored

    One pass counts the (label, channel) pairs; the counts, not the voxels, are then mapped
    to (truth, prediction) classes.
    """
    channel_labels = np.array([v[0] for v in resolved.channel_values], dtype=np.int64)
    values = np.union1d(np.asarray(resolved.declared, dtype=np.int64), channel_labels)
    lookup_size = int(values.max() - values.min() + 1)
    offset = int(values.min())
    lut = np.full(lookup_size, len(values), dtype=np.int64)  # undeclared: its own index
    lut[values - offset] = np.arange(len(values))
    k = len(values) + 1
    order = "F" if labels.flags.f_contiguous else "C"  # same voxel order for all three
    flat_labels = labels.reshape(-1, order=order)
    if flat_labels.dtype.itemsize == 1:  # count by stored byte, map the 256 rows after
        rows = flat_labels.view(np.uint8)
        every = np.arange(256).astype(np.uint8).view(flat_labels.dtype).astype(np.int64)
        row_class = _class_index(every, lut, offset, k)
    else:
        rows, row_class = None, np.arange(k)
    pairs = _count_pairs(rows, flat_labels, lut, offset, k, len(row_class),
                         argmax.reshape(-1, order=order), len(channel_labels),
                         None if valid is None else valid.reshape(-1, order=order))
    matrix = np.zeros((k, k), dtype=np.int64)  # rows: truth, columns: prediction
    predicted_class = lut[channel_labels - offset]
    np.add.at(matrix, (row_class[:, None], predicted_class[None, :]), pairs)
    total = matrix.sum()
    out = np.zeros((len(resolved.targets), 4), dtype=np.int64)
    for t, target in enumerate(resolved.targets):
        members = [int(np.searchsorted(values, m)) for m in target.members if m in values]
        tp = matrix[np.ix_(members, members)].sum()
        truth, predicted = matrix[members, :].sum(), matrix[:, members].sum()
        out[t] = (tp, predicted - tp, truth - tp, total - truth - predicted + tp)
    return out


def _class_index(label_values: np.ndarray, lut: np.ndarray, offset: int, k: int) -> np.ndarray:
    """int64 index in the sorted class values of each label value (``k - 1``: undeclared)."""
    shifted = label_values.astype(np.int64) - offset
    inside = (shifted >= 0) & (shifted < len(lut))
    return np.where(inside, lut[np.clip(shifted, 0, len(lut) - 1)], k - 1)


def _count_pairs(rows, flat_labels, lut, offset, k, n_rows, flat_argmax, n_channels,
                 flat_valid) -> np.ndarray:
    """int64 ``[n_rows, n_channels]`` voxel counts of each (row, argmax channel) pair over
    the ``valid`` voxels; a row is the stored byte (``rows`` given) or the class index."""
    code_type = np.uint32 if (n_rows * n_channels + 1) < 2**32 else np.int64
    counts = np.zeros(n_rows * n_channels + 1, dtype=np.int64)  # [0]: outside ``valid``
    for start in range(0, flat_labels.size, _CHUNK):
        part = slice(start, start + _CHUNK)
        row = (rows[part] if rows is not None
               else _class_index(flat_labels[part], lut, offset, k))
        codes = row.astype(code_type)
        codes *= code_type(n_channels)
        np.add(codes, flat_argmax[part], out=codes, casting="unsafe")  # small, >= 0
        codes += code_type(1)
        if flat_valid is not None:
            codes *= flat_valid[part]
        counts += np.bincount(codes, minlength=len(counts))
    return counts[1:].reshape(n_rows, n_channels)
