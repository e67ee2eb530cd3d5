"""Differentiable marginal L1 average calibration error (mL1-ACE) losses for PyTorch.

The losses compute, per image and class, exactly the ACE that calibviz reports
(``calibviz.ace(calibviz.bin_image(...))``; spec §2, §3, §6) and average it over the batch:

* :class:`HardL1ACELoss` — hard, right-closed bins with edges ``k/B`` rounded to the
  precision of the probabilities.  Differentiable through the per-bin mean confidences;
  the bin assignment itself has no gradient.
* :class:`SoftL1ACELoss` — soft binning: each voxel splits its unit weight linearly between
  the two nearest bin centres ``(k + 1/2)/B`` (all of it to the end bin beyond the outer
  centres); bins with soft weight ``W < empty_weight`` are empty.  Differentiable through
  the bin weights as well.
* :class:`HardL1ACEAndDiceCELoss`, :class:`SoftL1ACEAndDiceCELoss` — the paper's
  combination ``w_ace·ACE + w_dice·Dice + w_ce·CE`` (default equal thirds), plain PyTorch.

Shapes: ``input`` is ``(B, C, *spatial)`` (logits with ``softmax=True``/``sigmoid=True``,
probabilities otherwise); ``target`` is a label map ``(B, *spatial)`` or ``(B, 1, *spatial)``
with values ``0..C-1`` (outcome of channel ``c`` is ``label == c``), or binary one-hot /
multi-label ``(B, C, *spatial)`` (same shape as ``input``).  All computation is vectorised:
one ``scatter_add`` over a flattened ``(image, class, bin)`` index, no Python loop over
images or classes.  Sums are accumulated in ``accumulate_dtype`` (float64 by default, as
calibviz does; float16/bfloat16 inputs are never accumulated in their own precision).

Requires PyTorch (``pip install calibviz[torch]``); nothing else in calibviz imports it.

>>> import torch
>>> from calibviz.losses import HardL1ACELoss
>>> probs = torch.tensor([[[[0.7, 0.3], [0.1, 0.9]]]], dtype=torch.float64)  # (1, 1, 2, 2)
>>> target = torch.tensor([[[[1, 0], [0, 1]]]])                               # one-hot, same
>>> round(HardL1ACELoss(n_bins=5)(probs, target).item(), 12)
0.2
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "calibviz.losses needs PyTorch; install it with `pip install calibviz[torch]`"
    ) from error

from .binning import bin_edges
from .options import BINNINGS, DEFAULT_EMPTY_WEIGHT, check_choice, check_n_bins

__all__ = [
    "HardL1ACELoss",
    "SoftL1ACELoss",
    "HardL1ACEAndDiceCELoss",
    "SoftL1ACEAndDiceCELoss",
    "DiceLoss",
    "binned_calibration",
    "binned_sums",
    "hard_bin_index",
    "l1_ace",
    "torch_bin_edges",
]

REDUCTIONS = ("mean", "sum", "none")
#: Denominator of the ``mean`` reduction when empty (image, class) pairs are ignored.
EMPTY_DENOMINATORS = ("nonempty", "all")
_NUMPY_DTYPES = {
    torch.float16: np.float16,
    torch.float32: np.float32,
    torch.float64: np.float64,
}


# --------------------------------------------------------------------------- binning
def torch_bin_edges(n_bins: int, dtype: torch.dtype, device=None) -> torch.Tensor:
    """``[n_bins + 1]`` edges ``k/n_bins`` rounded to ``dtype``, as a tensor of that dtype.

    Same numbers as :func:`calibviz.binning.bin_edges` for float16/32/64; bfloat16 (which
    NumPy lacks) rounds the float64 values to bfloat16 the same way (round to nearest even).

    >>> torch_bin_edges(5, torch.float32)[1].item() == float(np.float32(0.2))
    True
    """
    if dtype in _NUMPY_DTYPES:
        edges = torch.from_numpy(bin_edges(n_bins, _NUMPY_DTYPES[dtype]))
    elif dtype == torch.bfloat16:
        edges = torch.from_numpy(bin_edges(n_bins, np.float64))
    else:
        raise TypeError(f"probabilities must be a floating-point tensor, got {dtype}")
    return edges.to(device=device, dtype=dtype)


def hard_bin_index(probs: torch.Tensor, n_bins: int, *, closure: str = "right") -> torch.Tensor:
    """int64 hard bin of every value of ``probs`` (same shape), as :func:`calibviz.bin_image`.

    Edges ``k/n_bins`` rounded to ``probs.dtype`` (:func:`torch_bin_edges`); ``closure``
    ``"right"`` (default): bin ``k`` holds ``e_k < p <= e_{k+1}`` and ``p <= 0`` goes to bin 0;
    ``"left"``: ``e_k <= p < e_{k+1}`` and ``p >= 1`` goes to bin ``n_bins - 1``.  Values
    outside [0, 1] land in the end bins.  No gradient.

    >>> hard_bin_index(torch.tensor([0.0, 0.2, 0.21, 1.0]), 5).tolist()
    [0, 0, 1, 4]
    >>> hard_bin_index(torch.tensor([0.0, 0.2, 0.21, 1.0]), 5, closure="left").tolist()
    [0, 1, 1, 4]
    """
    if closure not in ("right", "left"):
        raise ValueError(f"closure must be 'right' or 'left', got {closure!r}")
    inner = torch_bin_edges(_check_n_bins(n_bins), probs.dtype, probs.device)[1:-1]
    # bucketize right=False == searchsorted side="left": bin k holds e_k < p <= e_{k+1}
    return torch.bucketize(probs.detach().contiguous(), inner, right=closure == "left")


def binned_sums(
    probs: torch.Tensor,
    outcome: torch.Tensor,
    *,
    n_bins: int = 20,
    closure: str = "right",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image, class and bin: int64 count, float64 ``Σp`` and ``Σy`` (no gradient).

    ``probs`` and ``outcome`` are ``(B, C, N)`` (outcome bool, integer or float 0/1); bins as
    :func:`hard_bin_index`.  Returns three ``(B, C, n_bins)`` tensors on ``probs.device``:
    the same sufficient statistics as ``calibviz.bin_image`` (``count``, ``sum_p``,
    ``sum_y``) for each image.  One ``bincount`` and two ``scatter_add`` over a flattened
    ``(image, class, bin)`` index.

    >>> count, sum_p, sum_y = binned_sums(
    ...     torch.tensor([[[0.1, 0.15, 0.9]]]), torch.tensor([[[0, 1, 1]]]), n_bins=2)
    >>> count.tolist(), [round(v, 6) for v in sum_p.flatten().tolist()], sum_y.tolist()
    ([[[2, 1]]], [0.25, 0.9], [[[1.0, 1.0]]])
    """
    if probs.ndim != 3 or outcome.shape != probs.shape:
        raise ValueError(
            f"probs and outcome must both be (B, C, N); got {tuple(probs.shape)} and "
            f"{tuple(outcome.shape)}"
        )
    n_bins = _check_n_bins(n_bins)
    batch, n_classes, _ = probs.shape
    size = batch * n_classes * n_bins
    row = torch.arange(0, size, n_bins, device=probs.device).view(batch, n_classes, 1)
    index = hard_bin_index(probs, n_bins, closure=closure).add_(row).view(-1)
    p = probs.detach().to(torch.float64).reshape(-1)
    y = outcome.detach().to(torch.float64).reshape(-1)
    count = torch.bincount(index, minlength=size)
    sum_p = p.new_zeros(size).scatter_add_(0, index, p)
    sum_y = p.new_zeros(size).scatter_add_(0, index, y)
    shape = (batch, n_classes, n_bins)
    return count.view(shape), sum_p.view(shape), sum_y.view(shape)


