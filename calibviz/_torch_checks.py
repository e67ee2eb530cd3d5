"""Checks of a PyTorch batch shared by the losses (:mod:`calibviz.losses`) and the metrics
(:mod:`calibviz.torchmetrics`, :mod:`calibviz.monai`): shapes (no device work), then every
value check in ONE device-to-host synchronisation, then the bool outcomes.

:func:`parse` splits a target into a one-hot ``(B, C, *spatial)`` or a label map
``(B, 1, *spatial)``; :func:`check_values` counts, on the device, the non-finite and
out-of-range probabilities (or non-finite logits), label values outside ``0..C-1``,
non-integral labels, one-hot values other than 0/1 and (optionally) voxels whose one-hot
has not exactly one positive channel, and moves those few numbers to the host at once;
:func:`outcomes` builds ``(B, C, N)`` bool outcomes, the ``(B, N)`` label map and the
``(B, N)`` mask of the voxels kept (``ignore_index``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from .binning import CLIP_TOLERANCE


@dataclass
class Target:
    """A parsed target: exactly one of ``onehot`` ``(B, C, *spatial)`` and ``labels``
    ``(B, 1, *spatial)`` (bool labels as uint8) is set; ``ignore_index`` or None;
    ``empty_ignored``: one-hot voxels with no positive channel are left out as well."""

    onehot: torch.Tensor | None
    labels: torch.Tensor | None
    ignore_index: int | None = None
    empty_ignored: bool = False

    def ignored(self) -> torch.Tensor | None:
        """bool ``(B, 1, *spatial)``: voxels left out (any channel == ignore_index, and with
        ``empty_ignored`` one-hot voxels with no positive channel)."""
        if self.ignore_index is None:
            return None
        if self.labels is not None:
            return self.labels == self.ignore_index
        marked = (self.onehot == self.ignore_index).any(dim=1, keepdim=True)
        if self.empty_ignored:
            marked = marked | ~positive(self.onehot).any(dim=1, keepdim=True)
        return marked


def positive(onehot: torch.Tensor) -> torch.Tensor:
    """bool, same shape: the positive entries of a one-hot (``> 0.5``; bool as is)."""
    return onehot if onehot.dtype == torch.bool else onehot > 0.5


def check_ignore_index(value) -> int | None:
    """``ignore_index`` option: None or an integer (not a bool)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"ignore_index must be an integer or None, got {value!r}")
    return int(value)


def check_shape(values: torch.Tensor, name: str) -> tuple[int, int, list[int]]:
    """``(B, C, spatial)`` of a ``(B, C, *spatial)`` floating tensor with something in it."""
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor, got {type(values).__name__}")
    if not values.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {values.dtype}")
    if values.ndim < 3:
        raise ValueError(
            f"{name} must be (B, C, *spatial) with at least one spatial axis, "
            f"got shape {tuple(values.shape)}"
        )
    batch, n_classes, *spatial = values.shape
    shape = tuple(values.shape)
    if batch == 0:
        raise ValueError(f"{name} has an empty batch (shape {shape}); expected at least one image")
    if n_classes == 0:
        raise ValueError(f"{name} has no channels (shape {shape}); expected (B, C, *spatial)")
    if math.prod(spatial) == 0:
        raise ValueError(f"{name} has no voxels (shape {shape})")
    return batch, n_classes, spatial


def parse(
    target: torch.Tensor, shape, *, target_name: str, ignore_index=None,
    categorical: bool = False,
) -> Target:
    """Split ``target`` by shape: one-hot ``shape`` or label map ``(B[, 1], *spatial)``.

    ``categorical`` (C > 1 classes, one per voxel): with ``ignore_index``, one-hot voxels with
    no positive channel have no class and are left out, as the label value would be."""
    batch, n_classes, *spatial = shape
    if tuple(target.shape) == tuple(shape):
        onehot, labels = target, None
    elif tuple(target.shape) in ((batch, *spatial), (batch, 1, *spatial)):
        onehot, labels = None, target.reshape(batch, 1, *spatial)
        if labels.dtype == torch.bool:
            labels = labels.to(torch.uint8)
    else:
        raise ValueError(
            f"{target_name} has shape {tuple(target.shape)}; expected a label map "
            f"{(batch, *spatial)} or {(batch, 1, *spatial)}, or one-hot {tuple(shape)}"
        )
    if ignore_index is not None:
        classes = range(n_classes) if labels is not None else range(2)
        if ignore_index in classes:
            kind = f"0..{n_classes - 1}" if labels is not None else "0/1 of a one-hot target"
            raise ValueError(
                f"ignore_index={ignore_index} is a class value ({kind}); choose a value "
                "no class uses, e.g. 255 or -1"
            )
    empty_ignored = categorical and onehot is not None and n_classes > 1
    return Target(onehot, labels, ignore_index, empty_ignored and ignore_index is not None)


