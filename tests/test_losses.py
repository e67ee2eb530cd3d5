"""calibviz.losses: values equal calibviz's ACE, gradients are right, training helps."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import calibviz  # noqa: E402
from calibviz.losses import (  # noqa: E402
    DiceLoss,
    HardL1ACEAndDiceCELoss,
    HardL1ACELoss,
    SoftL1ACEAndDiceCELoss,
    SoftL1ACELoss,
    binned_calibration,
    torch_bin_edges,
)

from .conftest import count_host_transfers, softmax_batch  # noqa: E402

LOSSES = {"hard": HardL1ACELoss, "soft": SoftL1ACELoss}


def softmax_case(seed, batch=2, n_classes=3, spatial=(6, 7, 5), dtype=np.float32):
    return softmax_batch(seed, batch, n_classes, spatial, dtype)


def expected_ace(probs, labels, binning, **options):
    """float64 ``[B, C]`` from calibviz's own binning kernel and metric."""
    return np.stack([
        calibviz.ace(calibviz.bin_image(p, y, binning=binning, **options,
                                        **({"outcomes": True} if y.shape == p.shape else {})))
        for p, y in zip(probs, labels, strict=True)
    ])


def edge_heavy_probs(rng, shape, n_bins, dtype):
    """Probabilities with many values exactly on the edges k/B (in ``dtype``), 0 and 1."""
    edges = calibviz.bin_edges(n_bins, dtype).astype(dtype)
    probs = rng.random(shape).astype(dtype)
    on_edge = rng.random(shape) < 0.4
    probs[on_edge] = rng.choice(edges, size=int(on_edge.sum()))
    return probs


# --------------------------------------------------------------------------- values
@pytest.mark.parametrize("binning", ["hard", "soft"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_equals_calibviz_ace_on_softmax_probabilities(binning, dtype):
    probs, labels = softmax_case(0, dtype=dtype)
    loss = LOSSES[binning](reduction="none")
    got = loss(torch.from_numpy(probs), torch.from_numpy(labels))
    assert got.shape == (2, 3) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected_ace(probs, labels, binning), atol=1e-6)
    mean = LOSSES[binning]()(torch.from_numpy(probs), torch.from_numpy(labels))
    assert abs(mean.item() - expected_ace(probs, labels, binning).mean()) < 1e-6


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("n_bins", [5, 20])
def test_hard_bins_right_closed_on_exact_edges(dtype, n_bins):
    rng = np.random.default_rng(1)
    probs = edge_heavy_probs(rng, (2, 2, 40), n_bins, dtype)
    labels = rng.integers(0, 2, size=(2, 40))
    got = HardL1ACELoss(n_bins, reduction="none")(torch.from_numpy(probs), torch.from_numpy(labels))
    np.testing.assert_allclose(
        got.numpy(), expected_ace(probs, labels, "hard", n_bins=n_bins), atol=1e-6
    )


def test_reference_vector_with_five_bins():
    # 0.2, 0.4, 0.6, 0.8 fall in bins 0..3 and bin 4 stays empty (spec §2)
    probs = torch.tensor([[[0.2, 0.4, 0.6, 0.8]]], dtype=torch.float32)
    count, residual = binned_calibration(probs, torch.zeros_like(probs, dtype=torch.bool), n_bins=5)
    assert count[0, 0].tolist() == [1, 1, 1, 1, 0]
    np.testing.assert_allclose(residual[0, 0].numpy(), [0.2, 0.4, 0.6, 0.8, 0], rtol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_edges_are_rounded_to_the_input_precision(dtype):
    edges = torch_bin_edges(20, dtype)
    assert edges.dtype == dtype
    exact = torch.arange(21, dtype=torch.float64) / 20
    assert torch.equal(edges, exact.to(dtype))
    if dtype != torch.bfloat16:
        np_dtype = {torch.float16: np.float16, torch.float32: np.float32}.get(dtype, np.float64)
        np.testing.assert_array_equal(edges.double().numpy(), calibviz.bin_edges(20, np_dtype))


def test_soft_binning_with_empty_weight_threshold():
    rng = np.random.default_rng(2)
    # few voxels: many bins have soft weight below the threshold
    probs = rng.random((2, 2, 12))
    labels = rng.integers(0, 2, size=(2, 12))
    for empty_weight in (0.01, 0.3):
        got = SoftL1ACELoss(10, empty_weight=empty_weight, reduction="none")(
            torch.from_numpy(probs), torch.from_numpy(labels)
        )
        expected = expected_ace(probs, labels, "soft", n_bins=10, empty_weight=empty_weight)
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)
    a = SoftL1ACELoss(10, empty_weight=0.01, reduction="none")(
        torch.from_numpy(probs), torch.from_numpy(labels))
    b = SoftL1ACELoss(10, empty_weight=0.3, reduction="none")(
        torch.from_numpy(probs), torch.from_numpy(labels))
    assert not torch.allclose(a, b)


def test_soft_weights_split_between_centres():
    # 5 bins, centres 0.1 0.3 0.5 0.7 0.9: 0.05 -> all to bin 0, 0.35 -> 3/4 bin 1, 1/4 bin 2,
    # 0.95 -> all to bin 4
    probs = torch.tensor([[[0.05, 0.35, 0.95]]], dtype=torch.float64)
    weight, _ = binned_calibration(
        probs, torch.zeros_like(probs, dtype=torch.bool), n_bins=5, binning="soft"
    )
    np.testing.assert_allclose(weight[0, 0].numpy(), [1, 0.75, 0.25, 0, 1], atol=1e-12)


def test_soft_with_a_single_bin():
    probs, labels = softmax_case(3, spatial=(20,), dtype=np.float64)
    got = SoftL1ACELoss(1, reduction="none")(torch.from_numpy(probs), torch.from_numpy(labels))
    expected = expected_ace(probs, labels, "soft", n_bins=1)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("binning", ["hard", "soft"])
def test_logits_with_softmax_and_sigmoid(binning):
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(2, 3, 50)) * 2
    labels = rng.integers(0, 3, size=(2, 50))
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    got = LOSSES[binning](softmax=True, reduction="none")(
        torch.from_numpy(logits), torch.from_numpy(labels))
    np.testing.assert_allclose(got.numpy(), expected_ace(softmax, labels, binning), atol=1e-6)
    # sigmoid with multi-label (overlapping) one-hot targets
    multi = rng.random((2, 3, 50)) < 0.3
    sigmoid = 1 / (1 + np.exp(-logits))
    got = LOSSES[binning](sigmoid=True, reduction="none")(
        torch.from_numpy(logits), torch.from_numpy(multi))
    np.testing.assert_allclose(got.numpy(), expected_ace(sigmoid, multi, binning), atol=1e-6)


