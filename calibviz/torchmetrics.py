"""calibviz's marginal calibration errors as a ``torchmetrics.Metric`` (``pip install
calibviz[torchmetrics]``).

:class:`MarginalCalibrationError` bins every class's voxel probabilities one-vs-rest with
calibviz's exact edges (``k/B`` rounded to the input precision, right-closed) and keeps
calibviz's sufficient statistics (int64 counts, float64 ``Σp`` and ``Σy`` per class and bin),
so its numbers equal ``calibviz.bin_image`` + ``calibviz.ece/ace/mce`` (spec §1–§4).

>>> import torch
>>> from calibviz.torchmetrics import MarginalCalibrationError
>>> metric = MarginalCalibrationError(num_classes=2, n_bins=5)
>>> probs = torch.tensor([[[[0.3, 0.9]], [[0.7, 0.1]]]])  # (B=1, C=2, 1, 2)
>>> metric.update(probs, torch.tensor([[[1, 0]]]))        # label map (B, 1, 2)
>>> [round(v, 6) for v in metric.compute()["ece"].tolist()]
[0.2, 0.2]
"""

from __future__ import annotations

from typing import Any

import torch

# absolute import: this is the installed torchmetrics package, not this module
from torchmetrics import Metric

from ._torch_calibration import ERROR_NAMES, calibration_errors, prepare
from .options import check_n_bins
from .stats import CLOSURES
from .torch_binning import binned_sums

__all__ = ["MarginalCalibrationError"]


