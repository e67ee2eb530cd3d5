"""calibviz.torchmetrics.MarginalCalibrationError equals calibviz's NumPy engine (spec §1–§4)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchmetrics = pytest.importorskip(
    "torchmetrics", reason="calibviz.torchmetrics needs `pip install calibviz[torchmetrics]`"
)

import calibviz  # noqa: E402
from calibviz.synthetic import make_case  # noqa: E402
from calibviz.torchmetrics import MarginalCalibrationError  # noqa: E402

from .conftest import count_host_transfers, softmax_batch  # noqa: E402

NAMES = ("ece", "ace", "mce")
STATES = ("count", "sum_p", "sum_y", "macro_sum", "macro_count")


# --------------------------------------------------------------------------- inputs


def smooth_batch(batch=3, n_classes=3, shape=(16, 16, 8)):
    cases = [make_case(shape, n_classes, seed=s) for s in range(batch)]
    labels = np.stack([c[0] for c in cases]).astype(np.int64)
    probs = np.stack([c[1] for c in cases])
    return probs, labels


def edge_batch(seed, n_bins, dtype, batch=3, n_classes=2, spatial=(12, 10)):
    """Probabilities with many values exactly on the edges k/B in ``dtype``, 0 and 1,
    and values one step either side of an edge."""
    rng = np.random.default_rng(seed)
    edges = calibviz.bin_edges(n_bins, dtype).astype(dtype)
    shape = (batch, n_classes, *spatial)
    probs = rng.random(shape).astype(dtype)
    pick = rng.random(shape)
    on_edge = pick < 0.4
    probs[on_edge] = rng.choice(edges, size=int(on_edge.sum()))
    near = (pick >= 0.4) & (pick < 0.6)
    chosen = rng.choice(edges[1:-1], size=int(near.sum()))
    direction = np.where(rng.random(chosen.shape) < 0.5, dtype(2), dtype(-1))
    probs[near] = np.nextafter(chosen, direction).astype(dtype)
    labels = rng.integers(0, n_classes, size=(batch, *spatial))
    return probs, labels


# --------------------------------------------------------------------------- expected
def engine_stats(probs, labels, n_bins, include_background=True, closure="right"):
    """Per-image BinStats from calibviz.bin_image (the NumPy/Numba engine)."""
    stats = []
    for p, y in zip(probs, labels, strict=True):
        if y.shape == p.shape:  # one-hot / multi-label outcomes
            s = calibviz.bin_image(p, y.astype(bool), n_bins=n_bins, closure=closure,
                                   outcomes=True)
        else:
            s = calibviz.bin_image(p, y, n_bins=n_bins, closure=closure)
        stats.append(s if include_background else s.select(list(range(1, p.shape[0]))))
    return stats


def expected(stats):
    pooled = calibviz.pool(stats)
    per_image = calibviz.per_image_metrics(stats)
    out = {name: getattr(calibviz, name)(pooled) for name in NAMES}
    for name in NAMES:
        out[f"{name}_macro"] = calibviz.macro_summary(stats)[name]["mean"][:-1]
        np.testing.assert_allclose(out[f"{name}_macro"], per_image[name].mean(axis=0))
    return out, pooled


def assert_matches(result, stats, atol=1e-12):
    want, pooled = expected(stats)
    assert set(result) == set(want)
    for name, value in result.items():
        assert value.dtype == torch.float64 and value.shape == want[name].shape, name
        np.testing.assert_allclose(value.cpu().numpy(), want[name], rtol=0, atol=atol,
                                   err_msg=name)
    return pooled


def run(metric, probs, labels, splits=(None,)):
    """Feed ``probs``/``labels`` (NumPy) to ``metric`` in the given batch splits."""
    edges = [0, *[s for s in splits if s is not None], len(probs)]
    for start, stop in zip(edges[:-1], edges[1:]):
        metric.update(torch.from_numpy(probs[start:stop]), torch.from_numpy(labels[start:stop]))
    return metric.compute()


# --------------------------------------------------------------------------- values
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_bins", [20, 7])
def test_random_softmax_equals_engine(dtype, n_bins):
    probs, labels = softmax_batch(0, dtype=dtype)
    metric = MarginalCalibrationError(3, n_bins=n_bins)
    result = run(metric, probs, labels)
    pooled = assert_matches(result, engine_stats(probs, labels, n_bins))
    assert torch.equal(metric.count.cpu(), torch.from_numpy(np.array(pooled.count)))


def test_smooth_maps_equal_engine():
    probs, labels = smooth_batch()
    result = run(MarginalCalibrationError(3), probs, labels)
    assert_matches(result, engine_stats(probs, labels, 20))


@pytest.mark.parametrize("closure", ["right", "left"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("n_bins", [5, 20, 10])
def test_values_on_and_next_to_edges_bin_as_engine(closure, dtype, n_bins):
    probs, labels = edge_batch(1, n_bins, dtype)
    metric = MarginalCalibrationError(2, n_bins=n_bins, closure=closure)
    result = run(metric, probs, labels)
    pooled = assert_matches(result, engine_stats(probs, labels, n_bins, closure=closure))
    assert torch.equal(metric.count, torch.from_numpy(np.array(pooled.count)))


def test_float32_point_two_is_in_bin_zero_of_five():
    # spec §2: with 5 bins 0.2, 0.4, 0.6, 0.8 fall in bins 0, 1, 2, 3 and bin 4 stays empty
    probs = torch.tensor([0.2, 0.4, 0.6, 0.8], dtype=torch.float32).view(1, 1, 4)
    metric = MarginalCalibrationError(1, n_bins=5)
    metric.update(probs, torch.ones(1, 1, 4))
    assert metric.count.tolist() == [[1, 1, 1, 1, 0]]
    left = MarginalCalibrationError(1, n_bins=5, closure="left")
    left.update(probs, torch.ones(1, 1, 4))
    assert left.count.tolist() == [[0, 1, 1, 1, 1]]


@pytest.mark.parametrize("target_form", ["labels", "labels_1", "onehot", "onehot_float"])
def test_target_forms_and_no_background(target_form):
    probs, labels = softmax_batch(2, n_classes=4)
    onehot = (labels[:, None] == np.arange(4)[None, :, None, None, None])
    target = {
        "labels": labels,
        "labels_1": labels[:, None],
        "onehot": onehot,
        "onehot_float": onehot.astype(np.float32),
    }[target_form]
    metric = MarginalCalibrationError(4, include_background=False)
    result = run(metric, probs, target)
    assert result["ece"].shape == (3,)
    assert_matches(result, engine_stats(probs, labels, 20, include_background=False))


def test_multilabel_onehot_targets():
    rng = np.random.default_rng(3)
    probs = rng.random((2, 3, 10, 9)).astype(np.float32)
    outcome = rng.random((2, 3, 10, 9)) < probs  # overlapping regions
    result = run(MarginalCalibrationError(3), probs, outcome)
    assert_matches(result, engine_stats(probs, outcome, 20))


def test_softmax_of_logits_equals_probabilities():
    rng = np.random.default_rng(4)
    logits = torch.from_numpy((rng.normal(size=(2, 3, 8, 8)) * 3).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 3, size=(2, 8, 8)))
    from_logits = MarginalCalibrationError(3, softmax=True)
    from_logits.update(logits, labels)
    from_probs = MarginalCalibrationError(3)
    from_probs.update(torch.softmax(logits, dim=1), labels)
    for name, value in from_logits.compute().items():
        torch.testing.assert_close(value, from_probs.compute()[name], rtol=0, atol=0)


def test_values_within_tolerance_are_clipped_as_engine():
    probs, labels = softmax_batch(5, batch=2, n_classes=2, dtype=np.float64)
    probs[0, 0, 0, 0, 0] = -5e-4
    probs[1, 1, 0, 0, 0] = 1 + 5e-4
    result = run(MarginalCalibrationError(2), probs, labels)
    assert_matches(result, engine_stats(probs, labels, 20))  # bin_image clips too


def test_unvalidated_updates_give_the_same_numbers():
    probs, labels = softmax_batch(11)
    checked = run(MarginalCalibrationError(3), probs, labels)
    unchecked = run(MarginalCalibrationError(3, validate_args=False), probs, labels)
    for name, value in checked.items():
        torch.testing.assert_close(unchecked[name], value, rtol=0, atol=0)


# --------------------------------------------------------------------------- accumulation
@pytest.mark.parametrize("splits", [(1,), (1, 2), (2, 3, 5)])
def test_accumulated_updates_equal_one_update(splits):
    probs, labels = softmax_batch(6, batch=6)
    whole = MarginalCalibrationError(3)
    whole.update(torch.from_numpy(probs), torch.from_numpy(labels))
    parts = MarginalCalibrationError(3)
    result = run(parts, probs, labels, splits)
    assert torch.equal(parts.count, whole.count)
    assert torch.equal(parts.macro_count, whole.macro_count)
    for name, value in whole.compute().items():
        torch.testing.assert_close(result[name], value, rtol=0, atol=1e-12)
    assert_matches(result, engine_stats(probs, labels, 20))


def test_forward_returns_the_batch_and_accumulates():
    probs, labels = softmax_batch(7, batch=4)
    metric = MarginalCalibrationError(3)
    first = metric(torch.from_numpy(probs[:2]), torch.from_numpy(labels[:2]))
    assert_matches(first, engine_stats(probs[:2], labels[:2], 20))
    metric(torch.from_numpy(probs[2:]), torch.from_numpy(labels[2:]))
    assert_matches(metric.compute(), engine_stats(probs, labels, 20))
    metric.reset()
    assert int(metric.count.sum()) == 0
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert torch.isnan(metric.compute()["ace_macro"]).all()


def test_summed_states_of_two_metrics_equal_one_metric():
    """What ``dist_reduce_fx="sum"`` does under DDP: each rank's states are added."""
    probs, labels = softmax_batch(8, batch=5)
    rank0, rank1, single = (MarginalCalibrationError(3) for _ in range(3))
    run(rank0, probs[:2], labels[:2])
    run(rank1, probs[2:], labels[2:])
    run(single, probs, labels)
    for name in STATES:
        assert rank0._reductions[name] is torchmetrics.utilities.dim_zero_sum
        setattr(rank0, name, getattr(rank0, name) + getattr(rank1, name))
    rank0._computed = None
    for name, value in single.compute().items():
        torch.testing.assert_close(rank0.compute()[name], value, rtol=0, atol=1e-12)


