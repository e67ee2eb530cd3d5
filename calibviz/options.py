"""One validation layer: every option's allowed values, and the checks that run once, when
options are built. Everything else (the kernel, the readers, the CLI) takes options that were
checked here. Each check raises ``ValueError`` naming the option.

The choice tuples here are the only declaration of each set of values: the CLI builds its
choices from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from fractions import Fraction

CLOSURES = ("right", "left")
BINNINGS = ("hard", "soft")
#: ``include``: absent classes are scored (against an all-zero outcome), as the reference;
#: ``exclude``: an image–class pair whose class is absent takes no part;
#: ``drop-case``: an image missing any class takes no part at all (the paper's "cases with
#: complete ground-truth classes" table).
ABSENT_POLICIES = ("include", "exclude", "drop-case")
CSV_STYLES = ("tidy", "reference")
#: Dice's segmentation: ``auto`` = argmax for softmax maps (what nnU-Net and MONAI write),
#: threshold (each channel ``p >= 0.5``, the paper's rule) otherwise.
DICE_RULES = ("auto", "argmax", "threshold")
INPUT_FORMATS = ("auto", "nnunet", "nifti", "npy", "per-class-files")
#: ``activation``: what turns stored logits into probabilities while streaming.
ACTIVATIONS = ("softmax", "sigmoid")
DEFAULT_EMPTY_WEIGHT = 0.01
#: Probabilities outside [0, 1] by at most this much are clipped (and counted); further out
#: is an error. The one tolerance: the kernel's single pass applies it.
CLIP_TOLERANCE = 1e-3
#: Named label regions (``--region-preset``): name → ((region, label values), ...).
REGION_PRESETS: dict[str, tuple[tuple[str, tuple[int, ...]], ...]] = {
    "brats2021": (("WT", (1, 2, 4)), ("TC", (1, 4)), ("ET", (4,))),
    "brats2023": (("WT", (1, 2, 3)), ("TC", (1, 3)), ("ET", (3,))),
    "kits23": (("kidney_and_masses", (1, 2, 3)), ("masses", (2, 3)), ("tumour", (2,))),
}


def check_n_bins(n_bins, name: str = "n_bins") -> int:
    """``n_bins`` as an int >= 1, else ``ValueError`` naming the option."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) and not _is_np_int(n_bins):
        raise ValueError(f"{name} must be an integer >= 1, got {n_bins!r}")
    if int(n_bins) < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {n_bins!r}")
    return int(n_bins)


def _is_np_int(value) -> bool:
    return type(value).__module__ == "numpy" and getattr(value, "dtype", None) is not None \
        and value.dtype.kind in "iu"