@pytest.mark.parametrize("binning", ["hard", "soft"])
def test_one_hot_and_label_map_targets_agree(binning):
    probs, labels = softmax_case(5, dtype=np.float64)
    p = torch.from_numpy(probs)
    lab = torch.from_numpy(labels)
    one_hot = torch.nn.functional.one_hot(lab, 3).movedim(-1, 1)
    loss = LOSSES[binning](reduction="none")
    reference = loss(p, lab)
    for target in (lab[:, None], one_hot, one_hot.bool(), one_hot.float(), lab.float()):
        torch.testing.assert_close(loss(p, target), reference, rtol=0, atol=1e-15)


# --------------------------------------------------------------------------- options
@pytest.mark.parametrize("binning", ["hard", "soft"])
def test_include_background_drops_channel_zero(binning):
    probs, labels = softmax_case(6, dtype=np.float64)
    p, y = torch.from_numpy(probs), torch.from_numpy(labels)
    full = LOSSES[binning](reduction="none")(p, y)
    without = LOSSES[binning](include_background=False, reduction="none")(p, y)
    assert without.shape == (2, 2)
    torch.testing.assert_close(without, full[:, 1:])
    mean = LOSSES[binning](include_background=False)(p, y)
    torch.testing.assert_close(mean, full[:, 1:].mean())


def test_include_background_with_one_channel_warns_and_scores_it():
    p = torch.rand(2, 1, 30, dtype=torch.float64)
    y = torch.rand(2, 1, 30) < 0.5
    with pytest.warns(UserWarning, match="include_background"):
        loss = HardL1ACELoss(include_background=False, reduction="none")(p, y)
    assert loss.shape == (2, 1)


@pytest.mark.parametrize("binning", ["hard", "soft"])
def test_reductions_and_class_weights(binning):
    probs, labels = softmax_case(7, dtype=np.float64)
    p, y = torch.from_numpy(probs), torch.from_numpy(labels)
    none = LOSSES[binning](reduction="none")(p, y)
    torch.testing.assert_close(LOSSES[binning](reduction="sum")(p, y), none.sum())
    torch.testing.assert_close(LOSSES[binning](reduction="mean")(p, y), none.mean())
    w = torch.tensor([0.0, 1.0, 3.0])
    weighted = LOSSES[binning](weight=w, reduction="none")(p, y)
    torch.testing.assert_close(weighted, none * w.double())
    torch.testing.assert_close(LOSSES[binning](weight=w, reduction="sum")(p, y), (none * w).sum())
    mean = LOSSES[binning](weight=w)(p, y)
    torch.testing.assert_close(mean, (none * w).sum() / (2 * w.sum()).double())


@pytest.mark.parametrize("binning", ["hard", "soft"])
def test_ignore_empty_classes(binning):
    probs, labels = softmax_case(8, dtype=np.float64)
    labels[0][labels[0] == 2] = 1  # class 2 absent from image 0
    p = torch.from_numpy(probs).requires_grad_(True)
    y = torch.from_numpy(labels)
    full = LOSSES[binning](ignore_empty_classes=False, reduction="none")(p, y)
    assert full[0, 2] > 0  # scored against an all-zero outcome when asked (spec §5)
    loss = LOSSES[binning](ignore_empty_classes=True, reduction="none")
    ignored = loss(p, y)
    assert ignored[0, 2] == 0
    counted = torch.ones(2, 3, dtype=torch.bool)
    counted[0, 2] = False
    torch.testing.assert_close(ignored[counted], full[counted])
    mean = LOSSES[binning](ignore_empty_classes=True)(p, y)
    torch.testing.assert_close(mean, full[counted].mean())
    mean.backward()
    assert torch.isfinite(p.grad).all()
    assert torch.all(p.grad[0, 2] == 0)