def binned_calibration(
    probs: torch.Tensor,
    outcome: torch.Tensor,
    *,
    n_bins: int = 20,
    binning: str = "hard",
    accumulate_dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, class and bin: count (soft weight) and ``Σ w·(p − y)``.

    Parameters
    ----------
    probs : ``(B, C, N)`` floating probabilities (any float dtype; hard bin edges are
        rounded to this dtype).
    outcome : ``(B, C, N)`` binary outcomes (bool, integer or float 0/1).
    n_bins : number of equal-width bins on [0, 1].
    binning : ``"hard"`` (right-closed, ``e_k < p <= e_{k+1}``, ``p = 0`` in bin 0) or
        ``"soft"`` (linear split between bin centres, spec §6).
    accumulate_dtype : dtype of the sums (float64 default; at least float32).

    Returns
    -------
    weight : ``(B, C, n_bins)`` voxel count (hard, no gradient) or soft weight ``W_k``.
    residual : ``(B, C, n_bins)`` ``Σ w·(p − y)`` (so ``p̄_k − ȳ_k = residual / weight``).
    """
    if probs.ndim != 3 or outcome.shape != probs.shape:
        raise ValueError(
            f"probs and outcome must both be (B, C, N); got {tuple(probs.shape)} and "
            f"{tuple(outcome.shape)}"
        )
    n_bins = check_n_bins(n_bins)
    batch, n_classes, _ = probs.shape
    device = probs.device
    p = probs.to(accumulate_dtype)
    r = p - outcome.to(accumulate_dtype)  # p − y
    size = batch * n_classes * n_bins
    shape = (batch, n_classes, n_bins)
    # offset of each (image, class) row's first bin in the flattened (image, class, bin) table
    row = torch.arange(0, size, n_bins, device=device).view(batch, n_classes, 1)
    if binning == "hard":
        index = hard_bin_index(probs, n_bins).add_(row).view(-1)
        weight = torch.bincount(index, minlength=size).to(accumulate_dtype)
        residual = r.new_zeros(size).scatter_add(0, index, r.reshape(-1))
        return weight.view(shape), residual.view(shape)
    if binning != "soft":
        raise ValueError(f"binning must be one of {BINNINGS}, got {binning!r}")
    # position in units of bin centres: x = p·B − 1/2, clamped so the end bins take all
    # the weight beyond the outer centres; bin `low` gets 1 − w, bin `low + 1` gets w
    x = (p * n_bins - 0.5).clamp(0.0, n_bins - 1.0)
    with torch.no_grad():
        low = x.floor().clamp_(max=max(n_bins - 2, 0))
        index = low.long().add_(row).view(-1)
    w = x - low
    # Σ over a bin's `low` voxels of (1 − w)·v, plus Σ over the bin below's of w·v, from
    # three scatters: count(low) − H_k + H_{k−1} with H the scatter of w (resp. w·r)
    count_low = torch.bincount(index, minlength=size).to(accumulate_dtype).view(shape)
    high_w = r.new_zeros(size).scatter_add(0, index, w.reshape(-1)).view(shape)
    low_r = r.new_zeros(size).scatter_add(0, index, r.reshape(-1)).view(shape)
    high_r = r.new_zeros(size).scatter_add(0, index, (w * r).reshape(-1)).view(shape)
    weight = count_low - high_w + _shift_up(high_w)
    residual = low_r - high_r + _shift_up(high_r)
    return weight, residual


def _shift_up(values: torch.Tensor) -> torch.Tensor:
    """``out[..., k] = values[..., k − 1]``, ``out[..., 0] = 0`` (differentiable)."""
    return F.pad(values[..., :-1], (1, 0))


def l1_ace(
    probs: torch.Tensor,
    outcome: torch.Tensor,
    *,
    n_bins: int = 20,
    binning: str = "hard",
    empty_weight: float = DEFAULT_EMPTY_WEIGHT,
    accumulate_dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """ACE per image and class, ``(B, C)`` in ``accumulate_dtype``: mean ``|p̄_k − ȳ_k|``
    over the non-empty bins (``n_k > 0`` hard, ``W_k >= empty_weight`` soft).

    ``probs`` and ``outcome`` are ``(B, C, N)``; see :func:`binned_calibration`.
    """
    weight, residual = binned_calibration(
        probs, outcome, n_bins=n_bins, binning=binning, accumulate_dtype=accumulate_dtype
    )
    nonempty = weight > 0 if binning == "hard" else weight >= empty_weight
    safe = torch.where(nonempty, weight, torch.ones_like(weight))
    gaps = torch.where(nonempty, residual.abs() / safe, torch.zeros_like(residual))
    n_nonempty = nonempty.sum(dim=-1).clamp(min=1)
    return gaps.sum(dim=-1) / n_nonempty


# --------------------------------------------------------------------------- helpers
def _check_weights(weight, name: str = "weight") -> torch.Tensor | None:
    if weight is None:
        return None
    weight = torch.as_tensor(weight, dtype=torch.float64).reshape(-1)
    if weight.numel() == 0 or (weight < 0).any() or not torch.isfinite(weight).all():
        raise ValueError(f"{name} must be non-negative finite numbers, got {weight.tolist()}")
    return weight


class _Prepared:
    """Probabilities ``(B, C, N)``, outcomes ``(B, C, N)`` bool and label map or None."""

    def __init__(self, probs, outcome, labels):
        self.probs, self.outcome, self.labels = probs, outcome, labels


class _InputOptions(nn.Module):
    """Shared input handling: activation, target format, background channel."""

    def __init__(self, *, softmax: bool, sigmoid: bool, include_background: bool):
        super().__init__()
        if softmax and sigmoid:
            raise ValueError("choose at most one of softmax=True and sigmoid=True")
        self.softmax = bool(softmax)
        self.sigmoid = bool(sigmoid)
        self.include_background = bool(include_background)

    def _probabilities(self, input: torch.Tensor) -> torch.Tensor:
        """``(B, C, *spatial)`` probabilities; half-precision logits activate in float32."""
        if not input.is_floating_point():
            raise TypeError(f"input must be a floating-point tensor, got {input.dtype}")
        if not (self.softmax or self.sigmoid):
            return input
        x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
        if self.softmax:
            if input.shape[1] == 1:
                raise ValueError("softmax=True needs at least two channels; use sigmoid=True")
            return torch.softmax(x, dim=1)
        return torch.sigmoid(x)

    def _prepare(
        self, input: torch.Tensor, target: torch.Tensor, *, all_channels: bool = False
    ) -> _Prepared:
        """Validate and flatten; ``all_channels`` keeps channel 0 whatever the option."""
        if input.ndim < 3:
            raise ValueError(
                f"input must be (B, C, *spatial) with at least one spatial axis, "
                f"got shape {tuple(input.shape)}"
            )
        batch, n_classes, *spatial = input.shape
        if target.device != input.device:
            raise ValueError(f"target is on {target.device} but input is on {input.device}")
        if tuple(target.shape) == tuple(input.shape):
            outcome = target if target.dtype == torch.bool else target > 0.5
            labels = None
        elif tuple(target.shape) in ((batch, *spatial), (batch, 1, *spatial)):
            if target.is_floating_point():
                if not torch.equal(target, target.round()):
                    raise ValueError("a label-map target must hold integer class values")
                target = target.long()
            labels = target.reshape(batch, -1)
            channel = torch.arange(n_classes, device=input.device).view(1, n_classes, 1)
            outcome = labels[:, None, :] == channel
        else:
            raise ValueError(
                f"target has shape {tuple(target.shape)}; expected a label map "
                f"{(batch, *spatial)} or {(batch, 1, *spatial)}, or one-hot "
                f"{tuple(input.shape)}"
            )
        probs = self._probabilities(input).reshape(batch, n_classes, -1)
        outcome = outcome.reshape(batch, n_classes, -1)
        if probs.shape[-1] == 0:
            raise ValueError("input has no voxels")
        if not (self.include_background or all_channels):
            if n_classes == 1:
                warnings.warn(
                    "single-channel input: include_background=False ignored",
                    stacklevel=3,
                )
            else:
                probs, outcome = probs[:, 1:], outcome[:, 1:]
        return _Prepared(probs, outcome, labels)


def _reduce(
    per_pair: torch.Tensor, counted: torch.Tensor, class_weight, reduction: str,
    empty_denominator: str = "nonempty",
) -> torch.Tensor:
    """Reduce a ``(B, C)`` loss over counted pairs with optional ``(C,)`` class weights.

    ``none`` gives ``w_c · L_bc`` (0 where not counted); ``sum`` its sum; ``mean`` the
    weighted mean ``Σ w_c L_bc / Σ w_c`` over the counted pairs (0 when none is counted),
    or with ``empty_denominator="all"`` ``Σ_counted w_c L_bc / Σ_all w_c`` (the reference's
    mean: pairs not counted are zeros that stay in the denominator).
    """
    weight = counted.to(per_pair.dtype)
    every = torch.ones_like(weight)
    if class_weight is not None:
        if class_weight.numel() != per_pair.shape[1]:
            raise ValueError(
                f"weight has {class_weight.numel()} entries for {per_pair.shape[1]} scored "
                "classes (without the background channel when include_background=False)"
            )
        class_weight = class_weight.to(per_pair.device, per_pair.dtype)
        weight = weight * class_weight
        every = every * class_weight
    weighted = per_pair * weight
    if reduction == "none":
        return weighted
    if reduction == "sum":
        return weighted.sum()
    denominator = every if empty_denominator == "all" else weight
    return weighted.sum() / denominator.sum().clamp(min=torch.finfo(per_pair.dtype).tiny)


def _check_empty_denominator(value: str) -> str:
    if value not in EMPTY_DENOMINATORS:
        raise ValueError(
            f"empty_denominator must be one of {EMPTY_DENOMINATORS}, got {value!r}"
        )
    return value


# --------------------------------------------------------------------------- losses
class _L1ACELoss(_InputOptions):
    binning = "hard"

    def __init__(
        self,
        *,
        n_bins: int = 20,
        softmax: bool = False,
        sigmoid: bool = False,
        include_background: bool = True,
        ignore_empty_classes: bool = True,
        empty_denominator: str = "nonempty",
        weight: Sequence[float] | torch.Tensor | None = None,
        reduction: str = "mean",
        empty_weight: float = DEFAULT_EMPTY_WEIGHT,
        accumulate_dtype: torch.dtype = torch.float64,
    ):
        super().__init__(softmax=softmax, sigmoid=sigmoid, include_background=include_background)
        self.n_bins = check_n_bins(n_bins)
        check_choice("reduction", reduction, REDUCTIONS)
        if accumulate_dtype not in (torch.float32, torch.float64):
            raise ValueError(f"accumulate_dtype must be float32 or float64, got {accumulate_dtype}")
        if not empty_weight >= 0:
            raise ValueError(f"empty_weight must be >= 0, got {empty_weight!r}")
        self.ignore_empty_classes = bool(ignore_empty_classes)
        self.empty_denominator = _check_empty_denominator(empty_denominator)
        self.reduction = reduction
        self.empty_weight = float(empty_weight)
        self.accumulate_dtype = accumulate_dtype
        class_weight = _check_weights(weight)
        self.register_buffer("class_weight", class_weight, persistent=False)

    def per_pair(self, prepared: _Prepared) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C')`` ACE and bool ``(B, C')`` counted pairs (C' = scored classes)."""
        values = l1_ace(
            prepared.probs, prepared.outcome, n_bins=self.n_bins, binning=self.binning,
            empty_weight=self.empty_weight, accumulate_dtype=self.accumulate_dtype,
        )
        if self.ignore_empty_classes:
            counted = prepared.outcome.any(dim=-1)
        else:
            counted = torch.ones_like(values, dtype=torch.bool)
        return values, counted

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``input`` ``(B, C, *spatial)`` against ``target`` (label map or one-hot).

        Returns a scalar (``mean``/``sum``) or ``(B, C')`` (``none``; ``C' = C − 1`` without
        background), in ``accumulate_dtype``.
        """
        values, counted = self.per_pair(self._prepare(input, target))
        return _reduce(
            values, counted, self.class_weight, self.reduction, self.empty_denominator
        )

    def extra_repr(self) -> str:
        return (
            f"n_bins={self.n_bins}, softmax={self.softmax}, sigmoid={self.sigmoid}, "
            f"include_background={self.include_background}, "
            f"ignore_empty_classes={self.ignore_empty_classes}, "
            f"empty_denominator={self.empty_denominator!r}, reduction={self.reduction!r}"
        )


class HardL1ACELoss(_L1ACELoss):
    """Hard-binned marginal L1 average calibration error (mL1-ACE), spec §2–§3.

    For each image ``b`` and class ``c``: bin the voxel probabilities ``p = P[b, c]`` into
    ``n_bins`` right-closed bins (edges ``k/n_bins`` in the probabilities' precision), and
    take the mean over non-empty bins of ``|mean p − mean y|``.  Equal to
    ``calibviz.ace(calibviz.bin_image(P[b], labels[b], n_bins=n_bins))``.  The bin
    assignment carries no gradient; the gradient w.r.t. ``p_v`` in bin ``k`` is
    ``sign(p̄_k − ȳ_k) / (n_k · K)`` (``K`` non-empty bins) times the reduction factor.

    Parameters
    ----------
    n_bins : number of bins (20).
    softmax, sigmoid : apply this activation to ``input`` (logits); neither: ``input`` holds
        probabilities.
    include_background : score channel 0 (default True).  Softmax always uses all channels.
    ignore_empty_classes : an (image, class) pair whose target is empty contributes zero
        (default True, as the paper's training configurations; False scores it against the
        all-zero outcome, as calibviz's evaluation does by default, spec §5).
    empty_denominator : the ``mean`` reduction's denominator when empty pairs are ignored.
        ``"nonempty"`` (default): the mean over the counted (non-empty) pairs.  ``"all"``: the
        reference implementation's rule — an empty pair is a zero that stays in the
        denominator, ``Σ_counted w_c·ACE_bc / Σ_all w_c``.  calibviz's default keeps the loss
        on the scale of one pair's ACE: with ``"all"`` a batch with many empty classes (small
        structures, random crops) shrinks both the loss and its gradient by the fraction of
        empty pairs, so the calibration term's effective weight against Dice and CE changes
        from batch to batch.  Use ``"all"`` only to reproduce the reference's numbers.
    weight : optional class weights ``(C',)`` over the scored classes.
    reduction : ``"mean"`` (weighted mean over counted pairs), ``"sum"`` or ``"none"``
        (``(B, C')``, weights applied, zero for ignored pairs).
    accumulate_dtype : float64 (default, as calibviz) or float32 (faster on GPUs with slow
        float64; drifts ~1e-4 relative over 10⁶ voxels).

    Edges are rounded to the dtype of the probabilities that are binned: float16/bfloat16
    probabilities use their own precision (as calibviz does for float16 maps); float16/
    bfloat16 *logits* are activated in float32, so float32 edges.  No NaN/range checks are
    made on the device (they would force a synchronisation).

    Shapes: ``input`` ``(B, C, *spatial)``; ``target`` ``(B, *spatial)``/``(B, 1, *spatial)``
    label map (values ``0..C-1``) or ``(B, C, *spatial)`` binary one-hot.
    """

    binning = "hard"

    def __init__(
        self,
        n_bins: int = 20,
        *,
        softmax: bool = False,
        sigmoid: bool = False,
        include_background: bool = True,
        ignore_empty_classes: bool = True,
        empty_denominator: str = "nonempty",
        weight: Sequence[float] | torch.Tensor | None = None,
        reduction: str = "mean",
        accumulate_dtype: torch.dtype = torch.float64,
    ):
        super().__init__(
            n_bins=n_bins, softmax=softmax, sigmoid=sigmoid,
            include_background=include_background, ignore_empty_classes=ignore_empty_classes,
            empty_denominator=empty_denominator, weight=weight, reduction=reduction,
            accumulate_dtype=accumulate_dtype,
        )


class SoftL1ACELoss(_L1ACELoss):
    """Soft-binned mL1-ACE (spec §6): differentiable through the bin weights too.

    Each voxel splits its unit weight linearly between the two neighbouring bin centres
    ``(k + 1/2)/n_bins`` (all of it to the end bin below ``c_0`` / above ``c_{B-1}``);
    ``p̄_k = Σw·p / W_k``, ``ȳ_k = Σw·y / W_k``; bins with ``W_k < empty_weight`` are
    empty.  Equal to ``calibviz.ace(bin_image(..., binning="soft", empty_weight=...))``.
    Parameters as :class:`HardL1ACELoss`, plus ``empty_weight`` (0.01).
    """

    binning = "soft"

    def __init__(
        self,
        n_bins: int = 20,
        *,
        softmax: bool = False,
        sigmoid: bool = False,
        include_background: bool = True,
        ignore_empty_classes: bool = True,
        empty_denominator: str = "nonempty",
        weight: Sequence[float] | torch.Tensor | None = None,
        reduction: str = "mean",
        empty_weight: float = DEFAULT_EMPTY_WEIGHT,
        accumulate_dtype: torch.dtype = torch.float64,
    ):
        super().__init__(
            n_bins=n_bins, softmax=softmax, sigmoid=sigmoid,
            include_background=include_background, ignore_empty_classes=ignore_empty_classes,
            empty_denominator=empty_denominator, weight=weight, reduction=reduction,
            empty_weight=empty_weight, accumulate_dtype=accumulate_dtype,
        )


class DiceLoss(_InputOptions):
    """Soft Dice loss ``1 − (2Σpy + s) / (Σp + Σy + s)`` per image and class, averaged.

    ``input``/``target`` as for the ACE losses; ``smooth`` ``s`` (1e-5) keeps an empty
    class with an empty prediction at loss 0.  Sums accumulate in float32 or better.
    Returns a scalar (``mean``/``sum``) or ``(B, C')`` (``none``).
    """

    def __init__(
        self,
        *,
        softmax: bool = False,
        sigmoid: bool = False,
        include_background: bool = True,
        smooth: float = 1e-5,
        reduction: str = "mean",
    ):
        super().__init__(softmax=softmax, sigmoid=sigmoid, include_background=include_background)
        check_choice("reduction", reduction, REDUCTIONS)
        self.smooth = float(smooth)
        self.reduction = reduction

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.from_prepared(self._prepare(input, target))

    def from_prepared(self, prepared: _Prepared) -> torch.Tensor:
        p = prepared.probs
        if p.dtype in (torch.float16, torch.bfloat16):
            p = p.float()
        y = prepared.outcome.to(p.dtype)
        intersection = (p * y).sum(dim=-1)
        denominator = p.sum(dim=-1) + y.sum(dim=-1)
        loss = 1.0 - (2.0 * intersection + self.smooth) / (denominator + self.smooth)
        counted = torch.ones_like(loss, dtype=torch.bool)
        return _reduce(loss, counted, None, self.reduction)


def _cross_entropy(
    input: torch.Tensor, prepared: _Prepared, *, softmax: bool, sigmoid: bool
) -> torch.Tensor:
    """Mean voxel cross-entropy over all channels, float32 or better.

    ``prepared`` must keep every channel (``_prepare(..., all_channels=True)``).

    softmax: categorical CE of the logits; sigmoid: binary CE per channel; probabilities:
    categorical CE ``−Σ_c y_c log p_c`` (``p`` clamped at 1e-12).
    """
    batch, n_classes = input.shape[:2]
    x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
    x = x.reshape(batch, n_classes, -1)
    if sigmoid:
        return F.binary_cross_entropy_with_logits(x, prepared.outcome.to(x.dtype))
    if prepared.labels is not None:
        labels = prepared.labels.long()
    else:
        labels = prepared.outcome.to(torch.uint8).argmax(dim=1)
    if softmax:
        return F.cross_entropy(x, labels)
    return F.nll_loss(torch.log(x.clamp(min=1e-12)), labels)


class _L1ACEAndDiceCELoss(nn.Module):
    ace_class: type[_L1ACELoss] = HardL1ACELoss

    def __init__(
        self,
        n_bins: int = 20,
        *,
        softmax: bool = False,
        sigmoid: bool = False,
        include_background: bool = True,
        ignore_empty_classes: bool = True,
        empty_denominator: str = "nonempty",
        weight: Sequence[float] | torch.Tensor | None = None,
        ace_weight: float = 1 / 3,
        dice_weight: float = 1 / 3,
        ce_weight: float = 1 / 3,
        smooth: float = 1e-5,
        accumulate_dtype: torch.dtype = torch.float64,
        **ace_options,
    ):
        super().__init__()
        for name, value in (("ace_weight", ace_weight), ("dice_weight", dice_weight),
                            ("ce_weight", ce_weight)):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        self.ace = self.ace_class(
            n_bins, softmax=softmax, sigmoid=sigmoid, include_background=include_background,
            ignore_empty_classes=ignore_empty_classes, empty_denominator=empty_denominator,
            weight=weight, reduction="mean", accumulate_dtype=accumulate_dtype, **ace_options,
        )
        self.dice = DiceLoss(
            softmax=softmax, sigmoid=sigmoid, include_background=include_background,
            smooth=smooth, reduction="mean",
        )
        self.ace_weight, self.dice_weight, self.ce_weight = (
            float(ace_weight), float(dice_weight), float(ce_weight)
        )

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar ``ace_weight·ACE + dice_weight·Dice + ce_weight·CE`` (float32 or better).

        The ACE and Dice terms score the classes selected by ``include_background``; the
        cross-entropy always uses every channel.
        """
        full = self.ace._prepare(input, target, all_channels=True)
        prepared = full
        if not self.ace.include_background and input.shape[1] > 1:
            prepared = _Prepared(full.probs[:, 1:], full.outcome[:, 1:], full.labels)
        ace_values, counted = self.ace.per_pair(prepared)
        ace = _reduce(
            ace_values, counted, self.ace.class_weight, "mean", self.ace.empty_denominator
        )
        dice = self.dice.from_prepared(prepared)
        ce = _cross_entropy(input, full, softmax=self.ace.softmax, sigmoid=self.ace.sigmoid)
        dtype = torch.promote_types(ace.dtype, torch.promote_types(dice.dtype, ce.dtype))
        return (
            self.ace_weight * ace.to(dtype)
            + self.dice_weight * dice.to(dtype)
            + self.ce_weight * ce.to(dtype)
        )


class HardL1ACEAndDiceCELoss(_L1ACEAndDiceCELoss):
    """``ace_weight·HardL1ACE + dice_weight·Dice + ce_weight·CE`` (default thirds), scalar.

    Options as :class:`HardL1ACELoss` (reduction is always ``mean``) plus ``smooth`` for
    the Dice term.  CE: softmax → categorical CE of the logits, sigmoid → binary CE per
    channel, probabilities → ``−Σ y log p``.  ``input`` ``(B, C, *spatial)``; ``target``
    label map or one-hot as for :class:`HardL1ACELoss` (a one-hot target for the softmax
    or probability CE must have exactly one positive channel per voxel).
    """

    ace_class = HardL1ACELoss


class SoftL1ACEAndDiceCELoss(_L1ACEAndDiceCELoss):
    """``ace_weight·SoftL1ACE + dice_weight·Dice + ce_weight·CE`` (default thirds), scalar.

    As :class:`HardL1ACEAndDiceCELoss`, with the soft-binned ACE (``empty_weight`` option).
    """

    ace_class = SoftL1ACELoss