def check_choice(name: str, value, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else ``ValueError`` listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_empty_weight(value, name: str = "empty_weight") -> float:
    """A soft-bin emptiness threshold: a finite number >= 0."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}") from None
    if not number >= 0 or number == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


def check_relative_glob(name: str, pattern: str | None) -> None:
    """A file pattern must stay inside its folder: relative, without ``..``."""
    if pattern is None:
        return
    parts = pattern.replace("\\", "/").split("/")
    if not pattern.strip() or pattern.startswith(("/", "\\", "~")) or ".." in parts \
            or (len(pattern) > 1 and pattern[1] == ":"):
        raise ValueError(f"{name} {pattern!r} must be a glob relative to its folder "
                         "(e.g. '*.nii.gz' or '*/*_seg.nii.gz'), without '..'")


def parse_scale(value) -> float | None:
    """A multiplier for integer-stored probabilities: a positive number or a fraction such as
    ``"1/255"``; None stays None."""
    if value is None:
        return None
    try:
        number = float(Fraction(str(value).strip())) if isinstance(value, str) else float(value)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"scale must be a positive number such as 1/255, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise ValueError(f"scale must be a positive number such as 1/255, got {value!r}")
    return number


# ------------------------------------------------------------- classes and regions
def _int_values(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v != "")
    except ValueError:
        raise ValueError(f"{what}: label values must be integers, got {text!r}") from None
    if not values:
        raise ValueError(f"{what}: no label values given")
    return values


def parse_classes(text: str) -> tuple[tuple[str, int], ...]:
    """``"liver=1,tumour=2"`` → ``(("liver", 1), ("tumour", 2))``.

    >>> parse_classes("liver=1, tumour=2")
    (('liver', 1), ('tumour', 2))
    """
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"classes: expected 'name=value' items, got {item!r} in {text!r}")
        (v,) = _int_values(value, f"classes item {item!r}")
        out.append((name.strip(), v))
    if not out:
        raise ValueError(f"classes: nothing given in {text!r}")
    _check_unique([n for n, _ in out], "classes")
    return tuple(out)


def parse_regions(text: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """``"WT=1,2,4;TC=1,4;ET=4"`` → ``(("WT", (1, 2, 4)), ("TC", (1, 4)), ("ET", (4,)))``.

    >>> parse_regions("WT=1,2,4;TC=1,4;ET=4")
    (('WT', (1, 2, 4)), ('TC', (1, 4)), ('ET', (4,)))
    """
    out = []
    for item in text.split(";"):
        item = item.strip()
        if not item:
            continue
        name, sep, values = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"regions: expected 'name=v1,v2' items, got {item!r} in {text!r}")
        out.append((name.strip(), _int_values(values, f"region {name.strip()!r}")))
    if not out:
        raise ValueError(f"regions: nothing given in {text!r}")
    _check_unique([n for n, _ in out], "regions")
    return tuple(out)


def _check_unique(names, what):
    seen = set()
    for n in names:
        if n in seen:
            raise ValueError(f"{what}: name {n!r} given twice")
        seen.add(n)


def user_regions(options: EvalOptions) -> tuple[tuple[str, tuple[int, ...]], ...] | None:
    """Regions asked for by ``regions`` or ``preset`` (None when neither is given)."""
    if options.preset is not None:
        if options.preset not in REGION_PRESETS:
            raise ValueError(
                f"unknown preset {options.preset!r}; known: {', '.join(sorted(REGION_PRESETS))}"
            )
        return REGION_PRESETS[options.preset]
    if options.regions is not None:
        return parse_regions(options.regions)
    return None


@dataclass(frozen=True)
class EvalOptions:
    """How predictions are read, checked and binned; validated when built.

    n_bins, closure, binning, empty_weight : binning convention (as :func:`calibviz.bin_image`).
    format : "auto", "nnunet", "nifti", "npy" or "per-class-files" (what is read).
    classes : ``"liver=1,tumour=2"`` — names and label values of the prediction channels.
    regions : ``"WT=1,2,4;TC=1,4;ET=4"`` — score these regions (truth ``isin(label, region)``).
    preset : named regions: "brats2021", "brats2023" or "kits23".
    include_background : None = exclude the background channel when the model has one.
    ignore_label : label value whose voxels are ignored (nnU-Net's ``ignore`` is used too).
    mask_dir : folder of 0/1 masks paired by case id (voxels with 0 are ignored; other values
        are a case error).
    layout : axis order of generic ``.npy``/``.npz`` arrays, e.g. "cijk", "ckji", "ijkc".
    npz_key : array name inside a generic ``.npz``.
    class_pattern : per-class-files pattern with ``{case}`` and ``{class}``.
    pattern, label_pattern : globs (relative to the folders) for predictions and labels.
    postfix : file-name postfix to strip, e.g. MONAI's "seg" / "prob".
    scale : multiplier for integer-stored probabilities without ``scl_slope`` (e.g. 1/255;
        the string "1/255" is accepted).
    activation : None (the files hold probabilities), or "softmax" / "sigmoid" applied to
        stored logits while streaming (softmax over the channels of each voxel); refused for
        nnU-Net's npz (they hold probabilities), a warning when the values look like
        probabilities.
    self_check : nnU-Net — argmax/region reconstruction must equal the written segmentation.
    dice : the segmentation Dice scores: "auto" (argmax for softmax maps, else threshold),
        "argmax" or "threshold" (each channel ``p >= 0.5``).
    strict : unpaired files are errors, not warnings.
    roi : a region of interest, ``"band:MM"`` or ``"box:MM"`` (:mod:`calibviz.roi`): each class
        is also scored on its own region only, as a second result set.
    top_label : softmax maps: add a ``top-label`` row (confidence the largest probability,
        outcome ``argmax == label``).
    """

    n_bins: int = 20
    closure: str = "right"
    binning: str = "hard"
    empty_weight: float = DEFAULT_EMPTY_WEIGHT
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
    dice: str = "auto"
    strict: bool = False
    scale: float | None = None
    activation: str | None = None
    roi: str | None = None
    top_label: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "n_bins", check_n_bins(self.n_bins))
        check_choice("closure", self.closure, CLOSURES)
        check_choice("binning", self.binning, BINNINGS)
        check_choice("format", self.format, INPUT_FORMATS)
        check_choice("dice", self.dice, DICE_RULES)
        if self.activation is not None:
            check_choice("activation", self.activation, ACTIVATIONS)
        set_(self, "empty_weight", check_empty_weight(self.empty_weight))
        set_(self, "scale", parse_scale(self.scale))
        if self.roi is not None:
            from .roi import parse_roi

            set_(self, "roi", str(parse_roi(self.roi)))
        if self.regions is not None and self.preset is not None:
            raise ValueError("give either regions or preset, not both")
        for name in ("pattern", "label_pattern"):
            check_relative_glob(name, getattr(self, name))
        # names and values parse now, so a typo is reported before any case runs
        if self.classes is not None:
            parse_classes(self.classes)
        if self.regions is not None:
            parse_regions(self.regions)
        if self.preset is not None:
            check_choice("preset", self.preset, tuple(REGION_PRESETS))

    @classmethod
    def from_kwargs(cls, **options) -> EvalOptions:
        """Build options from keyword arguments, naming any unknown one."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown option(s) {unknown}; known: {sorted(known)}")
        return cls(**options)