@pytest.mark.parametrize("binning", ["hard", "soft"])
def test_empty_classes_are_ignored_by_default_as_in_the_paper(binning):
    probs, labels = softmax_case(8, dtype=np.float64)
    labels[0][labels[0] == 2] = 1  # class 2 absent from image 0
    p, y = torch.from_numpy(probs), torch.from_numpy(labels)
    assert LOSSES[binning]().ignore_empty_classes is True
    assert LOSSES[binning]().empty_denominator == "nonempty"
    assert LOSSES[binning](reduction="none")(p, y)[0, 2] == 0
    expected = expected_ace(probs, labels, binning)
    mean = LOSSES[binning]()(p, y)
    assert mean.item() == pytest.approx(np.delete(expected.ravel(), 2).mean(), abs=1e-12)
    combo = {"hard": HardL1ACEAndDiceCELoss, "soft": SoftL1ACEAndDiceCELoss}[binning]
    assert combo().ace.ignore_empty_classes is True


@pytest.mark.parametrize("binning", ["hard", "soft"])
def test_reference_denominator_keeps_empty_pairs(binning):
    """empty_denominator="all": Σ_b,c w_c·1[class c present in b]·ACE_bc / Σ_b,c w_c — the
    reference multiplies an empty pair by 0 but keeps it in the mean's denominator."""
    probs, labels = softmax_case(8, dtype=np.float64)
    labels[0][labels[0] == 2] = 1  # class 2 absent from image 0
    p, y = torch.from_numpy(probs), torch.from_numpy(labels)
    expected = expected_ace(probs, labels, binning)  # [2, 3]
    present = np.array([[True, True, False], [True, True, True]])
    by_hand = (expected * present).sum() / 6  # 6 pairs, 5 of them present
    got = LOSSES[binning](empty_denominator="all")(p, y)
    assert got.item() == pytest.approx(by_hand, abs=1e-12)
    default = LOSSES[binning]()(p, y)
    assert default.item() == pytest.approx((expected * present).sum() / 5, abs=1e-12)
    w = np.array([0.5, 1.0, 2.0])
    weighted = LOSSES[binning](empty_denominator="all", weight=w.tolist())(p, y)
    by_hand_w = (expected * present * w).sum() / (2 * w.sum())
    assert weighted.item() == pytest.approx(by_hand_w, abs=1e-12)
    # the options of reduction "none"/"sum" are unaffected
    for reduction in ("none", "sum"):
        torch.testing.assert_close(
            LOSSES[binning](empty_denominator="all", reduction=reduction)(p, y),
            LOSSES[binning](reduction=reduction)(p, y),
        )
    # with ignore_empty_classes=False nothing is empty: both denominators agree
    torch.testing.assert_close(
        LOSSES[binning](ignore_empty_classes=False, empty_denominator="all")(p, y),
        LOSSES[binning](ignore_empty_classes=False)(p, y),
    )
    combo = {"hard": HardL1ACEAndDiceCELoss, "soft": SoftL1ACEAndDiceCELoss}[binning]
    zero = {"dice_weight": 0.0, "ce_weight": 0.0, "ace_weight": 1.0}
    got = combo(empty_denominator="all", **zero)(p, y)
    assert got.item() == pytest.approx(by_hand, abs=1e-12)
    with pytest.raises(ValueError, match="empty_denominator"):
        LOSSES[binning](empty_denominator="some")


def test_everything_ignored_gives_zero_with_a_gradient():
    p = torch.rand(1, 2, 10, dtype=torch.float64, requires_grad=True)
    y = torch.zeros(1, 2, 10, dtype=torch.bool)
    loss = HardL1ACELoss(ignore_empty_classes=True)(p, y)
    assert loss.item() == 0
    loss.backward()
    assert torch.equal(p.grad, torch.zeros_like(p))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("binning", ["hard", "soft"])
def test_half_precision_inputs_accumulate_in_float64(dtype, binning):
    probs, labels = softmax_case(9, spatial=(400,), dtype=np.float64)
    half = torch.from_numpy(probs).to(dtype).requires_grad_(True)
    loss = LOSSES[binning](reduction="none")(half, torch.from_numpy(labels))
    assert loss.dtype == torch.float64
    if dtype == torch.float16:  # calibviz reads float16 maps with float16 edges
        expected = expected_ace(half.detach().numpy(), labels, binning)
        np.testing.assert_allclose(loss.detach().numpy(), expected, atol=1e-6)
    else:  # bfloat16 values are exact in float32, edges rounded to bfloat16
        exact = LOSSES[binning](reduction="none")(half.detach().float(), torch.from_numpy(labels))
        assert (loss - exact).abs().max() < 0.05
    loss.sum().backward()
    assert half.grad.dtype == dtype and torch.isfinite(half.grad.float()).all()
    f32 = LOSSES[binning](accumulate_dtype=torch.float32, reduction="none")(
        half.detach(), torch.from_numpy(labels))
    assert f32.dtype == torch.float32
    torch.testing.assert_close(f32.double(), loss.detach(), atol=1e-5, rtol=0)


