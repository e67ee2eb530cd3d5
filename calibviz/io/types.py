"""Plain data objects of the reading layer: cases, problems, label definitions and the
result of one case.

Everything here is a frozen dataclass of strings, numbers and tuples, so it pickles and can be
sent to a worker process (``ProcessPoolExecutor``) unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..stats import BinStats

SEVERITIES = ("error", "warning", "usage")


class InputError(ValueError):
    """A problem with one case's input; ``file`` names the file concerned. ``usage``: the
    options do not fit the data (the run stops with a usage error instead of skipping)."""

    def __init__(self, message: str, file: str = "", *, usage: bool = False) -> None:
        super().__init__(message)
        self.file = file
        self.usage = usage


@dataclass(frozen=True)
class Problem:
    """One thing found wrong (or suspicious) with a case or a file.

    case : case id ("" for folder-level problems); file : the file concerned (or the folder);
    message : one line that names the case and the files; severity : "error" (the case is
    skipped), "warning", or "usage" (the options do not fit the data: the run stops).
    """

    case: str
    file: str
    message: str
    severity: str = "error"

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    def __str__(self) -> str:
        return f"{self.severity}: {self.message}"


@dataclass(frozen=True)
class LabelSpec:
    """Label definitions of a model (from ``dataset.json``).

    entries : ``(name, values)`` in channel order as written (background included); a region
    model has several values per entry. is_region : the model predicts regions (sigmoid).
    regions_class_order : nnU-Net's painting order for region models.
    ignore_label : the ``ignore`` label value, if any.
    """

    entries: tuple[tuple[str, tuple[int, ...]], ...]
    is_region: bool = False
    regions_class_order: tuple[int, ...] | None = None
    ignore_label: int | None = None
    source: str = "dataset.json"


@dataclass(frozen=True)
class Case:
    """One prediction/label pair to evaluate.

    prediction : a path, or a tuple of paths (one per class for per-class-files).
    format : "nnunet-v2", "nnunet-v1", "nifti", "npy" or "per-class-files".
    segmentation : nnU-Net's segmentation written next to the npz (for the self-check).
    model : label definitions read from ``dataset.json`` (nnU-Net) or None.
    reorient : nnU-Net ``...WithReorient`` reader: arrays are in the label's RAS frame.
    class_files : per-class-files: the class name of each prediction path.
    error : set by discovery when the case cannot be evaluated as found (ambiguous files);
        evaluating it reports this error and nothing is read.
    """

    case_id: str
    prediction: str | tuple[str, ...]
    label: str
    mask: str | None = None
    format: str = "nifti"
    segmentation: str | None = None
    model: LabelSpec | None = None
    reorient: bool = False
    class_files: tuple[str, ...] | None = None
    error: str | None = None

    @property
    def prediction_name(self) -> str:
        if isinstance(self.prediction, tuple):
            return ", ".join(self.prediction)
        return self.prediction

    @property
    def files(self) -> tuple[tuple[str, str], ...]:
        """Every file this case reads, as ``(what, path)``."""
        preds = self.prediction if isinstance(self.prediction, tuple) else (self.prediction,)
        out = [("label", self.label)] + [("prediction", p) for p in preds]
        if self.mask is not None:
            out.append(("mask", self.mask))
        if self.segmentation is not None:
            out.append(("nnU-Net segmentation", self.segmentation))
        return tuple(out)


@dataclass(frozen=True)
class CaseResult:
    """Result of one case: its statistics (None when a check failed), the problems found
    and what a run records of it (``info``: the label values of each scored class or region
    under ``class_labels``, the Dice rule used under ``dice_rule``); with a region of
    interest, the statistics on it (``roi_stats``)."""

    case_id: str
    stats: BinStats | None
    problems: list[Problem] = field(default_factory=list)
    info: dict | None = None  # what the run reports: class_labels, dice_rule
    roi_stats: BinStats | None = None  # on each class's region of interest (``roi``)

    @property
    def ok(self) -> bool:
        return self.stats is not None
