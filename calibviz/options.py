"""One validation layer: every option's allowed values, and the checks that run once, when
options are built. Everything else (the kernel, the readers, the CLI) takes options that were
checked here. Each check raises ``ValueError`` naming the option.

The choice tuples here are the only declaration of each set of values: the CLI builds its
choices from them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from fractions import Fraction

CLOSURES = ("right", "left")
BINNINGS = ("hard", "soft")
#: ``include``: absent classes are scored (against an all-zero outcome), as the reference;
#: ``exclude``: an image–class pair whose class is absent takes no part (NaN for every metric,
#: Dice too, and left out of the pooled sums);
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
#: Label values are looked up in a table of one byte per value from the lowest declared
#: value (0 counts) to the highest: they may span at most this many values, so an option
#: naming a label value (``ignore_label``, ``classes``, ``regions``) stays within ± this.
MAX_LABEL_SPAN = 10_000_000
#: Probabilities outside [0, 1] by at most this much are clipped (and counted); further out
#: is an error. The one tolerance: the kernel's single pass applies it.
CLIP_TOLERANCE = 1e-3
#: Named label regions (``--region-preset``): name → ((region, label values), ...).
REGION_PRESETS: dict[str, tuple[tuple[str, tuple[int, ...]], ...]] = {
    "brats2021": (("WT", (1, 2, 4)), ("TC", (1, 4)), ("ET", (4,))),
    "brats2023": (("WT", (1, 2, 3)), ("TC", (1, 3)), ("ET", (3,))),
    "kits23": (("kidney_and_masses", (1, 2, 3)), ("masses", (2, 3)), ("tumour", (2,))),
}


#: Most bins a class is binned at (``n_bins``; ``--bins`` and ``--fine-bins``, which is what
#: a run with fine bins bins at). The kernel keeps, for each class it bins at once, 64
#: accumulator slots × 4 copies × 5 float64 sums per bin (:func:`calibviz.binning._bin_kernel`):
#: 10 KiB per bin, so 100,000 bins already take 1 GiB per class and case being binned (a run
#: bins one class at a time, two cases per worker), and every image keeps 6 float64 per class
#: and bin (4.8 MB per class and image at this cap), in memory and in ``stats.npz``. More bins
#: than this cannot be held for a folder of images; sweeps need far fewer (600 gives 5–100).
MAX_BINS = 100_000
#: Most bootstrap resamples (``n_bootstrap``; ``--bootstrap``, ``--band``): ten times the
#: default of 10,000, whose percentile intervals already vary in their third digit only.
#: Every resample keeps one float64 per interval computed (a run's summary: 7 per class), so
#: 100,000 resamples take 5.6 MB per class, and drawing them is ``n_images`` random numbers
#: each (10⁸ for 1,000 images: seconds); beyond that the time and memory grow with nothing
#: gained.
MAX_RESAMPLES = 100_000
#: Seeds of the bootstrap: an integer ``0 ≤ seed ≤ 2⁶⁴ − 1`` (numpy's ``default_rng`` takes any
#: integer >= 0; 64 bits keep the seed storable wherever the run's options go).
MAX_SEED = 2**64 - 1


def check_int(value, name: str, low: int, high: int | None = None, why: str = "") -> int:
    """``value`` as an int in ``[low, high]`` (no upper bound when ``high`` is None), else
    ``ValueError`` naming the option (``why``: the reason for the bounds, said with them);
    bools and fractions are refused."""
    bounds = (f">= {low}" if high is None else f"from {low} to {high}") + (f" ({why})" if why
                                                                            else "")
    if isinstance(value, bool) or not isinstance(value, int) and not _is_np_int(value):
        raise ValueError(f"{name} must be an integer {bounds}, got {value!r}")
    if int(value) < low or high is not None and int(value) > high:
        raise ValueError(f"{name} must be {bounds}, got {value!r}")
    return int(value)


def check_n_bins(n_bins, name: str = "n_bins") -> int:
    """``n_bins`` as an int from 1 to :data:`MAX_BINS`, else ``ValueError`` naming the
    option (more bins would not fit in memory: see :data:`MAX_BINS`)."""
    return check_int(n_bins, name, 1, MAX_BINS,
                     "more would not fit in memory: 10 KiB of bin arrays per bin and class")


#: Above this many bins the figures are unreadable and the dataset histogram (B × B cells
#: per class: 80 GB of counts at 100,000 bins) grows without bound: figures are refused,
#: numbers are not.
MAX_FIGURE_BINS = 500


def check_figure_bins(n_bins: int, where: str = "figures", hint: str = "") -> None:
    """``ValueError`` when figures of ``n_bins`` bins are asked for (``where``: what would
    draw them; ``hint``: what the user can do instead) and ``n_bins`` passes
    :data:`MAX_FIGURE_BINS`."""
    if n_bins > MAX_FIGURE_BINS:
        hint = hint or ("calibviz sweep gives the metrics at fewer bins from the same run "
                        "when it has them")
        raise ValueError(f"{where} with {n_bins} bins cannot be read (and the dataset "
                         f"histogram needs {n_bins}² cells per class); figures take at most "
                         f"{MAX_FIGURE_BINS} bins ({hint})")


def check_resamples(n_bootstrap, name: str = "n_bootstrap") -> int:
    """A number of bootstrap resamples: an int from 0 (no intervals) to
    :data:`MAX_RESAMPLES`, else ``ValueError`` naming the option. An integral float such as
    ``2000.0`` is taken as that integer."""
    if isinstance(n_bootstrap, float) and n_bootstrap.is_integer():
        n_bootstrap = int(n_bootstrap)
    return check_int(n_bootstrap, name, 0, MAX_RESAMPLES)


def check_seed(seed, name: str = "seed") -> int | None:
    """A bootstrap seed: an int from 0 to :data:`MAX_SEED` (None: fresh entropy), else
    ``ValueError`` naming the option."""
    return None if seed is None else check_int(seed, name, 0, MAX_SEED)


def check_confidence(confidence, name: str = "confidence") -> float:
    """An interval's confidence level: a number strictly between 0 and 1."""
    try:
        number = float(confidence)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(confidence, bool) or not 0 < number < 1:
        raise ValueError(f"{name} must lie strictly between 0 and 1 (e.g. 0.95), "
                         f"got {confidence!r}")
    return number