def check_values(
    values: torch.Tensor,
    target: Target,
    *,
    logits: bool,
    names: tuple[str, str],
    hint: str,
    one_positive: bool = False,
    label_hint: str = "",
    no_empty: bool | None = False,
    empty_hint: str = "",
) -> None:
    """Raise ``ValueError`` for bad values; exactly one device synchronisation.

    ``values`` ``(B, C, *spatial)`` are probabilities (finite, within ``CLIP_TOLERANCE`` of
    [0, 1]) or, with ``logits``, anything finite.  ``target`` as :func:`parse`; voxels with
    ``ignore_index`` are exempt.  ``one_positive``: a one-hot target must have exactly one
    channel > 0.5 per kept voxel; ``no_empty``: at least one (``empty_hint`` ends the
    message); ``None``: at least one when the probabilities sum to 1 in every voxel (softmax
    outputs: one class per voxel; multi-label probabilities do not), so an all-zero voxel
    stays a multi-label "no region" outcome otherwise.  ``hint`` names the activation
    options (``"softmax=True"``).
    """
    with torch.no_grad():
        found = _counts(values, target, logits=logits, one_positive=one_positive,
                        no_empty=no_empty)
    _raise_for(found, values, target, names, hint, label_hint, logits,
               (one_positive, one_positive or no_empty is True, empty_hint or EMPTY_HINT))


def _counts(values, target, *, logits, one_positive, no_empty) -> list[float]:
    """``[non-finite, min, max, labels outside, fractional labels, one-hot not 0/1, voxels
    not one-positive, voxels with no positive, voxels whose probabilities do not sum to 1]``
    computed on the device, moved to the host in one transfer."""
    n_classes = values.shape[1]
    zero = values.new_zeros((), dtype=torch.float64)
    stats = [(~torch.isfinite(values)).sum()]
    if logits:
        stats += [zero, zero]
    else:
        low, high = torch.aminmax(values)
        stats += [low, high]
    ignored = target.ignored()
    kept = None if ignored is None else ~ignored
    if target.labels is not None:
        labels = target.labels
        outside = (labels < 0) | (labels >= n_classes)
        not_integral = (
            ~(torch.isfinite(labels) & (labels == labels.round()))
            if labels.is_floating_point() else None
        )
        if kept is not None:
            outside = outside & kept
            not_integral = None if not_integral is None else not_integral & kept
        stats += [outside.sum(), zero if not_integral is None else not_integral.sum()]
        stats += [zero, zero, zero, zero]
    else:
        onehot = target.onehot
        stats += [zero, zero]
        not_binary = (
            zero if onehot.dtype == torch.bool
            else _masked((onehot != 0) & (onehot != 1), kept).sum()
        )
        positives = (
            positive(onehot).sum(dim=1, keepdim=True)
            if one_positive or no_empty is not False else None
        )
        not_one = _masked(positives != 1, kept).sum() if one_positive else zero
        none = zero if positives is None else _masked(positives == 0, kept).sum()
        off_simplex = zero + 1  # the probabilities say nothing (one channel, logits)
        if no_empty is None and not logits and n_classes > 1:
            sums = values.sum(dim=1, keepdim=True, dtype=torch.float64)
            off_simplex = (~((sums - 1).abs() <= CLIP_TOLERANCE)).sum()
        stats += [not_binary, not_one, none, off_simplex]
    return torch.stack([s.to(torch.float64) for s in stats]).tolist()  # the one sync


def _masked(bad: torch.Tensor, kept: torch.Tensor | None) -> torch.Tensor:
    return bad if kept is None else bad & kept


#: How to mend one-hot voxels with no positive channel (the metrics' wording).
EMPTY_HINT = "give each voxel its class, or pass a label map"