def test_bad_arguments_raise_clear_errors():
    p = torch.rand(2, 3, 8)
    with pytest.raises(ValueError, match="at most one"):
        HardL1ACELoss(softmax=True, sigmoid=True)
    with pytest.raises(ValueError, match="reduction"):
        HardL1ACELoss(reduction="max")
    with pytest.raises(ValueError, match="n_bins"):
        SoftL1ACELoss(0)
    with pytest.raises(ValueError, match="target has shape"):
        HardL1ACELoss()(p, torch.zeros(2, 4, 8))
    with pytest.raises(ValueError, match="weight has 2 entries"):
        HardL1ACELoss(weight=[1, 2])(p, torch.zeros(2, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="non-negative"):
        HardL1ACELoss(weight=[1, -2, 1])
    with pytest.raises(ValueError, match="integer class values"):
        HardL1ACELoss()(p, torch.full((2, 8), 0.5))
    with pytest.raises(ValueError, match="softmax=True needs"):
        HardL1ACELoss(softmax=True)(torch.rand(2, 1, 8), torch.zeros(2, 8, dtype=torch.long))
    with pytest.raises(TypeError, match="floating-point"):
        HardL1ACELoss()(torch.ones(2, 3, 8, dtype=torch.long), torch.zeros(2, 8, dtype=torch.long))


# --------------------------------------------------------------------------- gradients
def away_from_edges_and_centres(rng, shape, n_bins, margin=0.05):
    """float64 probabilities at least ``margin`` bin widths from every bin edge and centre."""
    k = rng.integers(0, n_bins, size=shape)
    u = rng.uniform(margin, 0.5 - margin, size=shape) + 0.5 * rng.integers(0, 2, size=shape)
    return (k + u) / n_bins


def test_hard_gradcheck_away_from_edges():
    rng = np.random.default_rng(10)
    p = torch.from_numpy(away_from_edges_and_centres(rng, (2, 2, 4, 5), 5)).requires_grad_(True)
    y = torch.from_numpy(rng.integers(0, 2, size=(2, 4, 5)))
    loss = HardL1ACELoss(5, reduction="none")
    assert torch.autograd.gradcheck(lambda q: loss(q, y), (p,), eps=1e-6, atol=1e-8)
    # through a sigmoid of logits placed away from the edges
    logits = torch.logit(p.detach()).requires_grad_(True)
    sig = HardL1ACELoss(5, sigmoid=True, weight=[1.0, 2.0])
    onehot = torch.nn.functional.one_hot(y, 2).movedim(-1, 1)
    assert torch.autograd.gradcheck(lambda q: sig(q, onehot), (logits,), eps=1e-6, atol=1e-8)


def test_soft_gradcheck_away_from_centres():
    rng = np.random.default_rng(11)
    p = torch.from_numpy(away_from_edges_and_centres(rng, (2, 3, 4, 5), 4)).requires_grad_(True)
    y = torch.from_numpy(rng.integers(0, 3, size=(2, 4, 5)))
    loss = SoftL1ACELoss(4, reduction="none")
    assert torch.autograd.gradcheck(lambda q: loss(q, y), (p,), eps=1e-6, atol=1e-8)
    logits = torch.log(p.detach()).requires_grad_(True)
    sm = SoftL1ACELoss(4, softmax=True)
    assert torch.autograd.gradcheck(lambda q: sm(q, y), (logits,), eps=1e-6, atol=1e-8)


def test_hard_gradient_is_sign_over_bin_count():
    """Analytic gradient from calibviz's BinStats: sign(p̄_k − ȳ_k) / (n_k · K · B · C)."""
    rng = np.random.default_rng(12)
    probs = away_from_edges_and_centres(rng, (2, 3, 60), 10)
    labels = rng.integers(0, 3, size=(2, 60))
    p = torch.from_numpy(probs).requires_grad_(True)
    HardL1ACELoss(10)(p, torch.from_numpy(labels)).backward()
    expected = np.zeros_like(probs)
    for b in range(2):
        stats = calibviz.bin_image(probs[b], labels[b], n_bins=10)
        sign = np.sign(stats.mean_confidence - stats.frequency)
        n_nonempty = stats.nonempty.sum(axis=1)
        for c in range(3):
            k = np.searchsorted(stats.edges[1:-1], probs[b, c], side="left")
            expected[b, c] = sign[c, k] / (stats.count[c, k] * n_nonempty[c] * 2 * 3)
    np.testing.assert_allclose(p.grad.numpy(), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("binning", ["hard", "soft"])
def test_finite_difference_of_one_voxel(binning):
    rng = np.random.default_rng(13)
    probs = away_from_edges_and_centres(rng, (1, 2, 50), 8)
    labels = torch.from_numpy(rng.integers(0, 2, size=(1, 50)))
    loss = LOSSES[binning](8)
    p = torch.from_numpy(probs).requires_grad_(True)
    loss(p, labels).backward()
    h = 1e-7
    for voxel in (0, 17, 42):
        plus, minus = probs.copy(), probs.copy()
        plus[0, 1, voxel] += h
        minus[0, 1, voxel] -= h
        slope = (
            loss(torch.from_numpy(plus), labels) - loss(torch.from_numpy(minus), labels)
        ).item() / (2 * h)
        assert p.grad[0, 1, voxel].item() == pytest.approx(slope, rel=1e-5, abs=1e-9)
        assert slope != 0


# --------------------------------------------------------------------------- combinations
@pytest.mark.parametrize("combo,single", [
    (HardL1ACEAndDiceCELoss, HardL1ACELoss), (SoftL1ACEAndDiceCELoss, SoftL1ACELoss)
])
def test_ace_dice_ce_combination(combo, single):
    rng = np.random.default_rng(14)
    logits = torch.from_numpy(rng.normal(size=(2, 3, 5, 6))).requires_grad_(True)
    y = torch.from_numpy(rng.integers(0, 3, size=(2, 5, 6)))
    probs = torch.softmax(logits.detach(), 1)
    onehot = torch.nn.functional.one_hot(y, 3).movedim(-1, 1).double()
    dice = (1 - (2 * (probs * onehot).sum((2, 3)) + 1e-5)
            / (probs.sum((2, 3)) + onehot.sum((2, 3)) + 1e-5))
    ce = torch.nn.functional.cross_entropy(logits.detach(), y)
    ace = single(softmax=True)(logits.detach(), y)
    total = combo(softmax=True)(logits, y)
    torch.testing.assert_close(total, (ace + dice.mean() + ce) / 3)
    weighted = combo(softmax=True, ace_weight=2.0, dice_weight=0.0, ce_weight=0.5)
    torch.testing.assert_close(weighted(logits, onehot), 2 * ace + 0.5 * ce)
    no_bg = combo(softmax=True, include_background=False)(logits, y)
    ace_fg = single(softmax=True, include_background=False)(logits.detach(), y)
    torch.testing.assert_close(no_bg, (ace_fg + dice[:, 1:].mean() + ce) / 3)
    total.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_combination_with_sigmoid_and_probabilities():
    rng = np.random.default_rng(15)
    logits = torch.from_numpy(rng.normal(size=(2, 2, 30)))
    multi = torch.from_numpy(rng.random((2, 2, 30)) < 0.4)
    total = HardL1ACEAndDiceCELoss(sigmoid=True)(logits, multi)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, multi.double())
    ace = HardL1ACELoss(sigmoid=True)(logits, multi)
    dice = DiceLoss(sigmoid=True)(logits, multi)
    torch.testing.assert_close(total, (ace + dice + bce) / 3)
    probs = torch.softmax(logits, 1)
    y = multi[:, 0].long()
    from_probs = HardL1ACEAndDiceCELoss()(probs, y)
    from_logits = HardL1ACEAndDiceCELoss(softmax=True)(logits, y)
    torch.testing.assert_close(from_probs, from_logits)
    with pytest.raises(TypeError):
        HardL1ACEAndDiceCELoss(empty_weight=0.1)  # hard binning has no empty weight
    SoftL1ACEAndDiceCELoss(empty_weight=0.1)


# --------------------------------------------------------------------------- training
def _synthetic(generator, n_images, size=48):
    """One feature per voxel; the true P(y = 1 | x) = sigmoid(2 tanh(3x)) saturates, so a
    linear (1×1 conv) model trained with cross-entropy alone is miscalibrated."""
    x = torch.randn(n_images, 1, size, size, generator=generator)
    truth = torch.sigmoid(2 * torch.tanh(3 * x))
    y = (torch.rand(truth.shape, generator=generator) < truth).long()[:, 0]
    return x, y


def _held_out_ace(extra_loss, seed=0, steps=100):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead on a busy machine
    try:
        return _train_and_score(extra_loss, seed, steps)
    finally:
        torch.set_num_threads(threads)


def _train_and_score(extra_loss, seed, steps):
    generator = torch.Generator().manual_seed(seed)
    x_train, y_train = _synthetic(generator, 4)
    x_test, y_test = _synthetic(generator, 4)
    torch.manual_seed(seed)
    model = torch.nn.Conv2d(1, 2, 1)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.1)
    cross_entropy = torch.nn.CrossEntropyLoss()
    for _ in range(steps):
        optimiser.zero_grad()
        out = model(x_train)
        loss = cross_entropy(out, y_train)
        if extra_loss is not None:
            loss = loss + extra_loss(out, y_train)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        probs = torch.softmax(model(x_test), 1).double().numpy()
    return expected_ace(probs, y_test.numpy(), "hard")[:, 1].mean()


