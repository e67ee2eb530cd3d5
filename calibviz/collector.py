"""The results of a run's cases as they finish, put back in discovery order: a usage
problem of the first case stops the run, the first finished case shows whether the
summary's bootstrap fits in memory, and cases whose classes or bins differ from the first
one's become their errors (:class:`Collector`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .bootstrap import check_summary_memory
from .io import Case, CaseResult, Problem
from .results import Results


def _takes_three_arguments(callback) -> bool:
    """Whether ``callback`` can be called with three positional arguments."""
    import inspect

    if callback is None:
        return False
    try:
        inspect.signature(callback).bind(0, 0, 0)
    except (TypeError, ValueError):  # too few parameters, or no signature to read
        return False
    return True


class Collector:
    """Gathers case results as they finish and puts them back in discovery order."""

    def __init__(self, cases: list[Case], discovery_problems, options: dict,
                 progress: Callable[..., None] | None = None) -> None:
        self.cases = cases
        self.discovery_problems = list(discovery_problems)
        self.options = options
        self.progress = progress
        self._progress_takes_failed = _takes_three_arguments(progress)
        self.finished: dict[str, CaseResult] = {}
        self.failed: dict[str, CaseResult] = {}
        self.by_id = {case.case_id: case for case in cases}

    def __call__(self, result: CaseResult) -> None:
        self.record(self.accept(result))

    def accept(self, result: CaseResult) -> CaseResult:
        """``result`` checked against the run: the first case's usage problem stops the run
        (``ValueError``). Whether it pools with the others is decided by :meth:`results`."""
        first = not self.finished and not self.failed
        usage = [p for p in result.problems if p.severity == "usage"]
        if usage and first:
            raise ValueError(usage[0].message)
        if result.ok and not self.finished:
            self.check_summary(result)
        return result

    def check_summary(self, result: CaseResult) -> None:
        """The first finished case shows the run's classes: refuse (``ValueError``) a
        ``--bootstrap`` whose summary would not fit in memory now, not after every case."""
        check_summary_memory(self.options.get("bootstrap", 0), result.stats.n_classes)

    def record(self, result: CaseResult) -> None:
        (self.finished if result.ok else self.failed)[result.case_id] = result
        self.report_progress()

    def _pool(self) -> None:
        """Check every finished case against the first one in discovery order, whatever
        order they finished in (threads, processes and clusters finish cases out of order):
        one whose classes or bins differ becomes its error."""
        ordered = [c.case_id for c in self.cases if c.case_id in self.finished]
        for case_id in ordered[1:]:
            result = self._compatible(self.finished[ordered[0]], self.finished[case_id])
            if not result.ok:
                del self.finished[case_id]
                self.failed[case_id] = result

    def _compatible(self, first: CaseResult, result: CaseResult) -> CaseResult:
        """``result``, or its error when its classes or bins differ from ``first``'s."""
        try:
            first.stats.compatible_with(result.stats)
        except ValueError as error:
            case = self.by_id[result.case_id]
            return CaseResult(result.case_id, None, [*result.problems, Problem(
                case.case_id, case.prediction_name,
                f"case {case.case_id}: {error} of case {first.case_id} (prediction "
                f"{case.prediction_name}, label {case.label})")])
        return result

    def report_progress(self) -> None:
        if not self.progress:
            return
        done, total = len(self.finished) + len(self.failed), len(self.cases)
        if self._progress_takes_failed:
            self.progress(done, total, len(self.failed))
        else:
            self.progress(done, total)

    def results(self) -> Results:
        self._pool()
        ordered = [c.case_id for c in self.cases if c.case_id in self.finished]
        problems = list(self.discovery_problems)
        for case in self.cases:
            result = self.finished.get(case.case_id) or self.failed.get(case.case_id)
            if result is not None:
                problems.extend(result.problems)
        info = next((r.info for r in self.finished.values() if r.info), None)
        self.options.update(info or {})
        self.options["prediction_files"] = {
            c.case_id: Path(c.prediction[0] if isinstance(c.prediction, tuple)
                            else c.prediction).name
            for c in self.cases if c.case_id in self.finished}
        self.options["label_files"] = {c.case_id: Path(c.label).name for c in self.cases
                                       if c.case_id in self.finished}
        skipped = [c.case_id for c in self.cases if c.case_id in self.failed]
        skipped += [p.case for p in self.discovery_problems if p.severity == "error" and p.case]
        skipped = tuple(dict.fromkeys(skipped))
        roi = None
        if self.options.get("roi"):
            roi = Results(tuple(ordered), tuple(self.finished[c].roi_stats for c in ordered),
                          {**self.options, "roi_set": True}, tuple(problems), skipped)
        return Results(
            cases=tuple(ordered), stats=tuple(self.finished[c].stats for c in ordered),
            options=self.options, problems=tuple(problems), skipped=skipped, roi=roi,
        )