class MarginalCalibrationError(Metric):
    """Marginal (one-vs-rest) ECE, ACE and MCE per class, micro and macro over images.

    Parameters
    ----------
    num_classes : number of channels ``C`` of the predictions.
    n_bins : number of equal-width bins on [0, 1] (20).
    softmax : ``preds`` are logits; apply a softmax over the channel axis first.
    include_background : score channel 0 (default True); False drops it, so results have
        ``C' = C − 1`` entries (the paper's evaluation).
    closure : ``"right"`` (default; bin ``k`` holds ``e_k < p <= e_{k+1}``, ``p = 0`` in bin 0)
        or ``"left"`` (``e_k <= p < e_{k+1}``, ``p = 1`` in the last bin), as ``bin_image``.
    validate_args : check inputs (one device synchronisation per update): finite
        probabilities within 1e-3 of [0, 1] (those within are clipped, as calibviz does),
        label values ``0..C-1``, one-hot values 0/1 (with ``softmax``, or probabilities
        summing to 1 in every voxel: a positive channel in every voxel).  ``False`` skips
        the checks.
    kwargs : passed to ``torchmetrics.Metric`` (``dist_sync_on_step``, ``sync_on_compute``, ...).

    ``update(preds, target)``: ``preds`` ``(B, C, *spatial)`` probabilities (logits with
    ``softmax=True``); ``target`` a label map ``(B, *spatial)`` / ``(B, 1, *spatial)`` or a binary
    one-hot / multi-label ``(B, C, *spatial)``.  Every voxel of every image is scored; each
    image of the batch is one image for the macro values.

    ``compute()`` returns a dict of float64 tensors ``[C']``:

    * ``ece``, ``ace``, ``mce`` — **micro**: the bins of all images pooled (counts and sums
      added), then one error per class (``calibviz.micro_metrics``, spec §4);
    * ``ece_macro``, ``ace_macro``, ``mce_macro`` — **macro**: the error of each image and
      class, averaged over images (``calibviz.macro_summary(...)[m]["mean"][:-1]``).  The mean
      skips NaN values; an image always scores all its voxels, so per-image values are never
      NaN here, and a macro value is NaN only before any update.

    States (all ``dist_reduce_fx="sum"``, so a DDP run equals one process fed every image):
    ``count`` int64 ``[C', B]``, ``sum_p`` and ``sum_y`` float64 ``[C', B]``, ``macro_sum``
    float64 ``[3, C']`` and ``macro_count`` int64 ``[3, C']`` (rows ECE, ACE, MCE).  Binning
    runs on the inputs' device (CPU or CUDA); the per-batch sums (a few hundred numbers) are
    added to the states on the metric's device (move the metric with ``.to(device)`` as any
    torchmetrics metric to keep everything on the GPU).

    Edges are ``k/B`` rounded to the dtype of the binned probabilities (float32 edges for
    float32 maps; softmax of float16/bfloat16 logits runs in float32), so a float32 value 0.2
    and the edge 0.2 are the same number.  This differs from
    ``torchmetrics.classification.MulticlassCalibrationError``, which scores only the max-softmax
    confidence, bins left-closed and accumulates in the input precision.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    count: torch.Tensor
    sum_p: torch.Tensor
    sum_y: torch.Tensor
    macro_sum: torch.Tensor
    macro_count: torch.Tensor

    def __init__(
        self,
        num_classes: int,
        n_bins: int = 20,
        softmax: bool = False,
        include_background: bool = True,
        *,
        closure: str = "right",
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
        if closure not in CLOSURES:
            raise ValueError(f"closure must be one of {CLOSURES}, got {closure!r}")
        if not include_background and num_classes == 1:
            raise ValueError("include_background=False needs at least two classes")
        self.num_classes = num_classes
        self.n_bins = check_n_bins(n_bins)
        self.softmax = bool(softmax)
        self.include_background = bool(include_background)
        self.closure = closure
        self.validate_args = bool(validate_args)
        scored = num_classes if include_background else num_classes - 1
        shape = (scored, self.n_bins)
        self.add_state("count", torch.zeros(shape, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("sum_p", torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("sum_y", torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state(
            "macro_sum", torch.zeros((3, scored), dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state(
            "macro_count", torch.zeros((3, scored), dtype=torch.int64), dist_reduce_fx="sum"
        )

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Bin a batch ``preds`` ``(B, C, *spatial)`` against ``target`` (see the class);
        an empty batch (``B = 0``) is a ``ValueError``, nothing is added."""
        if (
            isinstance(preds, torch.Tensor)
            and preds.ndim >= 2
            and preds.shape[1] != self.num_classes
        ):
            raise ValueError(
                f"preds have {preds.shape[1]} channels (shape {tuple(preds.shape)}) "
                f"but num_classes={self.num_classes}"
            )
        probs, outcome = prepare(
            preds, target, softmax=self.softmax, include_background=self.include_background,
            validate=self.validate_args,
        )
        count, sum_p, sum_y = binned_sums(
            probs, outcome, n_bins=self.n_bins, closure=self.closure
        )
        per_image = calibration_errors(count, sum_p, sum_y)  # (B, C') each
        values = torch.stack([per_image[name] for name in ERROR_NAMES])  # (3, B, C')
        finite = torch.isfinite(values)
        device = self.count.device
        self.count += count.sum(dim=0).to(device)
        self.sum_p += sum_p.sum(dim=0).to(device)
        self.sum_y += sum_y.sum(dim=0).to(device)
        self.macro_sum += torch.where(finite, values, torch.zeros_like(values)).sum(dim=1).to(
            device
        )
        self.macro_count += finite.sum(dim=1).to(device)

    def compute(self) -> dict[str, torch.Tensor]:
        """``{"ece", "ace", "mce", "ece_macro", "ace_macro", "mce_macro"}``, float64 ``[C']``."""
        out = calibration_errors(self.count, self.sum_p, self.sum_y)
        counted = self.macro_count > 0
        macro = torch.where(
            counted,
            self.macro_sum / self.macro_count.clamp(min=1).to(torch.float64),
            torch.full_like(self.macro_sum, float("nan")),
        )
        for row, name in enumerate(ERROR_NAMES):
            out[f"{name}_macro"] = macro[row]
        return out
