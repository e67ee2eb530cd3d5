"""Figure size and font presets, and the names the figure options accept. Plain Python (no
matplotlib), so the command line can build its choices without loading matplotlib."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

#: Colour norms of the dataset reliability histogram.
NORMS = ("power", "log", "linear")
#: Image formats figures are written in.
FORMATS = ("png", "pdf", "svg")


@dataclass(frozen=True)
class Preset:
    """Size and fonts of a figure.

    width : total figure width in inches (``None``: ``panel_width`` per column)
    panel_width : width of one panel in inches when ``width`` is ``None``
    font_size : base font size in points (titles the same, ticks and legend 85 %)
    font : font family (DejaVu Sans ships with matplotlib, so output is reproducible)
    dpi : resolution of PNG output
    max_columns : most panels per row
    """

    width: float | None = None
    panel_width: float = 3.0
    font_size: float = 9.0
    font: str = "DejaVu Sans"
    dpi: int = 150
    max_columns: int = 4

    def rc(self) -> dict:
        """The rcParams this preset applies (inside ``matplotlib.rc_context`` only)."""
        small = round(self.font_size * 0.85, 2)
        return {
            "font.family": "sans-serif",
            "font.sans-serif": [self.font, "DejaVu Sans"],
            "font.size": self.font_size,
            "axes.titlesize": self.font_size,
            "axes.labelsize": self.font_size,
            "xtick.labelsize": small,
            "ytick.labelsize": small,
            "legend.fontsize": small,
            "figure.titlesize": round(self.font_size * 1.1, 2),
            "figure.labelsize": self.font_size,
            "axes.linewidth": 0.6,
            "xtick.major.width": 0.6,
            "ytick.major.width": 0.6,
            "xtick.major.size": 2.5,
            "ytick.major.size": 2.5,
            "lines.linewidth": 1.0,
            "pdf.fonttype": 42,
            "ps.fonttype": 42,
            "svg.fonttype": "path",
            "svg.hashsalt": "calibviz",
            "text.usetex": False,
        }

    def columns(self, n_panels: int) -> int:
        return max(1, min(n_panels, self.max_columns))

    def figure_width(self, n_columns: int) -> float:
        return self.width if self.width is not None else self.panel_width * n_columns


#: Named figure-size presets: ``screen`` (default), ``single`` (one column of a two-column
#: paper, 3.5 in) and ``double`` (full text width, 7.16 in).
SIZE_PRESETS: dict[str, Preset] = {
    "screen": Preset(),
    "single": Preset(width=3.5, font_size=7.0, dpi=300, max_columns=2),
    "double": Preset(width=7.16, font_size=8.0, dpi=300, max_columns=4),
}


def check_format(fmt: str) -> str:
    """The image format in lower case without a dot; ``ValueError`` unless one of FORMATS."""
    fmt = str(fmt).lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"unknown figure format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def check_norm(norm, gamma: float = 0.35) -> None:
    """``ValueError`` for an unknown norm name (one of NORMS) or a power norm's gamma
    that is not positive; anything but a name (a Matplotlib ``Normalize``) passes."""
    if not isinstance(norm, str):
        return
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    if norm == "power" and not gamma > 0:
        raise ValueError(f"gamma must be positive, got {gamma}")


def get_preset(preset: str | Preset | None = None, **overrides) -> Preset:
    """A :class:`Preset` by name (``screen``, ``single``, ``double``) or as given, with
    fields overridden where the override is not ``None`` (e.g. ``font_size=6``).

    >>> get_preset("single", font_size=6).font_size
    6
    """
    if preset is None:
        base = SIZE_PRESETS["screen"]
    elif isinstance(preset, Preset):
        base = preset
    elif preset in SIZE_PRESETS:
        base = SIZE_PRESETS[preset]
    else:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(SIZE_PRESETS)}")
    known = {f.name for f in fields(Preset)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown preset field(s) {sorted(unknown)}; known: {sorted(known)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    return replace(base, **changes) if changes else base
