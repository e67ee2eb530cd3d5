"""What the PyTorch losses share: checking and preparing ``(input, target)`` (activation,
background, one-hot outcome), class weights, and the reductions over image–class pairs."""

from __future__ import annotations

import warnings

import torch
from torch import nn

#: Denominator of the ``mean`` reduction when empty (image, class) pairs are ignored.
EMPTY_DENOMINATORS = ("nonempty", "all")


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
