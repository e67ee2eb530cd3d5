"""The binning kernel equals the naive oracle, on random, edge and odd inputs."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from calibviz import BinAccumulator, bin_edges, bin_image
from calibviz.binning import N_SLOTS

from . import naive

SUM_FIELDS = ("count", "sum_p", "sum_y", "sum_p2", "sum_py", "tp", "fp", "fn", "tn")


def assert_matches_naive(stats, expected, rtol=1e-12):
    for name in SUM_FIELDS:
        np.testing.assert_allclose(
            getattr(stats, name), expected[name], rtol=rtol, atol=1e-9, err_msg=name
        )


def random_case(rng, shape, n_classes, dtype=np.float32):
    logits = rng.normal(size=(n_classes, *shape))
    probs = np.exp(logits) / np.exp(logits).sum(axis=0)
    labels = rng.integers(0, n_classes, size=shape)
    return probs.astype(dtype), labels


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("closure", ["right", "left"])
@pytest.mark.parametrize("shape", [(17, 23), (9, 11, 7)])
def test_random_matches_naive(dtype, closure, shape):
    rng = np.random.default_rng(0)
    probs, labels = random_case(rng, shape, 3, dtype)
    stats = bin_image(probs, labels, n_bins=10, closure=closure)
    assert_matches_naive(stats, naive.naive_bin(probs, labels, n_bins=10, closure=closure))


@pytest.mark.parametrize("n_bins", [1, 2, 5, 10, 20, 50])
@pytest.mark.parametrize("closure", ["right", "left"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_values_exactly_on_every_edge(n_bins, closure, dtype):
    edge_values = np.array([k / n_bins for k in range(n_bins + 1)]).astype(dtype)
    # every edge, and the neighbouring representable numbers on both sides
    values = np.concatenate([
        edge_values,
        np.nextafter(edge_values, dtype(2)).clip(0, 1),
        np.nextafter(edge_values, dtype(-1)).clip(0, 1),
    ]).astype(dtype)
    labels = (np.arange(values.size) % 2).astype(np.int64)
    stats = bin_image(values, labels, n_bins=n_bins, closure=closure)
    expected = naive.naive_bin(values[None], labels, n_bins=n_bins, classes=[1], closure=closure)
    assert_matches_naive(stats, expected)
    # an edge value goes to the lower bin (right-closed) or the upper bin (left-closed)
    for k in range(1, n_bins):
        single = bin_image(edge_values[k : k + 1], labels[:1], n_bins=n_bins, closure=closure)
        assert single.count[0].argmax() == (k - 1 if closure == "right" else k)


def test_zero_and_one_go_to_end_bins():
    for closure in ("right", "left"):
        stats = bin_image(np.array([0.0, 1.0]), np.array([0, 1]), n_bins=4, closure=closure)
        assert stats.count.tolist() == [[1, 0, 0, 1]]


@pytest.mark.parametrize("n_bins", [5, 10, 20, 17])
def test_quantised_k_over_255(n_bins):
    raw = np.arange(256, dtype=np.uint8)
    labels = np.arange(256) % 3 == 0
    stats = bin_image(raw, labels.astype(np.int64), n_bins=n_bins)
    expected = naive.naive_bin(raw[None], labels.astype(np.int64), n_bins=n_bins, classes=[1])
    assert_matches_naive(stats, expected)
    as_float = bin_image(raw / 255.0, labels.astype(np.int64), n_bins=n_bins)
    np.testing.assert_array_equal(stats.count, as_float.count)


def test_uint16_with_scale_matches_float():
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 65536, size=(2, 40, 30)).astype(np.uint16)
    labels = rng.integers(0, 2, size=(40, 30))
    stats = bin_image(raw, labels, n_bins=20, scale=1 / 65535)
    expected = naive.naive_bin(raw, labels, n_bins=20, scale=1 / 65535)
    assert_matches_naive(stats, expected)


def test_mask_and_ignore_label():
    rng = np.random.default_rng(2)
    probs, labels = random_case(rng, (20, 20, 5), 3, np.float32)
    labels[rng.random(labels.shape) < 0.1] = 255
    mask = rng.random(labels.shape) < 0.7
    stats = bin_image(probs, labels, n_bins=20, mask=mask, ignore_label=255)
    expected = naive.naive_bin(probs, labels, n_bins=20, mask=mask, ignore_label=255)
    assert_matches_naive(stats, expected)
    assert stats.n_voxels[0] == np.sum(mask & (labels != 255))


def test_regions_and_boolean_outcomes():
    rng = np.random.default_rng(3)
    labels = rng.choice([0, 1, 2, 4], size=(30, 30))
    regions = [[1, 2, 4], [1, 4], [4]]
    probs = rng.random((3, 30, 30)).astype(np.float32)
    stats = bin_image(probs, labels, regions=regions)
    assert_matches_naive(stats, naive.naive_bin(probs, labels, regions=regions))
    outcomes = np.stack([np.isin(labels, r) for r in regions])
    from_bool = bin_image(probs, outcomes, outcomes=True)  # regions overlap: say so
    assert_matches_naive(from_bool, naive.naive_bin(probs, labels, regions=regions))


@pytest.mark.parametrize("shape", [(15, 13), (8, 9, 10)])
def test_soft_binning_matches_naive(shape):
    rng = np.random.default_rng(4)
    probs, labels = random_case(rng, shape, 3, np.float64)
    probs[0].flat[:5] = [0.0, 1.0, 0.025, 0.975, 0.5]
    stats = bin_image(probs, labels, n_bins=20, binning="soft")
    assert_matches_naive(stats, naive.naive_bin(probs, labels, n_bins=20, binning="soft"))
    # every voxel spreads unit weight
    np.testing.assert_allclose(stats.count.sum(axis=1), np.prod(shape))


def test_streaming_classes_equals_all_at_once():
    rng = np.random.default_rng(5)
    probs, labels = random_case(rng, (31, 29, 11), 4, np.float32)
    mask = rng.random(labels.shape) < 0.8
    whole = bin_image(probs, labels, n_bins=20, mask=mask, class_names=list("abcd"))
    accumulator = BinAccumulator(list("abcd"), n_bins=20, precision=np.float32)
    for c in (2, 0, 3, 1):  # any order
        accumulator.add_class(c, probs[c], labels, label_value=c, mask=mask)
    assert accumulator.result().equals(whole)  # exactly


def test_fortran_ordered_channel_streams_like_c_order():
    rng = np.random.default_rng(6)
    probs, labels = random_case(rng, (16, 12, 6), 2, np.float32)
    accumulator = BinAccumulator(["bg", "fg"], precision=np.float32)
    for c in range(2):
        accumulator.add_class(c, np.asfortranarray(probs[c]), np.asfortranarray(labels),
                              label_value=c)
    np.testing.assert_allclose(
        accumulator.result().sum_p, bin_image(probs, labels).sum_p, rtol=1e-12
    )


def test_independent_of_thread_count():
    rng = np.random.default_rng(7)
    probs, labels = random_case(rng, (64, 64, 40), 3, np.float32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = bin_image(probs, labels)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = bin_image(probs, labels)
    finally:
        numba.set_num_threads(before)
    assert probs[0].size > 8 * 8192  # enough chunks to spread over N_SLOTS
    assert N_SLOTS >= 2
    assert single.equals(many)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=hnp.arrays(np.float64, st.integers(1, 60), elements=st.floats(0, 1)),
    n_bins=st.integers(1, 30),
    closure=st.sampled_from(["right", "left"]),
    binning=st.sampled_from(["hard", "soft"]),
    seed=st.integers(0, 2**16),
)
def test_hypothesis_matches_naive(values, n_bins, closure, binning, seed):
    labels = np.random.default_rng(seed).integers(0, 2, size=values.shape)
    stats = bin_image(values, labels, n_bins=n_bins, closure=closure, binning=binning)
    expected = naive.naive_bin(
        values[None], labels, n_bins=n_bins, classes=[1], closure=closure, binning=binning
    )
    assert_matches_naive(stats, expected, rtol=1e-9)


def test_edges_rounded_to_input_precision():
    assert bin_edges(10, np.float32)[3] == np.float64(np.float32(0.3))
    assert bin_edges(10, np.float64)[3] == 0.3
    assert bin_edges(10, np.uint8)[3] == 0.3
    # a float32 0.3 sits on the float32 edge: right-closed puts it in bin 2
    stats = bin_image(np.array([0.3], dtype=np.float32), np.array([1]), n_bins=10)
    assert stats.count[0].argmax() == 2


def test_clipping_within_tolerance_is_counted():
    stats = bin_image(np.array([-1e-7, 0.2, 1.0000001]), np.array([0, 0, 1]), n_bins=10)
    assert stats.n_clipped.tolist() == [2]
    assert stats.count[0, 0] == 1 and stats.count[0, 9] == 1


@pytest.mark.parametrize(
    ("probs", "labels", "kwargs", "message"),
    [
        (np.array([0.2, 1.3]), np.array([0, 1]), {}, r"range over \[.*1\.3.*expected values"),
        (np.array([0.2, np.nan]), np.array([0, 1]), {}, "non-finite"),
        (np.array([0.2, 0.5]), np.array([0, 1, 1]), {}, "shape"),
        (np.array([0.2, 0.5]), np.array([0.0, 0.5]), {}, "integral"),
        (np.array([0.2, 0.5]), np.array([0, 7]), {}, "no class declares"),
        (np.array([0.2, 0.5]), np.array([0, 1]), {"closure": "middle"}, "closure must be"),
        (np.array([0.2, 0.5]), np.array([0, 1]), {"binning": "fuzzy"}, "binning must be"),
        (np.array([0.2, 0.5]), np.array([0, 1]), {"n_bins": 0}, "n_bins must be"),
        (np.array([3, 5], dtype=np.int32), np.array([0, 1]), {}, "need a scale"),
        (np.array([0.2, 0.5], dtype=np.complex64), np.array([0, 1]), {},
         r"dtype complex64 is not a probability dtype \(expected float or integer\)"),
    ],
)
def test_bad_input_raises_clear_value_error(probs, labels, kwargs, message):
    with pytest.raises(ValueError, match=message):
        bin_image(probs, labels, where="case 0042: ", **kwargs)
    if not any(word in message for word in ("closure", "binning", "n_bins")):
        with pytest.raises(ValueError, match="case 0042"):
            bin_image(probs, labels, where="case 0042: ", **kwargs)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("n_bins", [3, 7, 20, 50])
def test_values_just_around_edges_match_naive(dtype, n_bins):
    """The kernel's fast path (floor of p·B) must hand every near-edge value to the edge rule."""
    rng = np.random.default_rng(n_bins)
    centres = rng.integers(0, n_bins + 1, size=4000) / n_bins
    offsets = rng.choice([-1, 1], size=4000) * 10.0 ** rng.uniform(-12, -2, size=4000)
    values = np.clip(centres + offsets, 0, 1).astype(dtype)
    labels = rng.integers(0, 2, size=values.size)
    for closure in ("right", "left"):
        stats = bin_image(values, labels, n_bins=n_bins, closure=closure)
        expected = naive.naive_bin(values[None], labels, n_bins=n_bins, classes=[1],
                                   closure=closure)
        np.testing.assert_array_equal(stats.count, expected["count"])