@pytest.mark.parametrize("binning", ["hard", "soft"])
def test_training_with_the_loss_improves_held_out_calibration(binning):
    baseline = _held_out_ace(None)
    with_loss = _held_out_ace(LOSSES[binning](softmax=True))
    assert with_loss < 0.95 * baseline, (with_loss, baseline)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("binning", ["hard", "soft"])
def test_cuda_matches_cpu(binning):
    probs, labels = softmax_case(16, dtype=np.float32)
    losses = {}
    for device in ("cpu", "cuda"):
        p = torch.from_numpy(probs).to(device).requires_grad_(True)
        loss = LOSSES[binning](reduction="none")(p, torch.from_numpy(labels).to(device))
        loss.sum().backward()
        losses[device] = (loss.detach().cpu(), p.grad.cpu())
    torch.testing.assert_close(losses["cuda"][0], losses["cpu"][0], rtol=0, atol=1e-12)
    torch.testing.assert_close(losses["cuda"][1], losses["cpu"][1], rtol=1e-5, atol=1e-9)


# --------------------------------------------------------------------------- bad input
ALL_LOSSES = [HardL1ACELoss, SoftL1ACELoss, DiceLoss, HardL1ACEAndDiceCELoss,
              SoftL1ACEAndDiceCELoss]


