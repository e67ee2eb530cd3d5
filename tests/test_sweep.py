"""Coarsening, equal-mass bins and sweeps (issue 16 §2): against separate runs per bin count,
to the last bit where the arithmetic allows, and against per-voxel equal-mass binning."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from calibviz import METRICS, Results, bin_edges, bin_image, micro_metrics, save_results
from calibviz.aggregate import per_image_metrics
from calibviz.cli import app
from calibviz.stats import SUM_FIELDS
from calibviz.sweep import (
    SWEEP_METRICS,
    coarsen,
    divisors,
    equal_mass,
    equal_mass_table,
    sweep_table,
)

from . import naive

EXACT_FIELDS = ("count", "sum_y", "tp", "fp", "fn", "tn", "n_clipped")
FLOAT_FIELDS = ("sum_p", "sum_p2", "sum_py")


# ------------------------------------------------------------------------- the edges
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("fine", [600, 360, 3600, 1000])
def test_fine_edges_are_the_coarse_edges_in_every_precision(fine, dtype):
    edges = bin_edges(fine, dtype)
    for b in divisors(fine):
        np.testing.assert_array_equal(edges[:: fine // b], bin_edges(b, dtype))


def test_float32_single_rounding_equals_the_double_rounding_used():
    """Not needed for the equality above (both sides round the same float64 quotient), but
    stated: for these resolutions fl32(fl64(k/B)) is also the correctly rounded fl32(k/B)."""
    from fractions import Fraction

    for b in (5, 10, 15, 20, 30, 50, 100, 600):
        for k in range(b + 1):
            single = np.float32(Fraction(k, b).numerator / Fraction(k, b).denominator)
            exact = Fraction(k, b)
            lo, hi = np.nextafter(single, np.float32(-1)), np.nextafter(single, np.float32(2))
            assert abs(Fraction(float(single)) - exact) <= abs(Fraction(float(lo)) - exact)
            assert abs(Fraction(float(single)) - exact) <= abs(Fraction(float(hi)) - exact)


# ------------------------------------------------------------- coarsening vs direct
def edge_probes(dtype, n_bins):
    """Every edge k/B of each dtype and its two neighbours, plus random values."""
    values = []
    for b in divisors(n_bins):
        e = bin_edges(b, dtype).astype(dtype)
        values += [e, np.nextafter(e, dtype(-1)), np.nextafter(e, dtype(2))]
    values = np.clip(np.concatenate(values), 0, 1).astype(dtype)
    rng = np.random.default_rng(3)
    return np.concatenate([values, rng.random(3000).astype(dtype)])


@pytest.mark.parametrize("closure", ["right", "left"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_coarsen_equals_direct_run(dtype, closure):
    fine = 600
    p = edge_probes(dtype, fine)
    rng = np.random.default_rng(4)
    probs = np.stack([p, (1 - p.astype(np.float64)).astype(dtype)])
    labels = (rng.random(p.size) < p.astype(float)).astype(np.int64)
    stats = bin_image(probs, labels, n_bins=fine, closure=closure)
    for b in (1, 5, 10, 15, 20, 30, 50, 100, 120, 600):
        direct = bin_image(probs, labels, n_bins=b, closure=closure)
        coarse = coarsen(stats, b)
        for name in EXACT_FIELDS:  # bin membership: identical
            np.testing.assert_array_equal(getattr(coarse, name), getattr(direct, name))
        for name in FLOAT_FIELDS:  # same addends, other association
            np.testing.assert_allclose(getattr(coarse, name), getattr(direct, name),
                                       rtol=1e-13, atol=1e-12)
        for function in METRICS.values():
            np.testing.assert_allclose(function(coarse), function(direct), rtol=1e-12,
                                       atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_coarsen_is_bit_identical_when_the_sums_are_exact(dtype):
    """Dyadic probabilities j/1024 (exact in every dtype): every float64 addition is exact,
    so every field equals the direct run to the last bit."""
    rng = np.random.default_rng(5)
    p = (rng.integers(0, 1025, size=(3, 4000)) / 1024).astype(dtype)
    labels = rng.integers(0, 3, size=4000)
    stats = bin_image(p, labels, n_bins=600)
    for b in (5, 10, 20, 50, 100):
        direct, coarse = bin_image(p, labels, n_bins=b), coarsen(stats, b)
        for name in SUM_FIELDS:
            np.testing.assert_array_equal(getattr(coarse, name), getattr(direct, name))


def test_coarsen_integer_maps():
    rng = np.random.default_rng(6)
    q = rng.integers(0, 256, size=(2, 5000)).astype(np.uint8)
    labels = rng.integers(0, 2, size=5000)
    stats = bin_image(q, labels, n_bins=510)
    for b in (5, 10, 15, 17, 30, 51, 255):
        direct, coarse = bin_image(q, labels, n_bins=b), coarsen(stats, b)
        np.testing.assert_array_equal(coarse.count, direct.count)
        np.testing.assert_allclose(coarse.sum_p, direct.sum_p, rtol=1e-13)


def test_coarsen_refuses():
    stats = bin_image(np.array([0.1, 0.6]), np.array([False, True]), n_bins=20)
    with pytest.raises(ValueError, match=r"30 bins do not divide the run's 20 .*1, 2, 4, 5"):
        coarsen(stats, 30)
    soft = bin_image(np.array([0.1, 0.6]), np.array([False, True]), n_bins=20, binning="soft")
    with pytest.raises(ValueError, match="soft-binned statistics cannot be coarsened"):
        coarsen(soft, 10)
    assert coarsen(stats, 20) is stats


# ------------------------------------------------------------------------ equal mass
@pytest.mark.parametrize("n_bins", [1, 3, 5, 10, 15])
def test_equal_mass_matches_per_voxel_binning(n_bins):
    """One voxel per fine bin: the fine resolution allows exactly Nixon's equal-mass bins."""
    rng = np.random.default_rng(n_bins)
    fine = 600
    cells = np.sort(rng.choice(fine, size=211, replace=False))
    p = (cells + 0.5) / fine
    y = rng.random(p.size) < p
    em = equal_mass(bin_image(p, y, n_bins=fine), n_bins)
    expected = naive.naive_equal_mass(p, y, n_bins)
    from calibviz import ace, ece, mce

    for name, function in (("ece", ece), ("ace", ace), ("mce", mce)):
        assert function(em.stats)[0] == pytest.approx(expected[name], rel=1e-12)
    counts = em.stats.count[0]
    assert counts.max() - counts.min() <= 1
    assert (np.diff(em.boundaries[0]) >= 0).all()
    assert em.boundaries[0, 0] == 0 and em.boundaries[0, -1] == 1