@pytest.mark.parametrize("closure", ["right", "left"])
def test_clipped_values_add_exactly_as_their_clipped_value(closure):
    """A value clipped to 0 or 1 adds at its own place among its copy's voxels: the sums equal
    those of the same map with 0 and 1 written in, to the last bit."""
    rng = np.random.default_rng(8)
    near = rng.random(20000) * 0.04
    probs = np.where(rng.random(near.size) < 0.5, near, 1 - near)
    labels = rng.integers(0, 2, size=probs.size)
    out = rng.random(probs.size) < 0.05
    clipped = probs.copy()
    clipped[out] = np.where(probs[out] < 0.5, 0.0, 1.0)
    noisy = clipped.copy()
    noisy[out] = np.where(probs[out] < 0.5, -1e-7, 1 + 1e-7)
    stats = bin_image(noisy, labels, n_bins=20, closure=closure)
    assert stats.n_clipped.tolist() == [int(out.sum())]
    reference = bin_image(clipped, labels, n_bins=20, closure=closure)
    for name in SUM_FIELDS:
        np.testing.assert_array_equal(getattr(stats, name), getattr(reference, name), name)


def test_values_outside_the_mask_are_not_checked():
    probs = np.array([[0.2, np.nan, 7.0, 0.9]])
    labels = np.array([0, 1, 1, 1])
    mask = np.array([True, False, False, True])
    stats = bin_image(probs, labels, classes=[1], mask=mask, n_bins=10)
    expected = naive.naive_bin(probs[:, mask], labels[mask], n_bins=10, classes=[1])
    assert_matches_naive(stats, expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64, np.uint64])
