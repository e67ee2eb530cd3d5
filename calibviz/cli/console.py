"""Terminal output of the CLI (rich): the progress bar and the closing summary table."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from rich.cells import cell_len
from rich.console import Console, Group
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from .common import printable


class ProgressDisplay:
    """A progress bar with cases done, cases failed so far, rate and time left; silent when
    disabled. ``console``: where it is drawn (standard error by default)."""

    def __init__(self, *, enabled: bool = True, console: Console | None = None) -> None:
        self.enabled = enabled
        self._progress = None
        self._task = None
        self._console = console

    def __enter__(self) -> ProgressDisplay:
        return self

    def _start(self) -> None:
        self._progress = Progress(
            TextColumn("[bold]evaluating"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[failed]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=self._console or Console(stderr=True),
            transient=False,
        )
        self._progress.__enter__()
        self._task = self._progress.add_task("cases", total=None, rate="", failed="")

    def update(self, done: int, total: int, failed: int = 0) -> None:
        """Show ``done`` of ``total`` cases, ``failed`` of them failed (they are in
        ``problems.csv``); the bar appears with the first finished case (the first case also
        checks that the options fit the data)."""
        if not self.enabled or (self._progress is None and done == 0):
            return
        if self._progress is None:
            self._start()
        task = self._progress.tasks[0]
        elapsed = task.elapsed or 0.0
        rate = f"{done / elapsed:.2f} cases/s" if elapsed > 0 and done else ""
        failed_text = f"[bold red]{failed} failed" if failed else ""
        self._progress.update(self._task, completed=done, total=total, rate=rate,
                              failed=failed_text)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


def _spread(row) -> str:
    if not np.isfinite(row["mean"]):
        return "—"
    return f"{row['mean']:.4f}\n[dim]±{row['std']:.4f}[/dim]"


def _headline_table(results, absent: str, where: str = "", *, width: int = 80) -> list[Table]:
    """Per class: macro ACE / ECE / MCE / Dice (mean ± population std over images) and micro
    ACE / ECE / MCE, read from the report's summary table, as tables no wider than
    ``width`` (:func:`fitted_tables`). ``where``: the region scored."""
    from ..report import summary_table

    summary = summary_table(results, absent=absent).set_index(["metric", "class"])
    first = results.stats[0]
    title = Text(printable(f"Calibration{where} over {len(results)} images ({first.n_bins} "
                           f"{first.binning} bins, {first.closure}-closed; absent classes: "
                           f"{absent})"))
    headers = ["class", *(f"{name}\nmacro" for name in ("ACE", "ECE", "MCE", "Dice")),
               *(f"{name}\nmicro" for name in ("ACE", "ECE", "MCE"))]
    rows = [[Text(printable(name)),
             *[_spread(summary.loc[(m, name)]) for m in ("ace", "ece", "mce", "dice")],
             *[f"{summary.loc[(m, name), 'micro']:.4f}" for m in ("ace", "ece", "mce")]]
            for name in results.class_names]
    return fitted_tables(title, headers, rows, width=width)


#: the narrowest a name column of a table is folded to before its numbers move to a second
#: table (:func:`fitted_tables`)
NARROWEST_NAME = 12


def fitted_tables(title: str | Text, headers: Sequence[str],
                  rows: Sequence[Sequence[str | Text]], *,
                  width: int, keys: int = 1) -> list[Table]:
    """``rows`` under ``headers`` as rich tables no wider than ``width`` characters that
    never cut a number. The first ``keys`` columns are names: they wrap (down to
    :data:`NARROWEST_NAME` characters) when the table is too wide; the other columns never
    wrap and, when they still do not fit, go to as many tables as needed, one below the
    other, each with the name columns again (like a wide pandas frame). A ``str`` cell or
    title is rich markup; a :class:`Text` is literal.

    >>> tables = fitted_tables("t", ["name", "a", "b"], [["x" * 30, "0.1234", "0.5678"]],
    ...                        width=30)
    >>> [[c.header for c in t.columns] for t in tables]
    [['name', 'a'], ['name', 'b']]
    """
    cells = [[Text.from_markup(c) if isinstance(c, str) else c for c in row] for row in rows]
    natural = [max([_lines_width(Text(h)), *(_lines_width(row[j]) for row in cells)])
               for j, h in enumerate(headers)]
    values = natural[keys:]
    for n_tables in range(1, max(1, len(values)) + 1):  # the fewest tables that fit
        groups = [list(g) for g in np.array_split(np.arange(len(values)), n_tables)]
        widest = max(sum(values[j] + 3 for j in g) for g in groups)
        names = _folded(natural[:keys], width - 1 - widest)
        if 1 + sum(w + 3 for w in names) + widest <= width:
            break
    tables = []
    for n, group in enumerate(groups):
        table = Table(title=title if n == 0 else title + " (continued)", title_justify="left")
        for j in range(keys):
            table.add_column(headers[j], width=names[j], overflow="fold")
        for j in group:
            table.add_column(headers[keys + j], justify="right", no_wrap=True,
                             min_width=values[j])
        for row in cells:
            table.add_row(*row[:keys], *(row[keys + j] for j in group))
        tables.append(table)
    return tables


def _folded(names: list[int], room: int) -> list[int]:
    """Widths of the name columns (natural ``names``) folded, widest first and not below
    :data:`NARROWEST_NAME`, to take at most ``room`` characters with their padding and
    borders (as far as they can)."""
    names = list(names)
    while sum(w + 3 for w in names) > room and max(names, default=0) > NARROWEST_NAME:
        widest = names.index(max(names))
        names[widest] = max(NARROWEST_NAME, names[widest] - (sum(w + 3 for w in names) - room))
    return names


def _lines_width(text: Text) -> int:
    """The width in terminal cells of the widest line of ``text``."""
    return max(cell_len(line) for line in text.plain.split("\n"))


def _classwise_line(results, absent: str) -> str:
    """The class-wise ECE (mean over classes of the marginal ECEs, then over images)."""
    from ..estimators import dataset_classwise_ece

    value = dataset_classwise_ece(results.stats, absent=absent)
    return (f"class-wise ECE (mean of the classes' marginal ECEs, then over images): "
            f"{value:.4f}")


def _headline_tables(results, absent: str, width: int):
    """The headline table; with a region of interest, its table beside it (stacked when the
    terminal is too narrow for both)."""
    if results.roi is None or not results.roi.stats:
        return Group(*_headline_table(results, absent, width=width))
    from rich.columns import Columns

    spec = results.roi.options.get("roi")
    return Columns([Group(*_headline_table(results, absent, " on every voxel", width=width)),
                    Group(*_headline_table(results.roi, absent, f" on the region {spec}",
                                           width=width))],
                   padding=(0, 4))


def warning_kinds(warnings) -> list[tuple[str, int, str]]:
    """``(kind, count, example case)`` per kind of warning, most frequent first. The kind is
    the message without its case, files and numbers."""
    groups: dict[str, list] = {}
    for problem in warnings:
        text = problem.message
        if problem.case and text.startswith(f"case {problem.case}: "):
            text = text[len(f"case {problem.case}: "):]
        text = re.sub(r" \(prediction .*, label .*\)$", "", text)
        kind = re.sub(r"\d+(\.\d+)?(e-?\d+)?%?", "#", text)
        groups.setdefault(kind, []).append(problem)
    ordered = sorted(groups.items(), key=lambda item: -len(item[1]))
    return [(kind, len(items), items[0].case or items[0].file) for kind, items in ordered]


def print_summary(report, *, quiet: bool = False) -> None:
    """The headline table, then cases evaluated and skipped, each warning kind, notices,
    and where the files are. Everything taken from file names is printed literally."""
    console = Console(highlight=False)
    results = report.results
    errors, warnings = results.errors, results.warnings
    absent = results.options.get("absent", "include")
    if results.stats and not quiet:
        name = results.options.get("name")
        folder = results.options.get("pred_dir", "")
        console.print(Text(f"{name}: {folder}" if name else f"evaluated {folder}"))
        console.print(_headline_tables(results, absent, console.width))
        if results.n_dropped:
            console.print(f"{results.n_dropped} of {len(results)} images left out: a class is "
                          "absent from their ground truth (--absent drop-case)")
        elif results.n_absent:
            fate = "scored against an all-zero truth" if absent == "include" else "left out"
            console.print(f"{results.n_absent} image–class pairs have the class absent from "
                          f"the ground truth ({fate}; --absent {absent})")
        console.print(Text(_classwise_line(results, absent)))
        console.print(
            "ACE is the average calibration error (mean gap over non-empty bins), as in the "
            "paper; macro = mean ± std over images, micro = pooled bins.", style="dim",
        )
        if results.roi is not None and results.roi.stats:
            console.print(Text(printable(f"region of interest {results.roi.options['roi']}: "
                                         f"results in {report.roi.out_dir}/")))
    if quiet:
        console = Console(stderr=True, highlight=False)
    for notice in report.notices if not quiet else []:
        console.print(Text(printable(notice)))
    summary = f"{len(results)} cases evaluated, {report.n_skipped} skipped"
    if report.n_resumed:
        summary += f" ({report.n_resumed} taken from the interrupted run)"
    if not quiet or errors:
        console.print(Text(summary))
    for problem in errors[:10]:
        console.print(Text("skipped ", style="red") + Text(printable(problem.message)))
    if len(errors) > 10:
        console.print(f"... and {len(errors) - 10} more in problems.csv")
    if warnings and not quiet:
        console.print(f"{len(warnings)} warnings (all in problems.csv):")
        for kind, count, example in warning_kinds(warnings)[:8]:
            console.print(Text(printable(f"  {count} × {kind} (e.g. {example})")))
    if report.figures and not quiet:
        drawn = report.figures.get("n_case_figures", report.figures.get("n_drawn"))
        if drawn is not None:
            console.print(Text(printable(f"figures: {drawn} per-image diagrams and the dataset "
                                         f"histogram in {report.out_dir / 'figures'}")))
        if report.figures.get("class_selection"):
            console.print(Text(printable(
                f"figures show {report.figures['class_selection']}; draw others with "
                f"calibviz plot {report.out_dir} --classes NAME,...")))
    if not quiet and results.stats:
        console.print(Text(printable(f"results in {report.out_dir}/")))
