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

from collections.abc import Sequence

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "calibviz.losses needs PyTorch; install it with `pip install calibviz[torch]`"
    ) from error

from ._loss_inputs import (
    _check_empty_denominator,
    _check_weights,
    _InputOptions,
    _Prepared,
    _reduce,
)
from .options import DEFAULT_EMPTY_WEIGHT, check_choice, check_n_bins
from .torch_binning import (
    binned_calibration,
    binned_sums,
    hard_bin_index,
    l1_ace,
    torch_bin_edges,
)

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
        validate: bool = True,
        ignore_index: int | None = None,
    ):
        super().__init__(
            softmax=softmax, sigmoid=sigmoid, include_background=include_background,
            validate=validate, ignore_index=ignore_index,
        )
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
            kept=prepared.kept,
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
    validate : check the batch (default True), as the torchmetrics/MONAI adapters do:
        probabilities finite and within 1e-3 of [0, 1] (logits: finite), label values in
        ``0..C-1`` (or ``ignore_index``), one-hot values 0/1; with ``softmax=True``, or
        probabilities that sum to 1 in every voxel, every one-hot voxel has a positive
        channel (a voxel without one has no class; multi-label probabilities and
        ``sigmoid=True`` keep all-zero voxels as "no region" outcomes).  Costs ONE
        device-to-host synchronisation per call (a few reductions, then one transfer);
        ``False`` skips it (bad values are then scored silently, or fail inside torch).
    ignore_index : a label value (e.g. 255) whose voxels are left out of every term, as
        ``bin_image(..., ignore_label=...)``; also a one-hot voxel holding it in any channel,
        and (C > 1, not ``sigmoid=True``) a one-hot voxel with no positive channel — the
        one-hot spelling of an ignored voxel.  With ``sigmoid=True`` an all-zero voxel stays
        a multi-label "no region" outcome.  Must not be a class value.  Default None.

    Probabilities within 1e-3 outside [0, 1] are clipped (as ``bin_image``; clipped values
    get no gradient).  Edges are rounded to the dtype of the probabilities that are binned:
    float16/bfloat16 probabilities use their own precision (as calibviz does for float16
    maps); float16/bfloat16 *logits* are activated in float32, so float32 edges.

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
        validate: bool = True,
        ignore_index: int | None = None,
    ):
        super().__init__(
            n_bins=n_bins, softmax=softmax, sigmoid=sigmoid,
            include_background=include_background, ignore_empty_classes=ignore_empty_classes,
            empty_denominator=empty_denominator, weight=weight, reduction=reduction,
            accumulate_dtype=accumulate_dtype, validate=validate, ignore_index=ignore_index,
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
        validate: bool = True,
        ignore_index: int | None = None,
    ):
        super().__init__(
            n_bins=n_bins, softmax=softmax, sigmoid=sigmoid,
            include_background=include_background, ignore_empty_classes=ignore_empty_classes,
            empty_denominator=empty_denominator, weight=weight, reduction=reduction,
            empty_weight=empty_weight, accumulate_dtype=accumulate_dtype, validate=validate,
            ignore_index=ignore_index,
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
        validate: bool = True,
        ignore_index: int | None = None,
    ):
        super().__init__(
            softmax=softmax, sigmoid=sigmoid, include_background=include_background,
            validate=validate, ignore_index=ignore_index,
        )
        check_choice("reduction", reduction, REDUCTIONS)
        self.smooth = float(smooth)
        self.reduction = reduction

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.from_prepared(self._prepare(input, target))

    def from_prepared(self, prepared: _Prepared) -> torch.Tensor:
        p = prepared.probs
        if p.dtype in (torch.float16, torch.bfloat16):
            p = p.float()
        if prepared.kept is not None:
            p = p * prepared.kept
        y = prepared.outcome.to(p.dtype)
        intersection = (p * y).sum(dim=-1)
        denominator = p.sum(dim=-1) + y.sum(dim=-1)
        loss = 1.0 - (2.0 * intersection + self.smooth) / (denominator + self.smooth)
        counted = torch.ones_like(loss, dtype=torch.bool)
        return _reduce(loss, counted, None, self.reduction)


def _cross_entropy(
    input: torch.Tensor, prepared: _Prepared, *, softmax: bool, sigmoid: bool,
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Mean voxel cross-entropy over all channels and the kept voxels, float32 or better.

    ``prepared`` must keep every channel (``_prepare(..., all_channels=True)``).

    softmax: categorical CE of the logits; sigmoid: binary CE per channel; probabilities:
    categorical CE ``−Σ_c y_c log p_c`` (``p`` clipped to [0, 1], clamped at 1e-12).  With
    ``ignore_index`` the mean is over the voxels kept (0 when none is).
    """
    batch, n_classes = input.shape[:2]
    x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
    x = x.reshape(batch, n_classes, -1)
    if not (softmax or sigmoid):
        x = x.clamp(0.0, 1.0)  # as the ACE and Dice terms (values within the tolerance)
    kept = prepared.kept
    if sigmoid:
        if kept is None:
            return F.binary_cross_entropy_with_logits(x, prepared.outcome.to(x.dtype))
        each = F.binary_cross_entropy_with_logits(
            x, prepared.outcome.to(x.dtype), reduction="none"
        )
        return (each * kept).sum() / (kept.sum() * n_classes).clamp(min=1)
    if prepared.labels is not None:
        labels = prepared.labels.long()
    else:
        labels = prepared.outcome.to(torch.uint8).argmax(dim=1)
    if kept is not None:
        labels = labels.masked_fill(~kept[:, 0], -100)
    log_p = x if softmax else torch.log(x.clamp(min=1e-12))
    loss = F.cross_entropy if softmax else F.nll_loss
    if kept is None:
        return loss(log_p, labels)
    return loss(log_p, labels, ignore_index=-100, reduction="sum") / kept.sum().clamp(min=1)


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
        validate: bool = True,
        ignore_index: int | None = None,
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
            weight=weight, reduction="mean", accumulate_dtype=accumulate_dtype,
            validate=validate, ignore_index=ignore_index, **ace_options,
        )
        self.dice = DiceLoss(
            softmax=softmax, sigmoid=sigmoid, include_background=include_background,
            smooth=smooth, reduction="mean", validate=validate, ignore_index=ignore_index,
        )
        self.ace_weight, self.dice_weight, self.ce_weight = (
            float(ace_weight), float(dice_weight), float(ce_weight)
        )

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar ``ace_weight·ACE + dice_weight·Dice + ce_weight·CE`` (float32 or better).

        The ACE and Dice terms score the classes selected by ``include_background``; the
        cross-entropy always uses every channel.
        """
        # the categorical CE needs one class per voxel: a one-hot target is checked for it
        full = self.ace._prepare(
            input, target, all_channels=True, one_positive=not self.ace.sigmoid
        )
        prepared = full
        if not self.ace.include_background and input.shape[1] > 1:
            prepared = full.without_background()
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
    or probability CE must have exactly one positive channel per voxel; ``validate``
    checks it in the same synchronisation).  ``ignore_index`` leaves voxels out of all
    three terms (the CE is the mean over the kept voxels; 0 if none is kept).
    """

    ace_class = HardL1ACELoss


class SoftL1ACEAndDiceCELoss(_L1ACEAndDiceCELoss):
    """``ace_weight·SoftL1ACE + dice_weight·Dice + ce_weight·CE`` (default thirds), scalar.

    As :class:`HardL1ACEAndDiceCELoss`, with the soft-binned ACE (``empty_weight`` option).
    """

    ace_class = SoftL1ACELoss
