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
_CHUNK = 1 << 22


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
    """
    channel_labels = np.array([v[0] for v in resolved.channel_values], dtype=np.int64)
    values = np.union1d(np.asarray(resolved.declared, dtype=np.int64), channel_labels)
    lookup_size = int(values.max() - values.min() + 1)
    offset = int(values.min())
    lut = np.full(lookup_size, len(values), dtype=np.int64)  # undeclared: its own index
    lut[values - offset] = np.arange(len(values))
    k = len(values) + 1
    predicted_index = lut[channel_labels - offset]
    order = "F" if labels.flags.f_contiguous else "C"  # same voxel order for all three
    flat_labels = labels.reshape(-1, order=order)
    flat_argmax = argmax.reshape(-1, order=order)
    flat_valid = None if valid is None else valid.reshape(-1, order=order)
    code_type = np.uint16 if k * k < 2**16 - 1 else np.int64
    predicted_index = predicted_index.astype(code_type)
    byte_lut = None
    if flat_labels.dtype in (np.uint8, np.int8):  # one table over every possible value
        every = np.arange(256, dtype=np.int64)
        every = every.astype(flat_labels.dtype).astype(np.int64) - offset
        byte_lut = np.where((every >= 0) & (every < lookup_size),
                            lut[np.clip(every, 0, lookup_size - 1)], k - 1).astype(code_type)
    matrix = np.zeros(k * k + 1, dtype=np.int64)
    for start in range(0, flat_labels.size, _CHUNK):
        part = flat_labels[start:start + _CHUNK]
        if byte_lut is not None:
            lab = byte_lut[part.view(np.uint8)]
        else:
            lab = part.astype(np.int64) - offset
            lab = np.where((lab >= 0) & (lab < lookup_size),
                           lut[np.clip(lab, 0, lookup_size - 1)], k - 1).astype(code_type)
        codes = lab * code_type(k)
        codes += predicted_index[flat_argmax[start:start + _CHUNK]]
        codes += code_type(1)  # 0 is kept for the voxels outside ``valid``
        if flat_valid is not None:
            codes *= flat_valid[start:start + _CHUNK]
        matrix += np.bincount(codes, minlength=k * k + 1)
    matrix = matrix[1:]
    matrix = matrix.reshape(k, k)  # rows: truth, columns: prediction
    total = matrix.sum()
    out = np.zeros((len(resolved.targets), 4), dtype=np.int64)
    for t, target in enumerate(resolved.targets):
        members = [int(np.searchsorted(values, m)) for m in target.members if m in values]
        tp = matrix[np.ix_(members, members)].sum()
        truth, predicted = matrix[members, :].sum(), matrix[:, members].sum()
        out[t] = (tp, predicted - tp, truth - tp, total - truth - predicted + tp)
    return out