def test_label_dtypes_bin_alike(dtype):
    rng = np.random.default_rng(9)
    probs, labels = random_case(rng, (30, 20, 9), 3, np.float32)
    labels[rng.random(labels.shape) < 0.05] = 7  # ignored
    expected = bin_image(probs, labels.astype(np.int32), ignore_label=7)
    assert bin_image(probs, labels.astype(dtype), ignore_label=7).equals(expected)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_values_outside_give_their_count_and_the_whole_range(dtype):
    """One bad value among many: counted, and the range printed is the map's, not only the
    offending value's; masked voxels are not counted."""
    from calibviz.valuecheck import ValuesOutOfRange

    rng = np.random.default_rng(5)
    probs = rng.uniform(0.1, 0.9, size=(4, 5, 6)).astype(dtype)
    probs[1, 2, 3] = -0.5
    probs[3, 4, 5] = 7.0  # outside the mask
    labels = rng.integers(0, 2, size=probs.shape)
    mask = np.ones(probs.shape, dtype=bool)
    mask[3, 4, 5] = False
    with pytest.raises(ValuesOutOfRange) as caught:
        bin_image(probs, labels, mask=mask, classes=[1])
    message = str(caught.value)
    assert f"1 of {probs.size - 1} values lie outside [0, 1]" in message
    assert "(down to -0.5)" in message and "up to 7" not in message
    assert "range over [-0.5, 7]" in message  # the map's values, masked or not
    assert (caught.value.n_out, caught.value.n_values) == (1, probs.size - 1)
    probs[3, 4, 5] = 0.5
    with pytest.raises(ValuesOutOfRange, match=rf"range over \[-0\.5, "
                                               rf"{float(probs.max()):.6g}\]"):
        bin_image(probs, labels, classes=[1])


