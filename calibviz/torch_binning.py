"""Vectorised binning of PyTorch tensors, shared by the losses (:mod:`calibviz.losses`) and the
metrics for PyTorch users (:mod:`calibviz.torchmetrics`, :mod:`calibviz.monai`): the same
edges (``k/B`` rounded to the input precision) and closure as :func:`calibviz.bin_image`.
Nothing else in calibviz imports torch."""

from __future__ import annotations

import numpy as np

try:
    import torch
    import torch.nn.functional as F
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "calibviz's PyTorch functions need PyTorch; install it with `pip install calibviz[torch]`"
    ) from error

from .binning import bin_edges
from .options import BINNINGS, DEFAULT_EMPTY_WEIGHT, check_n_bins

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


def _checked(probs: torch.Tensor, outcome: torch.Tensor, n_bins) -> tuple[int, int, int]:
    """``(n_bins, B, C)`` of ``(B, C, N)`` probabilities and outcomes of the same shape."""
    if probs.ndim != 3 or outcome.shape != probs.shape:
        raise ValueError(
            f"probs and outcome must both be (B, C, N); got {tuple(probs.shape)} and "
            f"{tuple(outcome.shape)}"
        )
    return check_n_bins(n_bins), probs.shape[0], probs.shape[1]


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
    inner = torch_bin_edges(check_n_bins(n_bins), probs.dtype, probs.device)[1:-1]
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
    n_bins, batch, n_classes = _checked(probs, outcome, n_bins)
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
    kept: torch.Tensor | None = None,
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
    kept : optional bool ``(B, 1, N)`` or ``(B, C, N)``: only these voxels are binned (the
        others add nothing, and get no gradient), e.g. voxels not marked ``ignore_index``.

    Returns
    -------
    weight : ``(B, C, n_bins)`` voxel count (hard, no gradient) or soft weight ``W_k``.
    residual : ``(B, C, n_bins)`` ``Σ w·(p − y)`` (so ``p̄_k − ȳ_k = residual / weight``).
    """
    n_bins, batch, n_classes = _checked(probs, outcome, n_bins)
    device = probs.device
    p = probs.to(accumulate_dtype)
    r = p - outcome.to(accumulate_dtype)  # p − y
    size = batch * n_classes * n_bins
    shape = (batch, n_classes, n_bins)
    # offset of each (image, class) row's first bin in the flattened (image, class, bin) table
    row = torch.arange(0, size, n_bins, device=device).view(batch, n_classes, 1)
    m = None if kept is None else kept.expand(batch, n_classes, -1).to(accumulate_dtype)
    if m is not None:
        r = r * m
    if binning == "hard":
        index = hard_bin_index(probs, n_bins).add_(row).view(-1)
        if m is None:
            weight = torch.bincount(index, minlength=size).to(accumulate_dtype)
        else:
            weight = torch.bincount(index, weights=m.reshape(-1), minlength=size)
            weight = weight.to(accumulate_dtype)
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
    if m is not None:
        w = w * m
    # Σ over a bin's `low` voxels of (1 − w)·v, plus Σ over the bin below's of w·v, from
    # three scatters: count(low) − H_k + H_{k−1} with H the scatter of w (resp. w·r)
    if m is None:
        count_low = torch.bincount(index, minlength=size)
    else:
        count_low = torch.bincount(index, weights=m.reshape(-1), minlength=size)
    count_low = count_low.to(accumulate_dtype).view(shape)
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
    kept: torch.Tensor | None = None,
) -> torch.Tensor:
    """ACE per image and class, ``(B, C)`` in ``accumulate_dtype``: mean ``|p̄_k − ȳ_k|``
    over the non-empty bins (``n_k > 0`` hard; ``W_k >= empty_weight`` and ``W_k > 0`` soft:
    a bin without weight is empty whatever the threshold, so ``empty_weight=0`` is defined).

    ``probs`` and ``outcome`` are ``(B, C, N)``; ``kept`` and the rest as
    :func:`binned_calibration`.
    """
    weight, residual = binned_calibration(
        probs, outcome, n_bins=n_bins, binning=binning, accumulate_dtype=accumulate_dtype,
        kept=kept,
    )
    nonempty = weight > 0 if binning == "hard" else (weight >= empty_weight) & (weight > 0)
    safe = torch.where(nonempty, weight, torch.ones_like(weight))
    gaps = torch.where(nonempty, residual.abs() / safe, torch.zeros_like(residual))
    n_nonempty = nonempty.sum(dim=-1).clamp(min=1)
    return gaps.sum(dim=-1) / n_nonempty


# --------------------------------------------------------------------------- helpers
