"""Small hand-made and random statistics shared by the figure tests."""

import numpy as np

from calibviz import BinStats, Results, bin_image

EDGES5 = np.linspace(0, 1, 6)


def hand_stats() -> BinStats:
    """Two classes, five bins; bin 2 of class 0 and bins 3–4 of class 1 are empty."""
    count = np.array([[10, 4, 0, 2, 1000], [5, 5, 5, 0, 0]])
    conf = np.array([[0.05, 0.3, 0.0, 0.7, 0.95], [0.1, 0.3, 0.5, 0.0, 0.0]])
    freq = np.array([[0.1, 0.25, 0.0, 0.5, 0.9], [0.0, 0.4, 0.2, 0.0, 0.0]])
    zeros = np.zeros(2, dtype=np.int64)
    return BinStats(
        count=count, sum_p=conf * count, sum_y=freq * count, sum_p2=conf**2 * count,
        sum_py=conf * freq * count, tp=np.array([5, 3]), fp=zeros, fn=zeros,
        tn=np.array([1011, 12]), edges=EDGES5, class_names=("liver", "tumour"),
    )


def naive_metrics(conf, freq, count):
    keep = count > 0
    gaps = np.abs(conf - freq)[keep]
    return (count[keep] * gaps).sum() / count[keep].sum(), gaps.mean(), gaps.max()


def synthetic_dataset(n_images=6, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_images):
        probs = rng.dirichlet(np.ones(n_classes), size=300).T  # float64 [C, 300]
        labels = np.array([rng.choice(n_classes, p=p ** 2 / (p ** 2).sum()) for p in probs.T])
        out.append(bin_image(probs, labels, n_bins=10))
    return out


NAMES = ("background", "liver", "tumour")



def make_results(n_cases=5, seed=0) -> Results:
    rng = np.random.default_rng(seed)
    stats = []
    for i in range(n_cases):
        probs = rng.dirichlet(np.ones(3), size=400).T  # float64 [3, 400]
        sharpen = 1.0 + 0.5 * i  # later cases are more over-confident
        truth = probs ** (1 / sharpen)
        truth /= truth.sum(axis=0)
        labels = (rng.random(400) > np.cumsum(truth, axis=0)).sum(axis=0)
        stats.append(bin_image(probs, labels, n_bins=10, class_names=NAMES))
    return Results(cases=[f"case/{i:03d}" for i in range(n_cases)], stats=stats,
                   options={"n_bins": 10})