def test_equal_mass_with_heavy_fine_bins():
    """A fine bin is never split: with 90 % of voxels in one fine bin, some bins stay empty,
    the totals are kept and the boundaries are fine edges."""
    p = np.concatenate([np.full(900, 0.0005), np.linspace(0.2, 0.9, 100)])
    y = np.arange(p.size) % 7 == 0
    stats = bin_image(p, y, n_bins=600)
    em = equal_mass(stats, 10)
    # the heavy bin goes where its median rank (449.5 of 1000) falls; the rest ranks 900+
    assert em.stats.count.tolist() == [[0, 0, 0, 0, 900, 0, 0, 0, 0, 100]]
    assert em.boundaries[0, 4] == 0 and em.boundaries[0, 5] == 1 / 600
    np.testing.assert_allclose(em.stats.sum_p.sum(), stats.sum_p.sum(), rtol=1e-14)
    np.testing.assert_array_equal(em.boundaries * 600, np.round(em.boundaries * 600))
    empty = equal_mass(stats.mask_classes(np.array([False])), 5)
    assert empty.stats.count.sum() == 0


# ------------------------------------------------------------------------- the sweep
def dataset(n_images=7, n_classes=3, seed=0, fine=600):
    rng = np.random.default_rng(seed)
    fine_stats, probs_labels = [], []
    for i in range(n_images):
        probs = rng.dirichlet(np.ones(n_classes) * 0.4, size=500).T.astype(np.float32)
        labels = np.array([rng.choice(n_classes, p=p / p.sum()) for p in probs.T.astype(float)])
        if i == 0:
            labels[labels == 2] = 1  # class 2 absent in one image
        probs_labels.append((probs, labels))
        fine_stats.append(bin_image(probs, labels, n_bins=fine))
    return fine_stats, probs_labels


