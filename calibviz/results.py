"""The one result type of a dataset run: per-image statistics, their case ids, the problems
found and the options used. Written and read by :mod:`calibviz.store`. NumPy only."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .stats import BinStats


@dataclass(frozen=True, repr=False)
class Results:
    """Per-image statistics of a dataset run.

    cases : tuple of case ids, one per image that was evaluated
    stats : tuple of per-image :class:`BinStats` (same classes and bins for all)
    options : dict of the options the run used (JSON-serialisable)
    problems : tuple of :class:`calibviz.io.Problem` found while reading (errors of the
        cases that were skipped, warnings of the others)
    skipped : tuple of the ids of cases that could not be evaluated
    roi : with a region of interest (option ``roi``), the same cases' statistics on each
        class's region, as a :class:`Results` of their own (None otherwise)
    """

    cases: tuple[str, ...]
    stats: tuple[BinStats, ...]
    options: dict = field(default_factory=dict)
    problems: tuple = ()
    skipped: tuple[str, ...] = ()
    roi: Results | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "cases", tuple(str(c) for c in self.cases))
        set_(self, "stats", tuple(self.stats))
        set_(self, "problems", tuple(self.problems))
        set_(self, "skipped", tuple(str(c) for c in self.skipped))
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

    @property
    def errors(self) -> list:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def n_absent(self) -> int:
        """Image–class pairs whose class is absent from the ground truth."""
        return int(sum(int(s.absent.sum()) for s in self.stats))

    @property
    def n_dropped(self) -> int:
        """Images left out entirely by the ``drop-case`` absent policy (0 otherwise)."""
        from .aggregate import dropped_cases

        if not self.stats:
            return 0
        return int(dropped_cases(self.stats, self.options.get("absent", "include")).sum())

    @property
    def per_image(self):
        """pandas.DataFrame: one row per image and class, the columns of ``per_image.csv``."""
        from .report import per_image_table

        return per_image_table(self, absent=self.options.get("absent", "include"))

    @property
    def summary(self):
        """pandas.DataFrame: per metric and class, the columns of ``summary.csv`` (bootstrap
        intervals when the run asked for them)."""
        from .report import summary_table

        return summary_table(self, absent=self.options.get("absent", "include"),
                             n_bootstrap=int(self.options.get("bootstrap", 0) or 0),
                             seed=int(self.options.get("seed", 0) or 0))

    def classes_only(self) -> Results:
        """These results without a ``top-label`` row (for outputs keyed by label values)."""
        if not self.stats or len(self.stats[0].class_rows) == self.stats[0].n_classes:
            return self
        rows = self.stats[0].class_rows
        return replace(self, stats=tuple(s.select(rows) for s in self.stats))

    def __repr__(self) -> str:
        first = self.stats[0] if self.stats else None
        bins = f", {first.n_bins} {first.binning} bins" if first is not None else ""
        classes = ", ".join(self.class_names[:6]) + (" …" if len(self.class_names) > 6 else "")
        return (f"Results({len(self)} cases, {len(self.class_names)} classes ({classes}){bins}, "
                f"{len(self.skipped)} skipped, {len(self.warnings)} warnings)")

    def __len__(self) -> int:
        return len(self.cases)

    def case(self, case_id: str) -> BinStats:
        try:
            return self.stats[self.cases.index(case_id)]
        except ValueError:
            raise ValueError(f"no case {case_id!r} in these results") from None