@pytest.mark.skipif(np.dtype(np.longdouble).itemsize <= 8, reason="long double is float64")
def test_extended_floats_are_refused_by_name():
    with pytest.raises(ValueError, match=r"is not a probability dtype \(expected float16, "
                                         r"float32 or float64, or integer\)"):
        bin_image(np.array([0.2, 0.5], dtype=np.longdouble), np.array([0, 1]))


# ------------------------------------------------------------------ round 3: BinAccumulator
def _edge_values(n_bins, dtype):
    """Every edge k/B in ``dtype`` and the neighbouring representable values, in [0, 1]."""
    if np.dtype(dtype).kind in "iu":  # quantised k/255: each stored value once
        return np.arange(256, dtype=dtype)
    edge = np.array([k / n_bins for k in range(n_bins + 1)]).astype(dtype)
    return np.concatenate([edge, np.nextafter(edge, dtype(2)).clip(0, 1),
                           np.nextafter(edge, dtype(-1)).clip(0, 1)]).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.uint8])
@pytest.mark.parametrize("closure", ["right", "left"])
@pytest.mark.parametrize("n_bins", [5, 10, 17, 51])
def test_streamed_classes_equal_bin_image_whatever_the_dtype(dtype, closure, n_bins):
    """The accumulator's edges follow the data as in bin_image (spec §2): streamed with the
    defaults, every class equals bin_image on the stacked array and the naive oracle."""
    values = _edge_values(n_bins, dtype)
    rng = np.random.default_rng(n_bins)
    probs = np.stack([values, rng.permutation(values)])
    labels = rng.integers(0, 2, size=values.size)
    whole = bin_image(probs, labels, n_bins=n_bins, closure=closure, class_names=["a", "b"])
    accumulator = BinAccumulator(["a", "b"], n_bins=n_bins, closure=closure)
    for c in (1, 0):
        accumulator.add_class(c, probs[c], labels, label_value=c)
    streamed = accumulator.result()
    assert streamed.equals(whole)
    assert_matches_naive(streamed, naive.naive_bin(probs, labels, n_bins=n_bins,
                                                   closure=closure))
    explicit = BinAccumulator(["a", "b"], n_bins=n_bins, closure=closure, precision=dtype)
    explicit.add_all(probs, labels)
    assert explicit.result().equals(whole)


