"""A figure's layout, taken from one laid-out figure and given to another of the same
structure, which is then drawn without a layout engine.

Matplotlib's constrained layout measures every text of a figure twice per draw: about half
of the dataset figure's drawing time.
A :class:`FrozenLayout` is what the engine decided (each axes' box, anchor and box aspect,
each figure-level text's place), so a figure can be laid out once — ahead of time, on a
stand-in with the same panels — and drawn many times at the cost of the draw alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib
from matplotlib.figure import Figure


@dataclass(frozen=True)
class FrozenLayout:
    """Per axes of ``figure.axes``: ``(bounds (x0, y0, width, height) in figure fractions,
    anchor, box aspect)``; per text of ``figure.texts`` (suptitle, axis names):
    ``(position, vertical alignment)``."""

    axes: tuple
    texts: tuple

    @classmethod
    def of(cls, figure: Figure) -> FrozenLayout:
        """The layout of ``figure`` as it stands (after its layout engine has run)."""
        axes = tuple((tuple(ax.get_position(original=True).bounds), ax.get_anchor(),
                      ax.get_box_aspect()) for ax in figure.axes)
        texts = tuple((tuple(text.get_position()), text.get_verticalalignment())
                      for text in figure.texts)
        return cls(axes, texts)

    def fits(self, figure: Figure) -> bool:
        """Whether ``figure`` has as many axes and figure texts as the one laid out."""
        return len(figure.axes) == len(self.axes) and len(figure.texts) == len(self.texts)

    def apply(self, figure: Figure) -> None:
        """Place ``figure``'s axes and texts as laid out and remove its layout engine (it
        is drawn as placed). ``ValueError`` when it does not :meth:`fit <fits>`."""
        if not self.fits(figure):
            raise ValueError(f"this layout is for {len(self.axes)} axes and "
                             f"{len(self.texts)} figure texts, not {len(figure.axes)} "
                             f"and {len(figure.texts)}")
        # no engine at all (not matplotlib's placeholder, which saving would still run)
        with matplotlib.rc_context({"figure.autolayout": False,
                                    "figure.constrained_layout.use": False}):
            figure.set_layout_engine(None)
        for ax, (bounds, anchor, box_aspect) in zip(figure.axes, self.axes, strict=True):
            ax.set_position(bounds, which="both")
            ax.set_anchor(anchor)
            ax.set_box_aspect(box_aspect)
        for text, (position, alignment) in zip(figure.texts, self.texts, strict=True):
            text.set_position(position)
            text.set_verticalalignment(alignment)