@pytest.mark.parametrize("absent", ["include", "exclude"])
def test_sweep_equals_separate_runs(absent):
    fine_stats, inputs = dataset()
    bins = (5, 10, 15, 20, 30, 50, 100)
    table = sweep_table(fine_stats, bins, absent=absent).set_index(["metric", "class", "bins"])
    assert list(table.reset_index().columns) == ["metric", "class", "bins", "macro", "micro"]
    for b in bins:
        direct = [bin_image(p, y, n_bins=b) for p, y in inputs]
        per_image = per_image_metrics(direct, absent=absent)
        micro = micro_metrics(direct, absent=absent)
        for metric in ("ece", "ace", "mce", "dce"):
            for c, name in enumerate(direct[0].class_names):
                row = table.loc[(metric, name, b)]
                assert row["macro"] == pytest.approx(np.nanmean(per_image[metric][:, c]),
                                                     rel=1e-12)
                assert row["micro"] == pytest.approx(micro[metric][c], rel=1e-12)
            mean_row = table.loc[(metric, "mean", b)]
            assert mean_row["macro"] == pytest.approx(
                np.nanmean(np.nanmean(per_image[metric], axis=1)), rel=1e-12)
    expected = set(SWEEP_METRICS)
    assert set(table.index.get_level_values("metric")) == expected


def test_sweep_em_rows_are_per_image_equal_mass():
    fine_stats, _ = dataset(n_images=4, seed=2)
    table = sweep_table(fine_stats, (10,)).set_index(["metric", "class", "bins"])
    from calibviz import ece

    values = [ece(equal_mass(s, 10).stats) for s in fine_stats]
    assert table.loc[("ece_em", "class1", 10), "macro"] == pytest.approx(
        np.mean([v[1] for v in values]), rel=1e-12)
    boundaries = equal_mass_table(fine_stats, (10,))
    assert len(boundaries) == 3 and len(boundaries["boundaries"][0].split()) == 11


# ------------------------------------------------------------------------------ CLI
@pytest.fixture()
def run_dir(tmp_path):
    fine_stats, _ = dataset(n_images=5, seed=1, fine=60)
    results = Results([f"case{i}" for i in range(5)], fine_stats, {"absent": "include"})
    save_results(tmp_path / "run" / "stats.npz", results)
    return tmp_path / "run"