def _raise_for(found, values, target, names, hint, label_hint, logits, empty) -> None:
    """The first problem of ``found`` as a ValueError (extra syncs only on this path);
    ``empty``: (one positive channel required, voxels with none refused whatever the
    probabilities, hint for voxels with none)."""
    ignored = target.ignored()
    kept = None if ignored is None else ~ignored
    (n_nonfinite, low, high, n_outside, n_fractional, n_not_binary, n_not_one, n_none,
     n_off_simplex) = found
    one_positive, always, empty_hint = empty
    name, target_name = names
    n_classes = values.shape[1]
    if n_outside:
        labels = target.labels
        outside = _masked((labels < 0) | (labels >= n_classes), kept)
        bad = [_plain(v) for v in torch.unique(labels[outside])[:3].tolist()]
        one_channel = ("; with one channel, give the target as (B, 1, *spatial) 0/1 "
                       "outcomes (1 = the channel's class)" if n_classes == 1 else "")
        raise ValueError(
            f"{target_name} holds label values {bad} outside 0..{n_classes - 1} "
            f"({n_classes} channels) in {int(n_outside)} voxels{one_channel or label_hint}"
        )
    if n_fractional:
        raise ValueError(f"a label-map {target_name} must hold integer class values")
    if n_not_binary:
        onehot = target.onehot
        bad = torch.unique(onehot[_masked((onehot != 0) & (onehot != 1), kept)])[:3].tolist()
        raise ValueError(
            f"a one-hot {target_name} must hold only 0 and 1; found values such as {bad}"
        )
    if n_none and (always or not n_off_simplex):
        why = (f"; {int(n_none)} voxels have no positive" if always else
               f" (the {name} probabilities sum to 1 in every voxel, as a softmax's do); "
               f"{int(n_none)} voxels have no positive")
        rule = "exactly one positive channel per voxel" if one_positive else "a class per voxel"
        raise ValueError(
            f"a one-hot {target_name} must have {rule}{why} channel: such voxels have no "
            f"class; {empty_hint}"
        )
    if n_not_one:
        raise ValueError(
            f"a one-hot {target_name} must have exactly one positive channel per voxel for "
            f"the categorical cross-entropy; {int(n_not_one)} voxels have none or several "
            "(use a label map, or sigmoid=True for multi-label targets)"
        )
    if n_nonfinite and logits:
        raise ValueError(f"{name} (logits) contain NaN or infinite values")
    if n_nonfinite:
        raise ValueError(
            f"{name} contain {int(n_nonfinite)} non-finite values (NaN or inf); expected "
            f"probabilities in [0, 1] (pass {hint} for logits)"
        )
    if low < -CLIP_TOLERANCE or high > 1.0 + CLIP_TOLERANCE:
        raise ValueError(
            f"{name} range over [{low:.6g}, {high:.6g}]; expected probabilities in [0, 1] "
            f"(up to {CLIP_TOLERANCE:g} outside is clipped; pass {hint} for logits)"
        )


def _plain(value):
    """An integral float label as an int (255.0 -> 255)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def outcomes(
    target: Target, n_classes: int
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """``(outcome (B, C, N) bool, labels (B, N) int64 or None, kept (B, 1, N) bool or None)``.

    One-hot: ``outcome = target > 0.5`` (bool as is); label map: ``outcome_c = (label == c)``
    (floating labels as int64).  ``kept`` marks the voxels not equal to ``ignore_index``.
    """
    ignored = target.ignored()
    if target.labels is not None:
        labels = target.labels
        if labels.is_floating_point():
            labels = labels.long()
        batch = labels.shape[0]
        labels = labels.reshape(batch, -1)
        channel = torch.arange(n_classes, device=labels.device).view(1, n_classes, 1)
        outcome = labels[:, None, :] == channel
    else:
        onehot = target.onehot
        outcome = onehot if onehot.dtype == torch.bool else onehot > 0.5
        batch = onehot.shape[0]
        outcome = outcome.reshape(batch, n_classes, -1)
        labels = None
        if ignored is not None:
            outcome = outcome & ~ignored.reshape(batch, 1, -1)
    kept = None if ignored is None else ~ignored.reshape(batch, 1, -1)
    return outcome, labels, kept
