"""calibviz's marginal calibration errors as a MONAI metric and Ignite handler (``pip install
calibviz[monai]``).

* :class:`CalibrationErrorMetric` — a ``monai.metrics.CumulativeIterationMetric`` with the
  arguments of ``monai.metrics.CalibrationErrorMetric`` (``num_bins``, ``include_background``,
  ``calibration_reduction``, ``metric_reduction``, ``get_not_nans``), so a bundle swaps it in
  by changing the class path; its numbers are calibviz's (exact edges, float64 sums).
* :class:`CalibrationError` — the handler for MONAI's ``SupervisedEvaluator`` /
  ``SupervisedTrainer`` (``monai.handlers.IgniteMetricHandler``, needs ``pytorch-ignite``),
  the counterpart of ``monai.handlers.CalibrationError``.

>>> import torch
>>> from calibviz.monai import CalibrationErrorMetric
>>> metric = CalibrationErrorMetric(num_bins=5, calibration_reduction="average")
>>> y_pred = torch.tensor([[[0.3, 0.9]], [[0.7, 0.1]]])[None]  # (B=1, C=2, 1, 2)
>>> y = torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]]])[None]       # one-hot, same shape
>>> [round(v, 6) for v in metric(y_pred, y)[0].tolist()]        # per image and class
[0.2, 0.2]
>>> round(metric.aggregate().item(), 6)                         # mean over images, classes
0.2
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

# absolute imports: the installed MONAI package, not this module
from monai.handlers.ignite_metric import IgniteMetricHandler
from monai.metrics import Cumulative, CumulativeIterationMetric
from monai.utils import MetricReduction, look_up_option

from ._torch_calibration import calibration_errors, prepare
from .options import check_n_bins
from .stats import CLOSURES
from .torch_binning import binned_sums

__all__ = ["CalibrationError", "CalibrationErrorMetric", "reduce_metric"]

#: MONAI's ``calibration_reduction`` values (and calibviz's names for them)
CALIBRATION_REDUCTIONS = {
    "expected": "ece", "average": "ace", "maximum": "mce",
    "ece": "ece", "ace": "ace", "mce": "mce",
}


def reduce_metric(
    f: torch.Tensor, reduction: MetricReduction | str = MetricReduction.MEAN
) -> tuple[torch.Tensor, torch.Tensor]:
    """``monai.metrics.utils.do_metric_reduction`` in the dtype of ``f`` (float64 here).

    Same modes, NaN handling and ``not_nans`` as MONAI's function (``mean``: mean over the
    non-NaN classes of each image, then over the images that have one; ``*_batch`` over
    images, ``*_channel`` over classes; 0 where nothing is counted), but MONAI's casts its
    sums and means to float32, which would round calibviz's float64 values to ~1e-8.
    ``f`` ``(B, C, ...)`` is not modified.
    """
    reduction = look_up_option(reduction, MetricReduction)
    nans = torch.isnan(f)
    not_nans = (~nans).to(f.dtype)
    if reduction == MetricReduction.NONE:
        return f, not_nans
    f = torch.where(nans, torch.zeros_like(f), f)
    zero = torch.zeros(1, dtype=f.dtype, device=f.device)  # shape (1,) as MONAI's

    def mean(total, counted):
        return torch.where(counted > 0, total / counted.clamp(min=1), zero)

    if reduction == MetricReduction.MEAN:
        per_image_n = not_nans.sum(dim=1)
        per_image = mean(f.sum(dim=1), per_image_n)
        images = (per_image_n > 0).to(f.dtype).sum(dim=0)
        return mean(per_image.sum(dim=0), images), images
    if reduction == MetricReduction.SUM:
        return f.sum(dim=(0, 1)), not_nans.sum(dim=(0, 1))
    if reduction == MetricReduction.MEAN_BATCH:
        return mean(f.sum(dim=0), not_nans.sum(dim=0)), not_nans.sum(dim=0)
    if reduction == MetricReduction.SUM_BATCH:
        return f.sum(dim=0), not_nans.sum(dim=0)
    if reduction == MetricReduction.MEAN_CHANNEL:
        return mean(f.sum(dim=1), not_nans.sum(dim=1)), not_nans.sum(dim=1)
    # look_up_option leaves only SUM_CHANNEL
    return f.sum(dim=1), not_nans.sum(dim=1)


class _BinBuffer(Cumulative):
    """Per-image bin sums ``(C', B, 3)`` (count, Σp, Σy as float64), gathered across ranks."""

    def aggregate(self) -> torch.Tensor | None:
        return self.get_buffer()


class CalibrationErrorMetric(CumulativeIterationMetric):
    """Marginal calibration error per image and class with calibviz's binning (spec §1–§4).

    Drop-in for ``monai.metrics.CalibrationErrorMetric``: ``metric(y_pred, y)`` returns the
    error of every image and class ``(B, C')`` (float64) and buffers it; ``aggregate()``
    reduces the buffer with MONAI's reduction semantics (:func:`reduce_metric`, float64);
    ``get_buffer()`` gives the per-image values.  Also :meth:`aggregate_micro`: the error of
    the pooled bins of all images, per class (calibviz's micro value).

    Parameters
    ----------
    num_bins : number of equal-width bins on [0, 1] (20).
    include_background : score channel 0 (True).  As in MONAI, a single-channel input keeps
        its channel.
    calibration_reduction : ``"expected"`` (ECE), ``"average"`` (ACE, the paper's headline)
        or ``"maximum"`` (MCE); ``"ece"``, ``"ace"``, ``"mce"`` also work.
    metric_reduction : MONAI's reduction over images and classes for ``aggregate()``:
        ``"mean"`` (default), ``"sum"``, ``"mean_batch"``, ``"sum_batch"``, ``"mean_channel"``,
        ``"sum_channel"``, ``"none"``; not given (None): ``"mean"``.  ``reduction`` (the name
        MONAI's Dice and other metrics use) is accepted as an alias; giving both with
        different values (an explicit ``"mean"`` included) is an error.
    get_not_nans : ``aggregate()`` returns ``(metric, not_nans)``.
    softmax : ``y_pred`` are logits; softmax over channels first (MONAI's metrics expect
        probabilities, e.g. after ``Activations(softmax=True)``; default False).
    closure : ``"right"`` (default; ``e_k < p <= e_{k+1}``) or ``"left"``, as ``bin_image``.
        MONAI's ``right`` argument is not accepted: its documented meaning is the opposite of
        what it does (see below), so a config passing it should be looked at, not translated.
    validate_args : check that probabilities are finite and within 1e-3 of [0, 1] (those
        within are clipped) and that one-hot targets hold 0/1, with a positive channel in
        every voxel when the probabilities sum to 1 there (or ``softmax``): a voxel with no
        class is refused, not scored as negative of every class (one synchronisation).

    ``y_pred`` ``(B, C, *spatial)`` probabilities; ``y`` one-hot ``(B, C, *spatial)`` as for
    MONAI's metrics (a label map ``(B, 1, *spatial)`` with values ``0..C-1`` also works when
    ``C > 1``).  Lists of channel-first tensors work as for every MONAI metric.  Under
    ``torch.distributed`` both buffers are gathered across ranks (MONAI's
    ``evenly_divisible_all_gather``), so every rank must call ``aggregate()`` /
    :meth:`aggregate_micro` together, as with MONAI's own metrics.

    **How the numbers differ from** ``monai.metrics.CalibrationErrorMetric`` (MONAI 1.5+;
    measured with MONAI 1.6.1, asserted in ``tests/test_monai.py``):

    * *Edges.*  MONAI bins with float32 edges ``linspace(0, 1 + eps, B + 1)``, i.e.
      ``k·(1+ε)/B``, one float32 step above ``k/B`` for most ``k``, and
      ``torch.bucketize(right=False)``, which makes bins ``(e_k, e_{k+1}]`` (its docstring says
      ``[left, right)``; ``right=True`` gives ``[e_k, e_{k+1})`` on the shifted edges).  A value
      exactly on ``k/B`` lands where calibviz puts it; a value one float32 step above lands one
      bin lower.  Five bins, float32 ``y_pred = [0.2, 0.20000002, 0.20000002, 0.6]``,
      ``y = [0, 1, 1, 1]``: MONAI ECE/ACE/MCE 0.45 / 0.4333 / 0.4667 (the three values share
      bin 0); calibviz 0.55 / 0.4667 / 0.8 (0.2 in bin 0, 0.20000002 in bin 1).
    * *float32 sums.*  MONAI adds ``Σp``, ``Σy`` and counts in float32; calibviz uses int64
      counts and float64 sums.  On one 128³ two-class volume (a smooth sphere, background
      probabilities near 1, 20 bins), background ECE is 0.028710 with MONAI and 0.027133 with
      calibviz (float64 ``bin_image`` gives the same 0.027133): the 1.04·10⁶ background
      voxels of the top bin add up to ~10⁶ in float32, where the float32 spacing is 0.0625.
      The foreground channel agrees to 3·10⁻⁷.
    * *Reduction.*  Same modes; MONAI's ``do_metric_reduction`` returns float32, this one
      float64.  Values outside [0, 1] raise here; MONAI bins them silently into the end bins.
    """

    def __init__(
        self,
        num_bins: int = 20,
        include_background: bool = True,
        calibration_reduction: str = "expected",
        metric_reduction: MetricReduction | str | None = None,
        get_not_nans: bool = False,
        *,
        reduction: MetricReduction | str | None = None,
        softmax: bool = False,
        closure: str = "right",
        validate_args: bool = True,
    ) -> None:
        # the bin buffer must exist before Cumulative.__init__ calls reset()
        self._bins = _BinBuffer()
        super().__init__()
        self.num_bins = check_n_bins(num_bins)
        self.include_background = bool(include_background)
        key = str(getattr(calibration_reduction, "value", calibration_reduction)).lower()
        if key not in CALIBRATION_REDUCTIONS:
            raise ValueError(
                f"calibration_reduction must be one of {sorted(CALIBRATION_REDUCTIONS)}, "
                f"got {calibration_reduction!r}"
            )
        self.calibration_reduction = key
        self.error_name = CALIBRATION_REDUCTIONS[key]
        self.metric_reduction = _one_reduction(metric_reduction, reduction)
        self.get_not_nans = bool(get_not_nans)
        self.softmax = bool(softmax)
        if closure not in CLOSURES:
            raise ValueError(f"closure must be one of {CLOSURES}, got {closure!r}")
        self.closure = closure
        self.validate_args = bool(validate_args)

    def reset(self) -> None:
        super().reset()
        self._bins.reset()

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        """float64 ``(B, C')`` calibration error of each image and class; buffers the bins."""
        if y is None:
            raise ValueError("CalibrationErrorMetric needs a ground truth y")
        probs, outcome = prepare(
            y_pred, y, softmax=self.softmax, include_background=self.include_background,
            validate=self.validate_args, names=("y_pred", "y"),
        )
        count, sum_p, sum_y = binned_sums(
            probs, outcome, n_bins=self.num_bins, closure=self.closure
        )
        self._bins.extend(torch.stack([count.to(torch.float64), sum_p, sum_y], dim=-1))
        return calibration_errors(count, sum_p, sum_y)[self.error_name]

    def aggregate(
        self, reduction: MetricReduction | str | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The buffered per-image values reduced with ``reduction`` (default
        ``metric_reduction``) in float64; ``(metric, not_nans)`` with ``get_not_nans``."""
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("nothing to aggregate: call the metric on a batch first")
        f, not_nans = reduce_metric(data, reduction or self.metric_reduction)
        return (f, not_nans) if self.get_not_nans else f

    def aggregate_micro(self) -> torch.Tensor:
        """float64 ``[C']``: the error of all images' bins pooled (counts and sums added),
        as ``calibviz.micro_metrics``; gathered across ranks like the per-image buffer."""
        bins = self._bins.get_buffer()
        if not isinstance(bins, torch.Tensor):
            raise ValueError("nothing to aggregate: call the metric on a batch first")
        pooled = bins.sum(dim=0)
        count = pooled[..., 0].round().to(torch.int64)
        return calibration_errors(count, pooled[..., 1], pooled[..., 2])[self.error_name]


def _one_reduction(metric_reduction, reduction) -> MetricReduction:
    """``metric_reduction`` or its alias ``reduction`` (None: not given; default mean);
    both given and different (``"mean"`` included) is an error."""
    given = {
        name: look_up_option(value, MetricReduction)
        for name, value in (("metric_reduction", metric_reduction), ("reduction", reduction))
        if value is not None
    }
    if len(set(given.values())) > 1:
        raise ValueError(
            f"reduction={reduction!r} and metric_reduction={metric_reduction!r} "
            "disagree; give one of them"
        )
    return next(iter(given.values()), MetricReduction.MEAN)


class CalibrationError(IgniteMetricHandler):
    """Ignite handler computing :class:`CalibrationErrorMetric` over an engine's run.

    Drop-in for ``monai.handlers.CalibrationError`` (same arguments, plus the keyword-only
    options of :class:`CalibrationErrorMetric`); needs ``pytorch-ignite``.  At the end of
    each run ``engine.state.metrics[name]`` holds ``aggregate()`` (a float for the ``mean``
    reduction) and, with ``save_details``, ``engine.state.metric_details[name]`` the
    per-image ``(n_images, C')`` values.  See :class:`CalibrationErrorMetric` for how the
    numbers differ from MONAI's own handler.  Typical use, as MONAI's handlers::

        CalibrationError(include_background=False, calibration_reduction="average",
                         output_transform=from_engine(["pred", "label"]))
        # SupervisedEvaluator(..., key_val_metric={"val_ace": handler})
    """

    def __init__(
        self,
        num_bins: int = 20,
        include_background: bool = True,
        calibration_reduction: str = "expected",
        metric_reduction: MetricReduction | str | None = None,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
        *,
        reduction: MetricReduction | str | None = None,
        softmax: bool = False,
        closure: str = "right",
        validate_args: bool = True,
    ) -> None:
        metric_fn = CalibrationErrorMetric(
            num_bins=num_bins,
            include_background=include_background,
            calibration_reduction=calibration_reduction,
            metric_reduction=metric_reduction,
            reduction=reduction,
            softmax=softmax,
            closure=closure,
            validate_args=validate_args,
        )
        super().__init__(
            metric_fn=metric_fn, output_transform=output_transform, save_details=save_details
        )
