"""The saved statistics of a run (``stats.npz``): everything needed to recompute every
number and redraw every figure without the images. NumPy only."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .stats import SUM_FIELDS, BinStats

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Results:
    """Per-image statistics of a dataset run.

    cases : tuple of case ids, one per image
    stats : tuple of per-image :class:`BinStats` (same classes and bins for all)
    options : dict of the options the run used (JSON-serialisable)
    """

    cases: tuple[str, ...]
    stats: tuple[BinStats, ...]
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cases", tuple(str(c) for c in self.cases))
        object.__setattr__(self, "stats", tuple(self.stats))
        if len(self.cases) != len(self.stats):
            raise ValueError(f"{len(self.cases)} case ids for {len(self.stats)} BinStats")
        for other in self.stats[1:]:
            self.stats[0].compatible_with(other)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.stats[0].class_names if self.stats else ()

    @property
    def edges(self) -> np.ndarray:
        return self.stats[0].edges

    def __len__(self) -> int:
        return len(self.cases)

    def case(self, case_id: str) -> BinStats:
        try:
            return self.stats[self.cases.index(case_id)]
        except ValueError:
            raise ValueError(f"no case {case_id!r} in these results") from None


def save_results(path: str | os.PathLike, results: Results) -> Path:
    """Write ``results`` to ``path`` (``.npz``) atomically; returns the path."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION),
        "cases": np.array(results.cases, dtype=str),
        "options_json": np.array(json.dumps(results.options, default=str)),
    }
    if results.stats:
        per_image = [s.to_arrays() for s in results.stats]
        for key in per_image[0]:
            if key in SUM_FIELDS:
                arrays[f"stats_{key}"] = np.stack([a[key] for a in per_image])
            else:
                arrays[f"stats_{key}"] = per_image[0][key]
        arrays["stats_n_images"] = np.array([s.n_images for s in results.stats])
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
        np.savez_compressed(handle, **arrays)
        temporary = handle.name
    os.replace(temporary, path)
    return path


def load_results(path: str | os.PathLike) -> Results:
    """Read a ``stats.npz`` written by :func:`save_results` (or ``calibviz evaluate``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "stats.npz"
    if not path.exists():
        raise ValueError(f"no statistics file at {path} (expected a stats.npz from evaluate)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable calibviz stats.npz: {error}") from None
    if "format_version" not in arrays or "cases" not in arrays:
        raise ValueError(f"{path} is not a calibviz stats.npz (no case list inside)")
    cases = tuple(str(c) for c in arrays["cases"].tolist())
    options = json.loads(str(arrays["options_json"]))
    stats = []
    for index in range(len(cases)):
        fields = {}
        for key, value in arrays.items():
            if not key.startswith("stats_") or key == "stats_n_images":
                continue
            name = key[len("stats_"):]
            fields[name] = value[index] if name in SUM_FIELDS else value
        fields["n_images"] = arrays["stats_n_images"][index]
        stats.append(BinStats.from_arrays(fields))
    return Results(cases=cases, stats=tuple(stats), options=options)