@pytest.mark.parametrize("loss_class", ALL_LOSSES)
@pytest.mark.parametrize("bad", [255, -1, 3, 99])
@pytest.mark.parametrize("label_dtype", [torch.int64, torch.uint8, torch.float32])
def test_label_values_outside_the_channels_are_refused(loss_class, bad, label_dtype):
    if bad < 0 and label_dtype == torch.uint8:
        pytest.skip("uint8 holds no negative labels")
    probs, labels = softmax_case(20)
    target = torch.from_numpy(labels)
    target[:, 0] = bad
    with pytest.raises(ValueError, match=rf"target holds label values \[{bad}\] outside 0..2"):
        loss_class()(torch.from_numpy(probs), target.to(label_dtype))


@pytest.mark.parametrize("binning", ["hard", "soft"])
@pytest.mark.parametrize("ignore", [255, -1])
def test_ignore_index_leaves_voxels_out_as_bin_image_ignore_label(binning, ignore):
    probs, labels = softmax_case(21)
    labels[:, :2] = ignore
    labels[1, 2:, :3] = ignore
    options = {"empty_weight": 0.05} if binning == "soft" else {}
    loss = LOSSES[binning](reduction="none", ignore_index=ignore, **options)
    p = torch.from_numpy(probs).double().requires_grad_(True)
    got = loss(p, torch.from_numpy(labels))
    want = expected_ace(probs, labels, binning, ignore_label=ignore, **options)
    np.testing.assert_allclose(got.detach().numpy(), want, atol=1e-6)
    got.sum().backward()
    ignored = torch.from_numpy(labels == ignore)[:, None].expand_as(p)
    assert torch.isfinite(p.grad).all() and p.grad[ignored].abs().max() == 0
    assert p.grad[~ignored].abs().sum() > 0


def test_ignore_index_in_dice_and_cross_entropy():
    rng = np.random.default_rng(22)
    logits = torch.from_numpy(rng.normal(size=(2, 3, 5, 6)))
    y = torch.from_numpy(rng.integers(0, 3, size=(2, 5, 6)))
    y_ign = y.clone()
    y_ign[0, :2] = 255
    keep = y_ign != 255
    probs = torch.softmax(logits, 1)
    onehot = torch.nn.functional.one_hot(y, 3).movedim(-1, 1).double() * keep[:, None]
    p_kept = probs * keep[:, None]
    dice = (1 - (2 * (p_kept * onehot).sum((2, 3)) + 1e-5)
            / (p_kept.sum((2, 3)) + onehot.sum((2, 3)) + 1e-5))
    got_dice = DiceLoss(softmax=True, ignore_index=255, reduction="none")(logits, y_ign)
    torch.testing.assert_close(got_dice, dice)
    ce = torch.nn.functional.cross_entropy(logits.movedim(1, -1)[keep], y_ign[keep])
    ace = HardL1ACELoss(softmax=True, ignore_index=255)(logits, y_ign)
    total = HardL1ACEAndDiceCELoss(softmax=True, ignore_index=255)(logits, y_ign)
    torch.testing.assert_close(total, (ace + dice.mean() + ce) / 3)
    from_probs = HardL1ACEAndDiceCELoss(ignore_index=255)(probs, y_ign)
    torch.testing.assert_close(from_probs, total)
    # sigmoid: BCE over the kept voxels only, every channel
    sig = HardL1ACEAndDiceCELoss(
        sigmoid=True, ignore_index=255, ace_weight=0, dice_weight=0, ce_weight=1
    )
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        logits.movedim(1, -1)[keep], onehot.movedim(1, -1)[keep]
    )
    torch.testing.assert_close(sig(logits, y_ign), bce)
    # everything ignored: zero loss, finite gradient
    x = logits.clone().requires_grad_(True)
    all_out = HardL1ACEAndDiceCELoss(softmax=True, ignore_index=255)(x, torch.full_like(y, 255))
    all_out.backward()
    assert torch.isfinite(all_out) and torch.isfinite(x.grad).all()


def test_ignore_index_with_one_hot_targets_leaves_voxels_out():
    probs, labels = softmax_case(23, n_classes=2)
    onehot = np.stack([labels == 0, labels == 1], axis=1).astype(np.float32)
    onehot[:, :, :2] = 255
    labels[:, :2] = 255
    got = HardL1ACELoss(reduction="none", ignore_index=255)(
        torch.from_numpy(probs), torch.from_numpy(onehot)
    )
    want = expected_ace(probs, labels, "hard", ignore_label=255)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)


def test_ignore_index_must_not_be_a_class():
    probs, labels = softmax_case(24)
    with pytest.raises(ValueError, match="ignore_index=2 is a class value"):
        HardL1ACELoss(ignore_index=2)(torch.from_numpy(probs), torch.from_numpy(labels))
    with pytest.raises(ValueError, match="ignore_index must be an integer"):
        HardL1ACELoss(ignore_index=2.5)
    with pytest.raises(ValueError, match="ignore_index must be an integer"):
        HardL1ACELoss(ignore_index=True)


@pytest.mark.parametrize("loss_class", ALL_LOSSES)
@pytest.mark.parametrize("scale", [1.5, -1.0])
def test_probabilities_out_of_range_are_refused(loss_class, scale):
    probs, labels = softmax_case(25)
    with pytest.raises(ValueError, match=r"range over .*softmax=True or sigmoid=True"):
        loss_class()(torch.from_numpy(probs) * scale, torch.from_numpy(labels))