def _ddp_worker(rank, world_size, init_file, probs, labels, out_file):
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        metric = MarginalCalibrationError(3)
        for b in range(rank, len(probs), world_size):  # uneven shares: 3 and 2 images
            metric.update(torch.from_numpy(probs[b : b + 1]), torch.from_numpy(labels[b : b + 1]))
        result = metric.compute()  # syncs (sums) the states across ranks
        if rank == 0:
            torch.save({k: v.clone() for k, v in result.items()}, out_file)
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_run_equals_one_process(tmp_path):
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available")
    probs, labels = softmax_batch(9, batch=5)
    out_file = tmp_path / "rank0.pt"
    mp.spawn(
        _ddp_worker, args=(2, str(tmp_path / "init"), probs, labels, str(out_file)),
        nprocs=2, join=True,
    )
    distributed = torch.load(out_file)
    single = run(MarginalCalibrationError(3), probs, labels)
    for name, value in single.items():
        torch.testing.assert_close(distributed[name], value, rtol=0, atol=1e-12)
    assert_matches(distributed, engine_stats(probs, labels, 20))


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("preds_shape", "target_shape", "message"),
    [
        ((2, 3, 4, 4), (2, 4, 4, 4), "expected a label map"),
        ((2, 3, 4, 4), (1, 4, 4), "expected a label map"),
        ((2, 4, 4, 4), (2, 4, 4), "num_classes=3"),
        ((2, 3), (2,), "num_classes=3|at least one spatial axis"),
    ],
)
def test_shape_errors(preds_shape, target_shape, message):
    metric = MarginalCalibrationError(3)
    with pytest.raises(ValueError, match=message):
        metric.update(torch.full(preds_shape, 1 / 3), torch.zeros(target_shape, dtype=torch.long))


