"""PNG output straight from the Agg canvas, without ``savefig``'s extra layout pass.

``savefig`` of a figure with a layout engine draws it twice (once without rendering, to run
the engine, then for real); :func:`draw_png` runs the engine once and draws once.
:func:`encode_png` writes the Agg buffer with ``savefig``'s metadata through
:func:`calibviz.viz.png.png_bytes` (the same pixels, files the same size, encoded in about
a tenth of the time Pillow takes). :func:`at_dpi` and :func:`hidden` are the context managers a
figure redrawn in parts (:class:`~calibviz.viz.casefigure.CaseFigure`) builds on. These
paths are taken only when :func:`plain_savefig` says that the user's ``savefig.*``
settings would not change the output; otherwise callers use ``savefig``.
"""

from __future__ import annotations

from contextlib import contextmanager, suppress

import matplotlib
import numpy as np

from .png import png_bytes

#: PNG metadata of every figure (as ``save_figure`` writes it).
PNG_METADATA = {"Software": "calibviz"}


def plain_savefig() -> bool:
    """Whether ``savefig`` would write exactly the canvas (no tight bounding box, no
    transparency, the figure's own colours), so that drawing the canvas here is the same."""
    rc = matplotlib.rcParams
    return (rc["savefig.bbox"] in (None, "standard") and not rc["savefig.transparent"]
            and all(str(rc[f"savefig.{k}"]) == "auto" for k in ("facecolor", "edgecolor")))


@contextmanager
def at_dpi(figure, dpi: float):
    """The figure at ``dpi`` (pixels per inch) inside the block, as ``savefig`` sets it."""
    old = figure.dpi
    figure.dpi = dpi
    try:
        yield figure
    finally:
        figure.dpi = old


@contextmanager
def hidden(artists):
    """The ``artists`` made invisible inside the block, their visibility restored after."""
    artists = [a for a in artists if a is not None]
    shown = [a.get_visible() for a in artists]
    for artist in artists:
        artist.set_visible(False)
    try:
        yield
    finally:
        for artist, visible in zip(artists, shown, strict=True):
            artist.set_visible(visible)


def encode_png(rgba, dpi: float) -> bytes:
    """PNG bytes of an Agg RGBA buffer ``[H, W, 4]`` uint8 with ``savefig``'s metadata
    (:data:`PNG_METADATA`, the resolution ``dpi``)."""
    return png_bytes(np.asarray(rgba), dpi, PNG_METADATA)


def draw_png(figure, dpi: float) -> bytes:
    """PNG bytes of ``figure`` at ``dpi``: its layout engine (if any) run once, then one
    draw with the engine off (as ``savefig`` does after its own, extra, layout draw)."""
    engine = figure.get_layout_engine()
    with at_dpi(figure, dpi):
        if engine is not None:
            if figure.axes:
                with suppress(ValueError):  # as Figure.draw: a layout that cannot be made
                    engine.execute(figure)
            figure.set_layout_engine("none")
        try:
            figure.canvas.draw()
        finally:
            if engine is not None:
                figure.set_layout_engine(engine)
        return encode_png(np.asarray(figure.canvas.buffer_rgba()), dpi)