def test_float64_map_streamed_with_default_accumulator_uses_float64_edges():
    p = np.array([0.2000000001, 0.3])
    y = np.array([1, 0])
    accumulator = BinAccumulator(["fg"], n_bins=5)
    accumulator.add_class(0, p, y, label_value=1)
    expected = naive.naive_bin(p[None], y, n_bins=5, classes=[1])
    assert_matches_naive(accumulator.result(), expected)
    assert accumulator.result().count.tolist() == [[0, 2, 0, 0, 0]]


@pytest.mark.parametrize(("precision", "dtype"), [
    (np.float32, np.float64), (np.float64, np.float32), (np.float16, np.float32),
    (np.float32, np.uint8),
])
def test_precision_that_does_not_fit_the_data_is_refused(precision, dtype):
    accumulator = BinAccumulator(["fg"], n_bins=5, precision=precision, where="case 7: ")
    probs = np.array([0, 51, 102], dtype=dtype) if dtype == np.uint8 else np.array(
        [0.2, 0.4, 0.9], dtype=dtype)
    with pytest.raises(ValueError, match=r"case 7: class 'fg'.*precision"):
        accumulator.add_class(0, probs, np.array([0, 1, 1]), label_value=1)


def test_classes_of_different_dtypes_are_refused():
    accumulator = BinAccumulator(["a", "b"], n_bins=5)
    accumulator.add_class(0, np.array([0.2, 0.6], dtype=np.float32), np.array([0, 1]),
                          label_value=1)
    with pytest.raises(ValueError, match=r"class 'b'.*float64.*float32"):
        accumulator.add_class(1, np.array([0.2, 0.6]), np.array([0, 1]), label_value=1)


def test_input_dtype_names_the_precision_of_derived_values():
    """A float32 sum of float16 channels binned with the float16 input's edges."""
    half = np.array([0.2, 0.4, 0.6], dtype=np.float16)
    accumulator = BinAccumulator(["fg"], n_bins=5, precision=np.float16)
    accumulator.add_class(0, half.astype(np.float32), np.array([0, 1, 1]), label_value=1,
                          input_dtype=np.float16)
    assert accumulator.result().equals(bin_image(half, np.array([0, 1, 1]), n_bins=5,
                                                 class_names=["fg"]))


def test_class_added_twice_is_refused():
    p, y = np.array([0.2, 0.2, 0.6, 0.9], dtype=np.float32), np.array([0, 1, 1, 1])
    accumulator = BinAccumulator(["bg", "fg"], n_bins=5)
    accumulator.add_class(1, p, y, label_value=1)
    with pytest.raises(ValueError, match="class 'fg' was already added"):
        accumulator.add_class(1, p, y, label_value=1)
    with pytest.raises(ValueError, match="'fg' was already added"):
        accumulator.add_all(np.stack([p, p]), y)
    accumulator.add_class(0, p, y, label_value=0)
    assert accumulator.result().equals(bin_image(np.stack([p, p]), y, n_bins=5,
                                                 class_names=["bg", "fg"]))


