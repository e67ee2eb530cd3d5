"""calibviz.monai: a MONAI metric and handler with calibviz's numbers (spec §1–§4)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
monai = pytest.importorskip("monai", reason="calibviz.monai needs `pip install calibviz[monai]`")

from monai.metrics.utils import do_metric_reduction  # noqa: E402

import calibviz  # noqa: E402
from calibviz.monai import CalibrationError, CalibrationErrorMetric, reduce_metric  # noqa: E402
from calibviz.synthetic import make_case  # noqa: E402

from .conftest import softmax_batch  # noqa: E402

MODES = {"expected": "ece", "average": "ace", "maximum": "mce"}
REDUCTIONS = ("mean", "sum", "mean_batch", "sum_batch", "mean_channel", "sum_channel", "none")




def one_hot(labels, n_classes):
    return (labels[:, None] == np.arange(n_classes).reshape(1, -1, *[1] * (labels.ndim - 1)))


def engine(probs, labels, n_bins=20, include_background=True):
    stats = [calibviz.bin_image(p, y, n_bins=n_bins) for p, y in zip(probs, labels, strict=True)]
    if not include_background:
        stats = [s.select(list(range(1, s.n_classes))) for s in stats]
    return stats


# --------------------------------------------------------------------------- values
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("include_background", [True, False])
def test_per_image_values_equal_engine(mode, include_background):
    probs, labels = softmax_batch(0)
    stats = engine(probs, labels, include_background=include_background)
    want = calibviz.per_image_metrics(stats)[MODES[mode]]
    metric = CalibrationErrorMetric(
        num_bins=20, include_background=include_background, calibration_reduction=mode
    )
    onehot = torch.from_numpy(one_hot(labels, 3).astype(np.float32))
    got = metric(torch.from_numpy(probs), onehot)
    assert got.dtype == torch.float64 and got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(metric.get_buffer().numpy(), want, rtol=0, atol=1e-12)
    # macro: MONAI's "mean" = mean over images of the per-image class mean
    macro = calibviz.macro_summary(stats)[MODES[mode]]["mean"][-1]
    assert abs(metric.aggregate().item() - macro) < 1e-12
    np.testing.assert_allclose(
        metric.aggregate("mean_batch").numpy(), want.mean(axis=0), rtol=0, atol=1e-12
    )
    # micro: the pooled bins
    pooled = getattr(calibviz, MODES[mode])(calibviz.pool(stats))
    np.testing.assert_allclose(metric.aggregate_micro().numpy(), pooled, rtol=0, atol=1e-12)


def test_smooth_maps_split_batches_and_lists_equal_engine():
    cases = [make_case((16, 16, 8), 3, seed=s) for s in range(4)]
    labels = np.stack([c[0] for c in cases]).astype(np.int64)
    probs = np.stack([c[1] for c in cases])
    stats = engine(probs, labels)
    want = calibviz.per_image_metrics(stats)["ace"]
    onehot = one_hot(labels, 3).astype(np.float32)
    metric = CalibrationErrorMetric(calibration_reduction="average")
    metric(torch.from_numpy(probs[:1]), torch.from_numpy(onehot[:1]))
    metric(torch.from_numpy(probs[1:3]), torch.from_numpy(labels[1:3, None]))  # label map
    metric([torch.from_numpy(probs[3])], [torch.from_numpy(onehot[3])])  # channel-first list
    np.testing.assert_allclose(metric.get_buffer().numpy(), want, rtol=0, atol=1e-12)
    pooled = calibviz.ace(calibviz.pool(stats))
    np.testing.assert_allclose(metric.aggregate_micro().numpy(), pooled, rtol=0, atol=1e-12)
    metric.reset()
    with pytest.raises(ValueError, match="nothing to aggregate"):
        metric.aggregate()
    with pytest.raises(ValueError, match="nothing to aggregate"):
        metric.aggregate_micro()


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_reduction_semantics_are_monais(reduction):
    rng = np.random.default_rng(1)
    values = torch.from_numpy(rng.random((5, 4)))
    values[0, 1] = values[2, :] = values[3, 3] = float("nan")  # an image with no value at all
    ours, ours_n = reduce_metric(values, reduction)
    theirs, theirs_n = do_metric_reduction(values.clone(), reduction)
    assert ours.dtype == torch.float64 and ours.shape == theirs.shape
    torch.testing.assert_close(ours.float(), theirs.float(), equal_nan=True)
    torch.testing.assert_close(ours_n.float(), theirs_n.float())
    assert int(torch.isnan(values).sum()) == 6  # input untouched (still has its NaNs)

    metric = CalibrationErrorMetric(metric_reduction=reduction, get_not_nans=True)
    probs, labels = softmax_batch(2)
    metric(torch.from_numpy(probs), torch.from_numpy(labels[:, None]))
    got, not_nans = metric.aggregate()
    want, want_n = do_metric_reduction(metric.get_buffer(), reduction)
    torch.testing.assert_close(got.float(), want.float())
    torch.testing.assert_close(not_nans.float(), want_n.float())
    alias = CalibrationErrorMetric(reduction=reduction)
    assert alias.metric_reduction == reduction


def test_arguments():
    with pytest.raises(ValueError, match="calibration_reduction"):
        CalibrationErrorMetric(calibration_reduction="median")
    with pytest.raises(ValueError, match="disagree"):
        CalibrationErrorMetric(metric_reduction="sum", reduction="mean_batch")
    with pytest.raises(ValueError):
        CalibrationErrorMetric(metric_reduction="median")
    with pytest.raises(TypeError):
        CalibrationErrorMetric(right=True)  # MONAI's `right` is deliberately not accepted
    assert CalibrationErrorMetric(calibration_reduction="ace").error_name == "ace"
    metric = CalibrationErrorMetric()
    with pytest.raises(ValueError, match="range over"):
        metric(torch.full((1, 2, 4, 4), 1.5), torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="expected a label map"):
        metric(torch.full((1, 2, 4, 4), 0.5), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="only 0 and 1"):
        metric(torch.full((1, 2, 4, 4), 0.5), torch.full((1, 2, 4, 4), 0.5))


@pytest.mark.parametrize(
    ("metric_reduction", "reduction"),
    [("mean", "sum"), ("sum", "mean"), ("mean_batch", "sum"), ("none", "mean_channel")],
)
def test_explicit_reductions_that_disagree_are_refused(metric_reduction, reduction):
    with pytest.raises(ValueError, match="disagree"):
        CalibrationErrorMetric(metric_reduction=metric_reduction, reduction=reduction)
    with pytest.raises(ValueError, match="disagree"):
        CalibrationError(metric_reduction=metric_reduction, reduction=reduction)


def test_reduction_alias_and_default():
    assert CalibrationErrorMetric().metric_reduction == "mean"
    assert CalibrationErrorMetric(reduction="sum").metric_reduction == "sum"
    assert CalibrationErrorMetric(metric_reduction="sum").metric_reduction == "sum"
    both = CalibrationErrorMetric(metric_reduction="mean", reduction="mean")
    assert both.metric_reduction == "mean"


def test_empty_batch_is_a_clear_error():
    metric = CalibrationErrorMetric()
    with pytest.raises(ValueError, match=r"y_pred has an empty batch"):
        metric(torch.full((0, 2, 4, 4), 0.5), torch.zeros(0, 2, 4, 4))


def test_single_channel_keeps_its_channel_like_monai():
    probs = torch.tensor([[[0.1, 0.8, 0.9, 0.3]]])
    y = torch.tensor([[[0.0, 1.0, 1.0, 1.0]]])
    got = CalibrationErrorMetric(include_background=False, num_bins=5)(probs, y)
    want = calibviz.ece(calibviz.bin_image(probs[0].numpy(), y[0].numpy().astype(bool), n_bins=5))
    np.testing.assert_allclose(got[0].numpy(), want, rtol=0, atol=1e-12)


# ------------------------------------------------ against monai.metrics.CalibrationErrorMetric
def _monai_metric():
    metrics = pytest.importorskip("monai.metrics")
    if not hasattr(metrics, "CalibrationErrorMetric"):
        pytest.skip(f"MONAI {monai.__version__} has no CalibrationErrorMetric (added in 1.5)")
    return metrics.CalibrationErrorMetric


def test_documented_edge_example_against_monai():
    MonaiMetric = _monai_metric()
    step = float(np.nextafter(np.float32(0.2), np.float32(1)))
    y_pred = torch.tensor([0.2, step, step, 0.6], dtype=torch.float32).view(1, 1, 4)
    y = torch.tensor([0.0, 1.0, 1.0, 1.0]).view(1, 1, 4)
    theirs = [MonaiMetric(num_bins=5, calibration_reduction=m)(y_pred, y).item() for m in MODES]
    ours = [CalibrationErrorMetric(num_bins=5, calibration_reduction=m)(y_pred, y).item()
            for m in MODES]
    np.testing.assert_allclose(theirs, [0.45, 0.4333333, 0.4666667], atol=1e-6)
    np.testing.assert_allclose(ours, [0.55, 0.4666667, 0.8], atol=1e-6)
    stats = calibviz.bin_image(y_pred[0].numpy(), y[0].numpy().astype(bool), n_bins=5)
    engine_values = [getattr(calibviz, name)(stats)[0] for name in MODES.values()]
    np.testing.assert_allclose(ours, engine_values, rtol=0, atol=1e-12)


def test_documented_float32_accumulation_example_against_monai():
    MonaiMetric = _monai_metric()
    n = 128
    z = torch.linspace(-3, 3, n)
    X, Y, Z = torch.meshgrid(z, z, z, indexing="ij")
    logit = (2 - (X**2 + Y**2 + Z**2).sqrt()) * 3
    foreground = torch.sigmoid(logit)
    generator = torch.Generator().manual_seed(0)
    truth = (torch.rand(foreground.shape, generator=generator) < torch.sigmoid(logit * 0.8))
    y_pred = torch.stack([1 - foreground, foreground])[None].float()
    y = torch.stack([~truth, truth])[None].float()
    theirs = MonaiMetric(num_bins=20)(y_pred, y)[0]
    ours = CalibrationErrorMetric(num_bins=20)(y_pred, y)[0]
    stats = calibviz.bin_image(y_pred[0].numpy(), truth.numpy().astype(np.int64), n_bins=20)
    assert stats.count[0, -1] == 1_044_560
    np.testing.assert_allclose(ours.numpy(), calibviz.ece(stats), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.numpy(), [0.027133, 0.027133], atol=5e-7)
    assert abs(theirs[0].item() - 0.028710) < 5e-6  # float32 sums of ~1e6 values near 1
    assert abs(theirs[1].item() - ours[1].item()) < 1e-6


# --------------------------------------------------------------------------- handler
def test_handler_in_supervised_evaluator_reports_calibviz_numbers():
    pytest.importorskip("ignite", reason="the MONAI handler needs pytorch-ignite")
    from monai.data import DataLoader
    from monai.engines import SupervisedEvaluator
    from monai.handlers import from_engine

    cases = [make_case((12, 10, 6), 3, seed=s) for s in range(5)]
    data = [
        {"image": torch.from_numpy(probs), "label": torch.from_numpy(one_hot(lab[None], 3)[0])}
        for lab, probs in cases
    ]
    handler = CalibrationError(
        num_bins=20, include_background=False, calibration_reduction="average",
        output_transform=from_engine(["pred", "label"]),
    )
    micro = CalibrationError(
        include_background=False, calibration_reduction="expected", metric_reduction="none",
        output_transform=from_engine(["pred", "label"]), save_details=False,
    )
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(data, batch_size=2),
        network=torch.nn.Identity(),  # the "image" already holds the probabilities
        key_val_metric={"val_ace": handler},
        additional_metrics={"val_ece": micro},
    )
    evaluator.run()
    stats = engine(np.stack([c[1] for c in cases]), np.stack([c[0] for c in cases]),
                   include_background=False)
    per_image = calibviz.per_image_metrics(stats)
    macro = calibviz.macro_summary(stats)["ace"]["mean"][-1]
    assert abs(evaluator.state.metrics["val_ace"] - macro) < 1e-12
    details = evaluator.state.metric_details["val_ace"]
    np.testing.assert_allclose(details.numpy(), per_image["ace"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        np.asarray(evaluator.state.metrics["val_ece"]), per_image["ece"], rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        micro.metric_fn.aggregate_micro().numpy(), calibviz.ece(calibviz.pool(stats)),
        rtol=0, atol=1e-12,
    )


# --------------------------------------------------------------------------- CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none visible)")
def test_cuda_equals_engine():
    probs, labels = softmax_batch(3, batch=4, spatial=(40, 30, 6))
    stats = engine(probs, labels)
    metric = CalibrationErrorMetric(calibration_reduction="average")
    onehot = torch.from_numpy(one_hot(labels, 3).astype(np.float32)).cuda()
    got = metric(torch.from_numpy(probs).cuda(), onehot)
    assert got.device.type == "cuda"
    np.testing.assert_allclose(
        got.cpu().numpy(), calibviz.per_image_metrics(stats)["ace"], rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        metric.aggregate_micro().cpu().numpy(), calibviz.ace(calibviz.pool(stats)),
        rtol=0, atol=1e-12,
    )