@pytest.mark.parametrize(
    ("value", "message"),
    [(float("nan"), "non-finite"), (float("inf"), "non-finite"), (1.002, "range over"),
     (-0.002, "range over")],
)
def test_bad_probabilities_raise(value, message):
    probs = torch.full((1, 2, 3, 3), 0.5)
    probs[0, 1, 1, 1] = value
    with pytest.raises(ValueError, match=message):
        MarginalCalibrationError(2).update(probs, torch.zeros(1, 3, 3, dtype=torch.long))


def test_bad_targets_and_arguments_raise():
    probs = torch.full((1, 2, 3, 3), 0.5)
    metric = MarginalCalibrationError(2)
    with pytest.raises(ValueError, match=r"label values \[2\] outside 0..1"):
        metric.update(probs, torch.full((1, 3, 3), 2))
    with pytest.raises(ValueError, match="only 0 and 1"):
        metric.update(probs, torch.full((1, 2, 3, 3), 0.5))
    with pytest.raises(ValueError, match="integer class values"):
        metric.update(probs, torch.full((1, 3, 3), 0.5))
    with pytest.raises(ValueError, match="NaN or infinite"):
        MarginalCalibrationError(2, softmax=True).update(
            torch.full((1, 2, 3, 3), float("nan")), torch.zeros(1, 3, 3, dtype=torch.long)
        )
    with pytest.raises(TypeError, match="floating-point"):
        metric.update(torch.zeros((1, 2, 3, 3), dtype=torch.long), torch.zeros(1, 3, 3))
    assert int(metric.count.sum()) == 0  # nothing was added by the failed updates
    with pytest.raises(ValueError, match="num_classes"):
        MarginalCalibrationError(0)
    with pytest.raises(ValueError, match="n_bins"):
        MarginalCalibrationError(2, n_bins=0)
    with pytest.raises(ValueError, match="closure"):
        MarginalCalibrationError(2, closure="both")
    with pytest.raises(ValueError, match="at least two classes"):
        MarginalCalibrationError(1, include_background=False)