def test_label_value_and_region_together_are_refused():
    accumulator = BinAccumulator(["fg"], n_bins=5)
    with pytest.raises(ValueError, match="label_value or region, not both"):
        accumulator.add_class(0, np.array([0.2, 0.6]), np.array([0, 1]), label_value=1,
                              region=[0, 1])
    with pytest.raises(ValueError, match="classes or regions, not both"):
        bin_image(np.array([[0.2, 0.6]]), np.array([0, 1]), classes=[1], regions=[[0, 1]])


@pytest.mark.parametrize("names", [["a", "a", "b"], ["a", "b", "a"]])
def test_duplicate_class_names_are_refused(names):
    probs = np.full((3, 4), 1 / 3)
    with pytest.raises(ValueError, match=r"class names must be unique.*'a'"):
        bin_image(probs, np.array([0, 1, 2, 0]), class_names=names)
    with pytest.raises(ValueError, match=r"class names must be unique"):
        BinAccumulator(names)


def test_no_class_is_refused():
    with pytest.raises(ValueError, match=r"0 channels.*\(0, 4, 4\).*at least one"):
        bin_image(np.zeros((0, 4, 4)), np.zeros((4, 4), int))
    with pytest.raises(ValueError, match="at least one class"):
        BinAccumulator([])


# ---------------------------------------------------------- round 3: ignore label is a class
@pytest.mark.parametrize(("kwargs", "ignore", "name"), [
    ({}, 1, "class1"),
    ({"classes": [1, 2, 3]}, 3, "label3"),
    ({"regions": [[1, 2], [2]]}, 1, "region0"),
    ({"classes": [0, 1, 2], "class_names": ["bg", "liver", "tumour"]}, 1, "liver"),
])
def test_ignore_label_that_a_class_scores_is_refused(kwargs, ignore, name):
    rng = np.random.default_rng(31)
    n = len(kwargs.get("regions", kwargs.get("classes", [0, 1, 2])))
    probs = rng.random((n, 6, 5)).astype(np.float32)
    labels = rng.integers(0, 4, (6, 5))
    with pytest.raises(ValueError, match=rf"ignore label {ignore} is a label value of class "
                                         rf"'{name}'.*cannot be both ignored and scored"):
        bin_image(probs, labels, ignore_label=ignore, **kwargs)


def test_ignore_label_not_scored_still_ignores():
    rng = np.random.default_rng(32)
    probs = rng.random((2, 7, 6)).astype(np.float32)
    labels = rng.integers(0, 4, (7, 6))
    stats = bin_image(probs, labels, classes=[1, 2], ignore_label=3)
    assert_matches_naive(stats, naive.naive_bin(probs, labels, classes=[1, 2], ignore_label=3))


@pytest.mark.parametrize(("kwargs", "ignore"), [
    ({"label_value": 1}, 1), ({"region": [1, 2]}, 2),
])
def test_accumulator_refuses_ignore_label_of_its_class(kwargs, ignore):
    accumulator = BinAccumulator(["liver"])
    with pytest.raises(ValueError, match=rf"ignore label {ignore} is a label value of class "
                                         r"'liver'"):
        accumulator.add_class(0, np.array([0.2, 0.6]), np.array([0, 1]),
                              ignore_label=ignore, **kwargs)


# ----------------------------------------------------- round 3: labels with a channel axis
@pytest.mark.parametrize("dtype", [bool, np.uint8, np.int64, np.float32])
def test_a_one_hot_of_any_dtype_is_read_as_outcomes(dtype):
    """0/1 labels of the probabilities' shape with exactly one 1 along the first axis at
    every position are a (C, *spatial) one-hot whatever their dtype."""
    rng = np.random.default_rng(19)
    probs = rng.dirichlet([1, 1, 1], (6, 5, 4)).transpose(3, 0, 1, 2).astype(np.float32)
    labels = rng.integers(0, 3, (6, 5, 4))
    onehot = np.stack([labels == c for c in range(3)]).astype(dtype)
    stats = bin_image(probs, onehot)
    assert_matches_naive(stats, naive.naive_bin(probs, labels))
    assert stats.equals(bin_image(probs, onehot, outcomes=True))


