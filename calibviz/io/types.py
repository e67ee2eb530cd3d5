"""Plain data objects of the reading layer: options, cases, problems and results.

Everything here is a frozen dataclass of strings, numbers and tuples, so it pickles and can be
sent to a worker process (``ProcessPoolExecutor``) unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..stats import BinStats

FORMATS = ("auto", "nnunet", "nifti", "npy", "per-class-files")
SEVERITIES = ("error", "warning")


@dataclass(frozen=True)
class Problem:
    """One thing found wrong (or suspicious) with a case or a file.

    case : case id ("" for folder-level problems); file : the file concerned (or the folder);
    message : one line that names the case and the files; severity : "error" or "warning".
    """

    case: str
    file: str
    message: str
    severity: str = "error"

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be 'error' or 'warning', got {self.severity!r}")

    def __str__(self) -> str:
        return f"{self.severity}: {self.message}"


@dataclass(frozen=True)
class EvalOptions:
    """How predictions are read, checked and binned (see ``shared/spec/inputs.md``).

    n_bins, closure, binning, empty_weight : binning convention (as :func:`calibviz.bin_image`).
    format : "auto", "nnunet", "nifti", "npy" or "per-class-files".
    classes : ``"liver=1,tumour=2"`` — names and label values of the prediction channels.
    regions : ``"WT=1,2,4;TC=1,4;ET=4"`` — score these regions (truth ``isin(label, region)``).
    preset : "brats2021", "brats2023" or "kits23" (named regions).
    include_background : None = exclude the background channel when the model has one.
    ignore_label : label value whose voxels are ignored (nnU-Net's ``ignore`` is used too).
    mask_dir : folder of boolean masks paired by case id (voxels outside are ignored).
    layout : axis order of generic ``.npy``/``.npz`` arrays, e.g. "cijk", "ckji", "ijkc".
    npz_key : array name inside a generic ``.npz``.
    class_pattern : per-class-files pattern with ``{case}`` and ``{class}``.
    pattern, label_pattern : globs (relative to the folders) for predictions and labels.
    postfix : file-name postfix to strip, e.g. MONAI's "seg" / "prob".
    scale : multiplier for integer-stored probabilities without ``scl_slope`` (e.g. 1/255).
    self_check : nnU-Net — argmax/region reconstruction must equal the written segmentation.
    strict : unpaired files are errors, not warnings.
    """

    n_bins: int = 20
    closure: str = "right"
    binning: str = "hard"
    empty_weight: float = 0.01
    format: str = "auto"
    classes: str | None = None
    regions: str | None = None
    preset: str | None = None
    include_background: bool | None = None
    ignore_label: int | None = None
    mask_dir: str | None = None
    layout: str | None = None
    npz_key: str | None = None
    class_pattern: str | None = None
    pattern: str | None = None
    label_pattern: str | None = None
    postfix: str | None = None
    self_check: bool = True
    strict: bool = False
    scale: float | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.closure not in ("right", "left"):
            raise ValueError(f"closure must be 'right' or 'left', got {self.closure!r}")
        if self.binning not in ("hard", "soft"):
            raise ValueError(f"binning must be 'hard' or 'soft', got {self.binning!r}")
        if self.regions is not None and self.preset is not None:
            raise ValueError("give either regions or preset, not both")

    @classmethod
    def from_kwargs(cls, **options) -> EvalOptions:
        """Build options from keyword arguments, naming any unknown one."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown option(s) {unknown}; known: {sorted(known)}")
        return cls(**options)


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

    @property
    def prediction_name(self) -> str:
        if isinstance(self.prediction, tuple):
            return ", ".join(self.prediction)
        return self.prediction


@dataclass(frozen=True)
class CaseResult:
    """Result of one case: its statistics (None when a check failed) and the problems found."""

    case_id: str
    stats: BinStats | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.stats is not None


@dataclass(frozen=True)
class FolderResult:
    """Per-image statistics of the cases that passed, with their ids, and every problem."""

    cases: list[str]
    stats: list[BinStats]
    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]
