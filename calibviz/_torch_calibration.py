"""Shared PyTorch core of the torchmetrics and MONAI metrics (needs the optional torch extra).

:func:`prepare` validates a batch and turns it into per-class probabilities and binary
outcomes ``(B, C', N)``; the binning itself is :func:`calibviz.losses.binned_sums` (the same
vectorised code the losses use); :func:`calibration_errors` turns per-bin sums into ECE, ACE
and MCE exactly as :mod:`calibviz.metrics` does from a :class:`calibviz.BinStats`.
"""

from __future__ import annotations

import math

import torch

from .binning import CLIP_TOLERANCE

__all__ = ["ERROR_NAMES", "calibration_errors", "prepare"]

ERROR_NAMES = ("ece", "ace", "mce")


def prepare(
    preds: torch.Tensor,
    target: torch.Tensor,
    *,
    softmax: bool = False,
    include_background: bool = True,
    validate: bool = True,
    names: tuple[str, str] = ("preds", "target"),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated probabilities (input dtype, clipped to [0, 1]) and bool outcomes, ``(B, C', N)``.

    ``preds`` ``(B, C, *spatial)``: probabilities, or logits with ``softmax=True`` (float16/
    bfloat16 logits are activated in float32).  ``target``: a label map ``(B, *spatial)`` or
    ``(B, 1, *spatial)`` with values ``0..C-1`` (outcome of channel ``c`` is ``label == c``), or
    binary one-hot / multi-label ``(B, C, *spatial)``.  ``include_background=False`` drops
    channel 0 (after the softmax) when there is more than one channel.

    With ``validate`` (one device synchronisation): probabilities must be finite and within
    ``CLIP_TOLERANCE`` (1e-3) of [0, 1]; label values must lie in ``0..C-1``; one-hot values must
    be 0 or 1.  Values within the tolerance are clipped, as ``calibviz.bin_image`` does.
    """
    pred_name, target_name = names
    if not isinstance(preds, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(
            f"{pred_name} and {target_name} must be torch tensors, got "
            f"{type(preds).__name__} and {type(target).__name__}"
        )
    if not preds.is_floating_point():
        raise TypeError(f"{pred_name} must be a floating-point tensor, got {preds.dtype}")
    if preds.ndim < 3:
        raise ValueError(
            f"{pred_name} must be (B, C, *spatial) with at least one spatial axis, "
            f"got shape {tuple(preds.shape)}"
        )
    batch, n_classes, *spatial = preds.shape
    if math.prod(spatial) == 0:
        raise ValueError(f"{pred_name} has no voxels (shape {tuple(preds.shape)})")
    if target.device != preds.device:
        raise ValueError(
            f"{target_name} is on {target.device} but {pred_name} is on {preds.device}"
        )
    outcome = _outcome(target, preds.shape, validate=validate, target_name=target_name)
    if softmax:
        if n_classes < 2:
            raise ValueError("softmax=True needs at least two channels")
        if validate and not bool(torch.isfinite(preds).all()):
            raise ValueError(f"{pred_name} (logits) contain NaN or infinite values")
        x = preds.float() if preds.dtype in (torch.float16, torch.bfloat16) else preds
        probs = torch.softmax(x, dim=1)
    else:
        probs = preds
        if validate:
            _check_probabilities(probs, pred_name)
    # within-tolerance values are clipped (exactly 0 or 1 in any float dtype)
    probs = probs.clamp(0.0, 1.0).reshape(batch, n_classes, -1)
    outcome = outcome.reshape(batch, n_classes, -1)
    if not include_background and n_classes > 1:
        probs, outcome = probs[:, 1:], outcome[:, 1:]
    return probs, outcome


def _outcome(target, shape, *, validate, target_name) -> torch.Tensor:
    """bool outcome ``(B, C, *spatial)`` from a one-hot target or a label map."""
    batch, n_classes, *spatial = shape
    if tuple(target.shape) == tuple(shape):
        if target.dtype == torch.bool:
            return target
        if validate and bool(((target != 0) & (target != 1)).any()):
            bad = torch.unique(target[(target != 0) & (target != 1)])[:3].tolist()
            raise ValueError(
                f"a one-hot {target_name} must hold only 0 and 1; found values such as {bad}"
            )
        return target > 0.5
    if tuple(target.shape) not in ((batch, *spatial), (batch, 1, *spatial)):
        raise ValueError(
            f"{target_name} has shape {tuple(target.shape)}; expected a label map "
            f"{(batch, *spatial)} or {(batch, 1, *spatial)}, or one-hot {tuple(shape)}"
        )
    labels = target.reshape(batch, 1, *spatial)
    if labels.dtype == torch.bool:
        labels = labels.to(torch.uint8)
    if labels.is_floating_point():
        if validate and not bool((torch.isfinite(labels) & (labels == labels.round())).all()):
            raise ValueError(f"a label-map {target_name} must hold integer class values")
        labels = labels.long()
    if validate:
        outside = (labels < 0) | (labels >= n_classes)
        if bool(outside.any()):
            bad = torch.unique(labels[outside])[:3].tolist()
            raise ValueError(
                f"{target_name} holds label values {bad} outside 0..{n_classes - 1} "
                f"({n_classes} channels)"
            )
    channel = torch.arange(n_classes, device=labels.device)
    return labels == channel.view(1, n_classes, *([1] * len(spatial)))


def _check_probabilities(probs: torch.Tensor, name: str) -> None:
    finite = torch.isfinite(probs)
    if not bool(finite.all()):
        n_bad = int((~finite).sum())
        raise ValueError(
            f"{name} contain {n_bad} non-finite values (NaN or inf); expected probabilities "
            "in [0, 1] (pass softmax=True for logits)"
        )
    low, high = (float(v) for v in torch.aminmax(probs))
    if low < -CLIP_TOLERANCE or high > 1.0 + CLIP_TOLERANCE:
        raise ValueError(
            f"{name} range over [{low:.6g}, {high:.6g}]; expected probabilities in [0, 1] "
            f"(up to {CLIP_TOLERANCE:g} outside is clipped; pass softmax=True for logits)"
        )


def calibration_errors(
    count: torch.Tensor, sum_p: torch.Tensor, sum_y: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``{"ece", "ace", "mce"}`` float64 ``count.shape[:-1]`` from per-bin sums ``[..., B]``.

    Same formulas as :func:`calibviz.ece`, :func:`calibviz.ace`, :func:`calibviz.mce`: gaps
    ``|Σp/n − Σy/n|`` over the bins with ``n > 0``; NaN where no bin holds a voxel.

    >>> count = torch.tensor([[3, 0, 1]])
    >>> out = calibration_errors(count, torch.tensor([[0.3, 0.0, 0.9]], dtype=torch.float64),
    ...                          torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64))
    >>> [round(out[k].item(), 6) for k in ("ece", "ace", "mce")]
    [0.1, 0.1, 0.1]
    """
    nonempty = count > 0
    n = count.to(torch.float64)
    safe = torch.where(nonempty, n, torch.ones_like(n))
    gaps = torch.where(
        nonempty, (sum_p / safe - sum_y / safe).abs(), torch.zeros_like(sum_p)
    )
    total = n.sum(dim=-1)
    n_nonempty = nonempty.sum(dim=-1)
    nan = torch.full_like(total, float("nan"))
    has_data = n_nonempty > 0
    ece = torch.where(has_data, (n * gaps).sum(dim=-1) / total.clamp(min=1), nan)
    ace = torch.where(has_data, gaps.sum(dim=-1) / n_nonempty.clamp(min=1), nan)
    mce = torch.where(has_data, gaps.amax(dim=-1), nan)
    return {"ece": ece, "ace": ace, "mce": mce}