def _ambiguous_labels(rng, shape):
    """0/1 arrays of ``shape`` that are not a one-hot along the first axis: a binary mask,
    a one-hot with unlabelled (all-zero) positions, multi-label regions."""
    labels = rng.integers(0, shape[0], shape[1:])
    onehot = np.stack([labels == c for c in range(shape[0])])
    unlabelled = onehot.copy()
    unlabelled[:, :2] = False
    regions = np.stack([labels >= c for c in range(shape[0])])  # nested, like WT/TC/ET
    mask = rng.random(shape) < 0.4
    return {"mask": mask, "unlabelled one-hot": unlabelled, "regions": regions}


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.float32])
@pytest.mark.parametrize("kind", ["mask", "unlabelled one-hot", "regions"])
def test_zero_one_labels_that_could_be_either_are_refused_until_said(dtype, kind):
    """A binary mask of one (*spatial) class and (C, *spatial) outcomes cannot be told apart
    by shape or values (round 4: bin_image(p, gt == 1) became 16 per-slice classes; a uint8
    BraTS region mask became one pooled class): refused until ``outcomes`` says which, and
    each reading equals its naive computation."""
    rng = np.random.default_rng(31)
    probs = rng.random((3, 6, 5, 4))
    labels = _ambiguous_labels(rng, probs.shape)[kind].astype(dtype)
    with pytest.raises(ValueError, match=r"could be a mask of one class .* outcomes=False .*"
                                         r"outcomes=True"):
        bin_image(probs, labels)
    as_outcomes = bin_image(probs, labels, outcomes=True)
    assert_matches_naive(as_outcomes, naive.naive_bin(probs, labels.astype(bool)))
    one = bin_image(probs, labels, outcomes=False)
    assert one.n_classes == 1
    assert one.equals(bin_image(probs, labels.astype(np.uint8), classes=[1]))
    assert_matches_naive(one, naive.naive_bin(probs[None], labels.astype(np.uint8),
                                              classes=[1]))


def test_a_label_map_of_one_class_and_its_value():
    rng = np.random.default_rng(37)
    p = rng.random((7, 6, 5))
    labels = 2 * rng.integers(0, 2, (7, 6, 5))
    stats = bin_image(p, labels, n_bins=10, classes=[2])
    assert_matches_naive(stats, naive.naive_bin(p[None], labels, classes=[2], n_bins=10))
    with pytest.raises(ValueError, match="no class declares"):  # value 1 by default
        bin_image(p, labels, n_bins=10)
    with pytest.raises(ValueError, match="outcomes must hold 0 and 1"):
        bin_image(p, labels, outcomes=True)
    with pytest.raises(ValueError, match="need no classes or regions"):
        bin_image(p, labels > 0, outcomes=True, classes=[1])


def test_binary_segmentation_map_with_its_mask():
    """A foreground probability map and its 0/1 (or bool) mask of the same shape: one class
    once the call says so (outcomes=False, classes=[1], or probs[None] with the mask)."""
    rng = np.random.default_rng(23)
    p = rng.random((7, 6, 5))
    mask = rng.random((7, 6, 5)) < p
    expected = naive.naive_bin(p[None], mask.astype(np.uint8), classes=[1], n_bins=10)
    for labels in (mask, mask.astype(np.uint8)):
        stats = bin_image(p, labels, n_bins=10, outcomes=False)
        assert_matches_naive(stats, expected)
        assert stats.equals(bin_image(p, labels, n_bins=10, classes=[1]))
        assert_matches_naive(bin_image(p[None], mask[None], n_bins=10), expected)