def check_label_value(value, name: str = "ignore_label") -> int | None:
    """A label value an option names (e.g. the ignored label): an int within
    ± :data:`MAX_LABEL_SPAN` (None stays None), else ``ValueError`` naming the option."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return check_int(value, name, -MAX_LABEL_SPAN, MAX_LABEL_SPAN,
                     "label values are looked up in a table of one entry per value")


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


def check_ignore_unscored(ignore: int, named, where: str = "") -> None:
    """``ValueError`` when the ignore label is a label value that a scored class or region
    holds (``named``: pairs of a name and its label values): its voxels would be left out of
    that class's own score, silently. One rule for the library and the command line."""
    for name, values in named:
        values = [int(v) for v in values]
        if ignore in values:
            raise ValueError(f"{where}the ignore label {ignore} is a label value of class "
                             f"{name!r} (values {values}): its voxels cannot be both ignored "
                             "and scored; give the ignore label a value no class uses")


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
    for value in values:
        check_label_value(value, f"{what}: label value")
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


def mapping_text(value, what: str):
    """``classes`` / ``regions`` given as a mapping (``{"liver": 1}``, ``{"WT": [1, 2, 4]}``)
    as the text the command line takes (``"liver=1"``, ``"WT=1,2,4"``); other values as
    they are. ``ValueError`` for a name that the text form cannot hold."""
    if not isinstance(value, Mapping):
        return value
    items = []
    for name, values in value.items():
        if not isinstance(name, str) or not name.strip() or any(c in name for c in "=,;"):
            raise ValueError(f"{what}: class names must be non-empty text without '=', ',' "
                             f"or ';'; got {name!r}")
        values = [values] if isinstance(values, int | str) else list(values)
        items.append(f"{name}=" + ",".join(str(v) for v in values))
    return (";" if what == "regions" else ",").join(items)


#: EvalOptions fields that are text (or None); a value of another type is a TypeError.
_TEXT_FIELDS = ("closure", "binning", "format", "classes", "regions", "preset", "mask_dir",
                "layout", "npz_key", "class_pattern", "pattern", "label_pattern", "postfix",
                "dice", "activation")


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
    classes : ``"liver=1,tumour=2"`` (or ``{"liver": 1, "tumour": 2}``) — names and label
        values of the prediction channels.
    regions : ``"WT=1,2,4;TC=1,4;ET=4"`` (or ``{"WT": [1, 2, 4], ...}``) — score these
        regions (truth ``isin(label, region)``).
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
        if isinstance(self.mask_dir, os.PathLike):
            set_(self, "mask_dir", os.fspath(self.mask_dir))
        set_(self, "classes", mapping_text(self.classes, "classes"))
        set_(self, "regions", mapping_text(self.regions, "regions"))
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be text (see EvalOptions), got "
                                f"{type(value).__name__} {value!r}")
        set_(self, "n_bins", check_n_bins(self.n_bins))
        check_choice("closure", self.closure, CLOSURES)
        check_choice("binning", self.binning, BINNINGS)
        check_choice("format", self.format, INPUT_FORMATS)
        check_choice("dice", self.dice, DICE_RULES)
        if self.activation is not None:
            check_choice("activation", self.activation, ACTIVATIONS)
        set_(self, "empty_weight", check_empty_weight(self.empty_weight))
        set_(self, "scale", parse_scale(self.scale))
        set_(self, "ignore_label", check_label_value(self.ignore_label))
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
