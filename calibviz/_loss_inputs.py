"""What the PyTorch losses share: checking and preparing ``(input, target)`` (activation,
background, one-hot outcome), class weights, and the reductions over image–class pairs."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ._torch_checks import check_ignore_index, check_shape, check_values, outcomes, parse

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
    """Probabilities ``(B, C, N)`` (clipped to [0, 1] when given as probabilities), outcomes
    ``(B, C, N)`` bool, label map ``(B, N)`` or None, and ``kept`` ``(B, 1, N)`` bool (voxels
    not marked ``ignore_index``) or None when nothing is ignored."""

    def __init__(self, probs, outcome, labels, kept=None):
        self.probs, self.outcome, self.labels, self.kept = probs, outcome, labels, kept

    def without_background(self) -> _Prepared:
        return _Prepared(self.probs[:, 1:], self.outcome[:, 1:], self.labels, self.kept)


class _InputOptions(nn.Module):
    """Shared input handling: activation, target format, background channel, validation."""

    def __init__(
        self, *, softmax: bool, sigmoid: bool, include_background: bool,
        validate: bool = True, ignore_index: int | None = None,
    ):
        super().__init__()
        if softmax and sigmoid:
            raise ValueError("choose at most one of softmax=True and sigmoid=True")
        self.softmax = bool(softmax)
        self.sigmoid = bool(sigmoid)
        self.include_background = bool(include_background)
        self.validate = bool(validate)
        self.ignore_index = check_ignore_index(ignore_index)

    def _probabilities(self, input: torch.Tensor) -> torch.Tensor:
        """``(B, C, *spatial)`` probabilities; half-precision logits activate in float32;
        probabilities are clipped to [0, 1] (values within the tolerance, as bin_image)."""
        if not (self.softmax or self.sigmoid):
            return input.clamp(0.0, 1.0)
        x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
        if self.softmax:
            return torch.softmax(x, dim=1)
        return torch.sigmoid(x)

    def _prepare(
        self, input: torch.Tensor, target: torch.Tensor, *, all_channels: bool = False,
        one_positive: bool = False,
    ) -> _Prepared:
        """Validate and flatten; ``all_channels`` keeps channel 0 whatever the option;
        ``one_positive``: a one-hot target needs exactly one positive channel per voxel."""
        target = input_target(target)
        batch, n_classes, _ = check_shape(input, "input")
        if target.device != input.device:
            raise ValueError(f"target is on {target.device} but input is on {input.device}")
        if self.softmax and n_classes == 1:
            raise ValueError("softmax=True needs at least two channels; use sigmoid=True")
        parsed = parse(target, input.shape, target_name="target",
                       ignore_index=self.ignore_index, categorical=not self.sigmoid)
        if self.validate:
            check_values(
                input, parsed, logits=self.softmax or self.sigmoid, names=("input", "target"),
                hint="softmax=True or sigmoid=True", one_positive=one_positive,
                label_hint=LABEL_HINT if self.ignore_index is None else "",
                no_empty=True if self.softmax else (False if self.sigmoid else None),
                empty_hint=EMPTY_HINT,
            )
        outcome, labels, kept = outcomes(parsed, n_classes)
        probs = self._probabilities(input).reshape(batch, n_classes, -1)
        prepared = _Prepared(probs, outcome, labels, kept)
        if not (self.include_background or all_channels):
            if n_classes == 1:
                warnings.warn(
                    "single-channel input: include_background=False ignored",
                    stacklevel=3,
                )
            else:
                prepared = prepared.without_background()
        return prepared


#: Ends the message for one-hot voxels with no positive channel.
EMPTY_HINT = ("pass ignore_index=<value> to leave them out, or a label map (sigmoid=True for "
              "multi-label targets)")
#: Added to the out-of-range label message of the losses.
LABEL_HINT = "; pass ignore_index=<value> to leave such voxels out of the loss"


def input_target(target) -> torch.Tensor:
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch tensor, got {type(target).__name__}")
    return target


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