def test_one_class_map_still_works_in_1d_and_with_classes():
    p = np.array([0.8, 0.1, 0.3, 0.6])
    y = np.array([1, 0, 0, 1])
    flat = bin_image(p, y, n_bins=5)
    assert flat.class_names == ("label1",)
    two_d = bin_image(p.reshape(2, 2), y.reshape(2, 2), n_bins=5, classes=[1])
    assert two_d.equals(flat)
    labels3 = np.array([[1, 2], [0, 1]])  # regions / classes explicit
    assert bin_image(p.reshape(2, 2), labels3, n_bins=5, regions=[[1, 2]]).n_classes == 1


def test_label_map_with_a_channel_axis_names_the_shapes_passed():
    rng = np.random.default_rng(30)
    probs = rng.dirichlet([1, 1, 1], (8, 8, 4)).transpose(3, 0, 1, 2)
    labels = rng.integers(0, 3, (8, 8, 4))
    with pytest.raises(ValueError, match=r"labels \(1, 8, 8, 4\) have a channel axis; pass "
                                         r"a label map of shape \(8, 8, 4\)") as caught:
        bin_image(probs, labels[None])
    assert "(1, 3, 8, 8, 4)" not in str(caught.value)
    with pytest.raises(ValueError, match=r"probabilities \(3, 8, 8, 4\).*labels "
                                         r"\(2, 8, 8, 4\).*\(8, 8, 4\)"):
        bin_image(probs, np.stack([labels, labels]))


def _three_classes(seed=70):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(3), size=(6, 5)).transpose(2, 0, 1).astype(np.float32)
    return probs, rng.integers(0, 3, size=(6, 5))


@pytest.mark.parametrize("value", [1.5, "1", True, np.bool_(True), None])
def test_accumulator_label_values_must_be_integers(value):
    probs, labels = _three_classes()
    accumulator = BinAccumulator(["a", "b", "c"])
    if value is None:  # a region given as a bare string is split into characters: refused
        with pytest.raises(ValueError, match=r"region must be a list, got the string '12'"):
            accumulator.add_class(0, probs[0], labels, region="12")
        return
    message = rf"class 'a': label values must be integers, got {value!r}"
    with pytest.raises(ValueError, match=message):
        accumulator.add_class(0, probs[0], labels, label_value=value)
    with pytest.raises(ValueError, match="class 'c': label values must be integers"):
        bin_image(probs, labels, classes=[0, 1, value], class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="class 'region2': label values must be integers"):
        bin_image(probs, labels, regions=[[0], [1], [2, value]])
    declared = rf"declared_labels must be integers, got {value!r}"
    with pytest.raises(ValueError, match=declared):
        bin_image(probs, labels, declared_labels=[0, 1, 2, value])
    # integral floats and numpy integers are label values like any other
    exact = bin_image(probs, labels)
    for values in ([0.0, 1.0, 2.0], list(np.arange(3))):
        got = bin_image(probs, labels, classes=values)
        for field in ("count", "sum_p", "sum_y", "tp", "fp", "fn", "tn"):
            np.testing.assert_array_equal(getattr(got, field), getattr(exact, field))


@pytest.mark.parametrize("index", [True, np.bool_(False), 1.0, "0", None])
def test_accumulator_class_index_must_be_an_int(index):
    probs, labels = _three_classes()
    accumulator = BinAccumulator(["a", "b", "c"], where="case 9: ")
    message = rf"case 9: class index must be an integer 0..2, got {index!r}"
    with pytest.raises(ValueError, match=message):
        accumulator.add_class(index, probs[0], labels, label_value=0)
    accumulator.add_class(np.int64(2), probs[2], labels, label_value=2)  # numpy ints are fine


def test_class_names_as_a_bare_string_are_refused():
    message = r"class_names must be a list of names, got the string 'abc'"
    with pytest.raises(ValueError, match=message):
        BinAccumulator("abc")
    probs, labels = _three_classes()
    with pytest.raises(ValueError, match="pass a list of names"):
        bin_image(probs, labels, class_names="abc")
    with pytest.raises(ValueError, match="pass a list of names"):
        bin_image(probs, labels, classes="012")