def test_cli_sweep_writes_csv_and_figure(run_dir, tmp_path):
    result = CliRunner().invoke(app, ["sweep", str(run_dir), "--bins", "5,10,20,60",
                                      "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    import pandas as pd

    table = pd.read_csv(tmp_path / "s" / "sweep.csv")
    assert list(table.columns) == ["metric", "class", "bins", "macro", "micro"]
    assert sorted(table["bins"].unique()) == [5, 10, 20, 60]
    assert (tmp_path / "s" / "sweep.png").stat().st_size > 1000
    assert (tmp_path / "s" / "equal_mass.csv").exists()
    assert len(result.output.strip().splitlines()) == 3


@pytest.mark.parametrize(("bins", "message"), [
    ("5,7", "7 bins do not divide the run's 60 fine bins"),
    ("five", "--bins: expected comma-separated positive integers"),
    ("0", "--bins"),
])
def test_cli_sweep_refuses(run_dir, bins, message):
    result = CliRunner().invoke(app, ["sweep", str(run_dir), "--bins", bins])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("error:")


# ------------------------------------------------------- the fine statistics of a run
def fine_run(folder, cases, fine=60, coarse=20, seed=1, options=None):
    """A run folder as ``evaluate --bins coarse --fine-bins fine`` leaves it."""
    fine_stats, _ = dataset(n_images=len(cases), seed=seed, fine=fine)
    options = {"absent": "include", "name": "m", **(options or {})}
    save_results(folder / "stats_fine.npz", Results(cases, fine_stats,
                                                    {**options, "n_bins": fine}))
    save_results(folder / "stats.npz", Results(
        cases, [coarsen(s, coarse) for s in fine_stats],
        {**options, "n_bins": coarse, "fine_bins": fine}))
    return folder


def sweep_cli(folder, *args):
    return CliRunner().invoke(app, ["sweep", str(folder), *args])


def test_cli_sweep_uses_the_runs_own_fine_statistics(tmp_path):
    run = fine_run(tmp_path / "run", ["a", "b", "c", "d"])
    result = sweep_cli(run, "--bins", "5,30,60", "--out", str(tmp_path / "s"))
    assert result.exit_code == 0, result.output
    import pandas as pd

    assert sorted(pd.read_csv(tmp_path / "s" / "sweep.csv")["bins"].unique()) == [5, 30, 60]


@pytest.mark.parametrize(("damage", "message"), [
    # stats_fine.npz of another run: other cases, other classes, other options, other numbers
    (lambda run, tmp: fine_run(tmp / "other", ["x", "y", "z"]) and
     (tmp / "other" / "stats_fine.npz").replace(run / "stats_fine.npz"),
     "lists 3 cases"),
    (lambda run, tmp: fine_run(tmp / "other", ["a", "b", "c", "d"], seed=7) and
     (tmp / "other" / "stats_fine.npz").replace(run / "stats_fine.npz"),
     "do not add up to the run's statistics"),
    (lambda run, tmp: fine_run(tmp / "other", ["a", "b", "c", "d"], options={"name": "o"})
     and (tmp / "other" / "stats_fine.npz").replace(run / "stats_fine.npz"),
     "options differ (name: 'o' there, 'm' in stats.npz)"),
    (lambda run, tmp: fine_run(tmp / "other", ["a", "b", "c", "d"], fine=30, coarse=10)
     and (tmp / "other" / "stats_fine.npz").replace(run / "stats_fine.npz"),
     "has 30 bins"),
    # the run's own stats.npz is missing or damaged: nothing to vouch for the fine file
    (lambda run, tmp: (run / "stats.npz").unlink(), "no statistics file at"),
    (lambda run, tmp: (run / "stats.npz").unlink() or (run / "stats.npz").mkdir(),
     "stats.npz is not a readable calibviz stats.npz"),
    (lambda run, tmp: (run / "stats.npz").write_bytes((run / "stats.npz").read_bytes()[:300]),
     "stats.npz"),
])
def test_cli_sweep_refuses_fine_statistics_that_are_not_the_runs(tmp_path, damage, message):
    run = fine_run(tmp_path / "run", ["a", "b", "c", "d"])
    damage(run, tmp_path)
    result = sweep_cli(run, "--bins", "5,10", "--out", str(tmp_path / "s"))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    assert not (tmp_path / "s").exists()


def test_cli_sweep_default_bins_adapt_to_the_run(tmp_path):
    folder = tmp_path / "run"
    fine_stats, _ = dataset(n_images=3, seed=1, fine=20)  # a default evaluate run: 20 bins
    save_results(folder / "stats.npz", Results(["a", "b", "c"], fine_stats, {"n_bins": 20}))
    result = sweep_cli(folder)
    assert result.exit_code == 0, result.output
    assert ("note: left out 15, 30, 50, 100 bins: they do not divide the run's 20 bins "
            "(re-run evaluate with --fine-bins 300)") in result.output
    import pandas as pd

    assert sorted(pd.read_csv(folder / "sweep" / "sweep.csv")["bins"].unique()) == [5, 10, 20]
    # an explicit list is taken as given
    result = sweep_cli(folder, "--bins", "5,15")
    assert result.exit_code == 2 and "15 bins do not divide the run's 20 fine bins" in \
        result.output
    # no default count divides: the run's own divisors
    odd, _ = dataset(n_images=2, seed=1, fine=21)
    save_results(tmp_path / "odd" / "stats.npz", Results(["a", "b"], odd))
    result = sweep_cli(tmp_path / "odd")
    assert result.exit_code == 0, result.output
    assert sorted(pd.read_csv(tmp_path / "odd" / "sweep" / "sweep.csv")["bins"].unique()) == \
        [3, 7, 21]


@pytest.mark.parametrize(("bins", "hint"), [
    (7, "re-run evaluate with --fine-bins 140"),
    (99991, "no --fine-bins up to 100,000 is a multiple of 20 and of 99991"),
])
def test_cli_sweep_suggests_fine_bins_that_work(tmp_path, bins, hint):
    """The suggestion is a fine resolution that the run's bins and the asked ones both
    divide (it said --fine-bins 600, which 7 does not divide)."""
    folder = tmp_path / "run"
    fine_stats, _ = dataset(n_images=2, seed=2, fine=20)
    save_results(folder / "stats.npz", Results(["a", "b"], fine_stats, {"n_bins": 20}))
    result = sweep_cli(folder, "--bins", str(bins))
    assert result.exit_code == 2 and hint in " ".join(result.output.split())
