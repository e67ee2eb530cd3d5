"""Shared PyTorch core of the torchmetrics and MONAI metrics (needs the optional torch extra).

:func:`prepare` validates a batch and turns it into per-class probabilities and binary
outcomes ``(B, C', N)``; the binning itself is :func:`calibviz.losses.binned_sums` (the same
vectorised code the losses use); :func:`calibration_errors` turns per-bin sums into ECE, ACE
and MCE exactly as :mod:`calibviz.metrics` does from a :class:`calibviz.BinStats`.
"""

from __future__ import annotations

import torch

from ._torch_checks import check_shape, check_values, outcomes, parse

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

    With ``validate`` (exactly one device synchronisation, :func:`calibviz._torch_checks.
    check_values`): probabilities must be finite and within ``CLIP_TOLERANCE`` (1e-3) of
    [0, 1] (logits: finite); label values must lie in ``0..C-1``; one-hot values must be 0
    or 1, and with ``softmax`` (or probabilities summing to 1 in every voxel) every voxel
    needs a positive channel (one class per voxel; otherwise an all-zero voxel is a
    multi-label "no region" outcome).  Values within the
    tolerance are clipped, as ``calibviz.bin_image`` does.  An empty
    batch, no channel or no voxel is an error.
    """
    pred_name, target_name = names
    if not isinstance(preds, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(
            f"{pred_name} and {target_name} must be torch tensors, got "
            f"{type(preds).__name__} and {type(target).__name__}"
        )
    batch, n_classes, _ = check_shape(preds, pred_name)
    if target.device != preds.device:
        raise ValueError(
            f"{target_name} is on {target.device} but {pred_name} is on {preds.device}"
        )
    parsed = parse(target, preds.shape, target_name=target_name)
    if softmax and n_classes < 2:
        raise ValueError("softmax=True needs at least two channels")
    if validate:
        check_values(preds, parsed, logits=softmax, names=names, hint="softmax=True",
                     no_empty=True if softmax else None)
    outcome, _, _ = outcomes(parsed, n_classes)
    if softmax:
        x = preds.float() if preds.dtype in (torch.float16, torch.bfloat16) else preds
        probs = torch.softmax(x, dim=1)
    else:
        probs = preds
    # within-tolerance values are clipped (exactly 0 or 1 in any float dtype)
    probs = probs.clamp(0.0, 1.0).reshape(batch, n_classes, -1)
    if not include_background and n_classes > 1:
        probs, outcome = probs[:, 1:], outcome[:, 1:]
    return probs, outcome


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