@pytest.mark.parametrize("loss_class", ALL_LOSSES)
def test_logits_passed_as_probabilities_are_refused(loss_class):
    rng = np.random.default_rng(26)
    logits = torch.from_numpy(rng.normal(size=(2, 3, 4, 5)) * 3)
    y = torch.from_numpy(rng.integers(0, 3, size=(2, 4, 5)))
    with pytest.raises(ValueError, match="softmax=True"):
        loss_class()(logits, y)
    nan = torch.full((1, 3, 4, 5), 0.3)
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="1 non-finite"):
        loss_class()(nan, y[:1])
    with pytest.raises(ValueError, match=r"input \(logits\) contain NaN"):
        loss_class(softmax=True)(nan, y[:1])
    assert torch.isfinite(loss_class(validate=False)(logits.softmax(1), y))


@pytest.mark.parametrize("binning", ["hard", "soft"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_within_tolerance_are_clipped_as_bin_image(binning, dtype):
    rng = np.random.default_rng(27)
    probs = rng.random((2, 2, 50)).astype(dtype)
    probs[:, :, :6] = np.array([1.0005, -0.0005, 1.0009, -0.0009, 1.0, 0.0], dtype=dtype)
    labels = rng.integers(0, 2, size=(2, 50))
    p = torch.from_numpy(probs).requires_grad_(True)
    got = LOSSES[binning](n_bins=4, reduction="none")(p, torch.from_numpy(labels))
    with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        want = expected_ace(probs, labels, binning, n_bins=4)
    np.testing.assert_allclose(got.detach().numpy(), want, atol=1e-6)
    got.sum().backward()
    assert torch.isfinite(p.grad).all()
    # hand check for the finding's example: clipped gaps (0 + 0.1 + 0) / 3
    one = torch.tensor([[[1.0005, -0.0005, 0.5, 0.3]]], dtype=torch.float64)
    y = torch.tensor([[[1, 0, 1, 0]]])
    assert HardL1ACELoss(n_bins=4)(one, y).item() == pytest.approx(0.1 / 3, abs=1e-15)


@pytest.mark.parametrize("combo", [HardL1ACEAndDiceCELoss, SoftL1ACEAndDiceCELoss])
def test_combination_checks_one_positive_channel_per_voxel(combo):
    probs, labels = softmax_case(28)
    onehot = np.stack([labels == c for c in range(3)], axis=1).astype(np.float32)
    unlabelled = onehot.copy()
    unlabelled[:, :, 0] = 0
    with pytest.raises(ValueError, match="exactly one positive channel"):
        combo()(torch.from_numpy(probs), torch.from_numpy(unlabelled))
    multi = onehot.copy()
    multi[:, :, 0] = 1
    with pytest.raises(ValueError, match="exactly one positive channel"):
        combo(softmax=True)(torch.from_numpy(probs), torch.from_numpy(multi))
    # multi-label targets stay valid for the sigmoid CE and the plain ACE loss
    combo(sigmoid=True)(torch.from_numpy(probs), torch.from_numpy(multi))
    HardL1ACELoss()(torch.from_numpy(probs), torch.from_numpy(multi))
    with pytest.raises(ValueError, match="only 0 and 1"):
        HardL1ACELoss()(torch.from_numpy(probs), torch.from_numpy(onehot * 0.7))


@pytest.mark.parametrize("loss_class", ALL_LOSSES)
def test_empty_batch_and_no_channels_are_clear_errors(loss_class):
    probs, labels = softmax_case(29)
    with pytest.raises(ValueError, match=r"input has an empty batch \(shape \(0, 3, 6, 7, 5\)\)"):
        loss_class()(torch.from_numpy(probs[:0]), torch.from_numpy(labels[:0]))
    with pytest.raises(ValueError, match="input has no channels"):
        loss_class()(torch.from_numpy(probs[:, :0]), torch.from_numpy(labels))


def test_validation_synchronises_once(monkeypatch):
    """One device-to-host transfer per call (counted on the CPU through Tensor.tolist/item)."""
    probs, labels = softmax_case(30)
    calls = count_host_transfers(monkeypatch)
    for loss in (HardL1ACELoss(), SoftL1ACELoss(softmax=True), HardL1ACEAndDiceCELoss()):
        calls.clear()
        loss(torch.from_numpy(probs), torch.from_numpy(labels).float())
        assert len(calls) == 1, (loss, calls)
    calls.clear()
    HardL1ACELoss(validate=False)(torch.from_numpy(probs), torch.from_numpy(labels))
    assert calls == []


def test_soft_loss_with_empty_weight_zero_is_finite():
    probs, labels = softmax_case(31)
    probs = np.round(probs, 1)  # a few values: most of the 40 soft bins get no weight at all
    p = torch.from_numpy(probs).double().requires_grad_(True)
    got = SoftL1ACELoss(empty_weight=0, reduction="none", n_bins=40)(p, torch.from_numpy(labels))
    assert torch.isfinite(got).all()
    # bins of weight 0 are empty whatever the threshold: same value as the smallest threshold
    tiny = SoftL1ACELoss(empty_weight=1e-300, reduction="none", n_bins=40)(
        p.detach(), torch.from_numpy(labels)
    )
    torch.testing.assert_close(got.detach(), tiny, rtol=0, atol=0)
    got.sum().backward()
    assert torch.isfinite(p.grad).all()


def _zero_voxel_targets(seed, ignore=255):
    """Softmax probabilities, a one-hot target with all-zero voxels and the label map with
    ``ignore`` at those voxels."""
    probs, labels = softmax_case(seed)
    onehot = np.stack([labels == c for c in range(3)], axis=1).astype(np.float32)
    onehot[:, :, :2] = 0
    onehot[1, :, 3:, :2] = 0
    marked = labels.copy()
    marked[(onehot == 0).all(axis=1)] = ignore
    return probs, onehot, marked


@pytest.mark.parametrize("loss_class", ALL_LOSSES)
@pytest.mark.parametrize("softmax", [False, True])
@pytest.mark.parametrize("ignore", [255, -1, 7])
def test_one_hot_voxels_without_class_are_left_out_with_ignore_index(loss_class, softmax, ignore):
    probs, onehot, marked = _zero_voxel_targets(31, ignore)
    p = torch.from_numpy(np.log(probs) if softmax else probs)
    loss = loss_class(softmax=softmax, ignore_index=ignore)
    from_onehot = loss(p, torch.from_numpy(onehot))
    from_labels = loss(p, torch.from_numpy(marked))
    assert torch.equal(from_onehot, from_labels)
    for target in (onehot.astype(bool), onehot.astype(np.uint8)):
        assert torch.equal(loss(p, torch.from_numpy(target)), from_labels)
    if loss_class in (HardL1ACELoss, SoftL1ACELoss):
        binning = "hard" if loss_class is HardL1ACELoss else "soft"
        got = loss_class(reduction="none", ignore_index=ignore)(
            torch.from_numpy(probs), torch.from_numpy(onehot))
        want = expected_ace(probs, marked, binning, ignore_label=ignore)
        np.testing.assert_allclose(got.numpy(), want, atol=1e-6)


@pytest.mark.parametrize("loss_class", ALL_LOSSES)
def test_one_hot_voxels_without_class_are_refused_under_softmax(loss_class):
    probs, onehot, _ = _zero_voxel_targets(32)
    with pytest.raises(ValueError, match=r"no positive channel.*have no class.*ignore_index="):
        loss_class(softmax=True)(torch.from_numpy(np.log(probs)), torch.from_numpy(onehot))
    loss_class(softmax=True, validate=False)(  # not checked: scored as negatives, as before
        torch.from_numpy(np.log(probs)), torch.from_numpy(onehot))
    # probabilities that sum to 1 in every voxel are softmax outputs: one class per voxel
    with pytest.raises(ValueError, match=r"no positive channel: such voxels have no class"):
        loss_class()(torch.from_numpy(probs), torch.from_numpy(onehot))
    # multi-label probabilities (not summing to 1): an all-zero voxel is a "no region" outcome
    multi = np.clip(probs * 1.5, 0, 1).astype(np.float32)
    if loss_class not in (HardL1ACEAndDiceCELoss, SoftL1ACEAndDiceCELoss):  # CE: one class
        loss_class()(torch.from_numpy(multi), torch.from_numpy(onehot))


@pytest.mark.parametrize("loss_class", [HardL1ACELoss, SoftL1ACELoss])
def test_multi_label_all_zero_voxels_stay_outcomes_under_sigmoid(loss_class):
    """sigmoid=True: an all-zero voxel is a legitimate "no region" outcome, ignore_index or
    not (ignored voxels are those marked with the value)."""
    rng = np.random.default_rng(33)
    logits = rng.normal(size=(2, 3, 40)) * 2
    multi = (rng.random((2, 3, 40)) < 0.3).astype(np.float32)
    multi[:, :, :5] = 0
    plain = loss_class(sigmoid=True, reduction="none")(
        torch.from_numpy(logits), torch.from_numpy(multi))
    marked = multi.copy()
    marked[:, :, 5:8] = 255
    with_ignore = loss_class(sigmoid=True, reduction="none", ignore_index=255)(
        torch.from_numpy(logits), torch.from_numpy(marked))
    binning = "hard" if loss_class is HardL1ACELoss else "soft"
    sig = 1 / (1 + np.exp(-logits))
    keep = np.ones(40, bool)
    keep[5:8] = False
    np.testing.assert_allclose(plain.numpy(), expected_ace(sig, multi > 0.5, binning), atol=1e-6)
    np.testing.assert_allclose(with_ignore.numpy(), expected_ace(
        sig[:, :, keep], multi[:, :, keep] > 0.5, binning), atol=1e-6)


def test_one_channel_label_map_message_says_how_to_give_the_target():
    """A one-channel (binary) model given a (B, *spatial) 0/1 label map: the message says
    to give the target as (B, 1, *spatial) outcomes, which then equals bin_image."""
    rng = np.random.default_rng(41)
    probs = rng.random((2, 1, 5, 4, 3))
    labels = (rng.random((2, 5, 4, 3)) < probs[:, 0]).astype(np.int64)
    with pytest.raises(ValueError, match=r"with one channel, give the target as "
                                         r"\(B, 1, \*spatial\) 0/1 outcomes"):
        HardL1ACELoss(reduction="none")(torch.from_numpy(probs), torch.from_numpy(labels))
    loss = HardL1ACELoss(reduction="none")(torch.from_numpy(probs),
                                           torch.from_numpy(labels[:, None]))
    np.testing.assert_allclose(loss.numpy().ravel(),
                               expected_ace(probs, labels[:, None], "hard").ravel())