def test_empty_batch_is_a_clear_error_and_adds_nothing():
    metric = MarginalCalibrationError(3)
    with pytest.raises(ValueError, match=r"preds has an empty batch \(shape \(0, 3, 4, 4\)\)"):
        metric.update(torch.full((0, 3, 4, 4), 1 / 3), torch.zeros(0, 4, 4, dtype=torch.long))
    assert int(metric.count.sum()) == 0


def test_validation_is_one_synchronisation(monkeypatch):
    calls = count_host_transfers(monkeypatch)
    probs, labels = softmax_batch(3)
    for target in (torch.from_numpy(labels).float(), torch.from_numpy(one_hot_of(labels, 3))):
        calls.clear()
        MarginalCalibrationError(3).update(torch.from_numpy(probs), target)
        assert len(calls) == 1, calls


def one_hot_of(labels, n_classes):
    return (labels[:, None] == np.arange(n_classes).reshape(1, -1, *[1] * (labels.ndim - 1)))


# --------------------------------------------------------------------------- packaging
def test_module_uses_the_real_torchmetrics():
    import calibviz.torchmetrics as ours

    assert ours.Metric is torchmetrics.Metric
    assert "site-packages" in torchmetrics.__file__ or "calibviz" not in torchmetrics.__file__
    assert issubclass(MarginalCalibrationError, torchmetrics.Metric)


def test_import_calibviz_loads_no_torch():
    code = (
        "import sys, calibviz; "
        "loaded = [m for m in ('torch', 'torchmetrics', 'monai', 'ignite') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none visible)")
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_cuda_equals_engine(dtype):
    probs, labels = edge_batch(10, 20, dtype, batch=4, n_classes=3, spatial=(40, 30, 6))
    metric = MarginalCalibrationError(3).to("cuda")
    for part in (slice(0, 1), slice(1, 4)):
        metric.update(
            torch.from_numpy(probs[part]).cuda(), torch.from_numpy(labels[part]).cuda()
        )
    assert metric.count.device.type == "cuda"
    result = metric.compute()
    assert all(value.device.type == "cuda" for value in result.values())
    assert_matches(result, engine_stats(probs, labels, 20))
    # a CPU metric fed CUDA tensors bins on the GPU and adds the sums on the CPU
    on_cpu = MarginalCalibrationError(3)
    on_cpu.update(torch.from_numpy(probs).cuda(), torch.from_numpy(labels).cuda())
    assert_matches(on_cpu.compute(), engine_stats(probs, labels, 20))


def test_softmax_one_hot_voxels_without_class_are_refused():
    """softmax=True: every voxel has one class, so a one-hot voxel with no positive channel
    (a padded or masked one-hot) is refused instead of scored as negative for every class;
    without softmax, probabilities summing to 1 in every voxel say the same; others are
    multi-label, where an all-zero voxel is a "no region" outcome."""
    probs, labels = softmax_batch(40, dtype=np.float32)
    onehot = np.stack([labels == c for c in range(3)], axis=1).astype(np.float32)
    onehot[:, :, :2] = 0
    logits = np.log(probs)
    with pytest.raises(ValueError, match="no positive channel.*have no class"):
        run(MarginalCalibrationError(3, softmax=True), logits, onehot)
    run(MarginalCalibrationError(3, softmax=True, validate_args=False), logits, onehot)
    with pytest.raises(ValueError, match="sum to 1 in every voxel.*have no class"):
        run(MarginalCalibrationError(3), probs, onehot)  # softmax probabilities
    multi = np.clip(probs * 1.5, 0, 1).astype(np.float32)  # multi-label probabilities
    result = run(MarginalCalibrationError(3), multi, onehot)
    assert_matches(result, engine_stats(multi, onehot.astype(bool), 20))
