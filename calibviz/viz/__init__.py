"""Calibration figures (matplotlib, never pyplot; global matplotlib state is left alone).

* :mod:`~calibviz.viz.displays`: single-Axes display objects in the manner of scikit-learn's
  ``CalibrationDisplay`` (:class:`ReliabilityDiagramDisplay`,
  :class:`DatasetReliabilityHistogramDisplay`): data in, ``plot(ax)`` draws, returns self.
* :mod:`~calibviz.viz.layouts`: multi-panel figures of one image or a dataset
  (:func:`plot_case`, :func:`plot_dataset`).
* :mod:`~calibviz.viz.figures`: building a figure, colour norms, :func:`save_figure`
  (PNGs straight from the canvas, :mod:`~calibviz.viz.raster`);
  :mod:`~calibviz.viz.presets`: size presets (:data:`SIZE_PRESETS`, :func:`get_preset`).
* :mod:`~calibviz.viz.casefigure`: the per-image figure of a run, built once and blitted
  per case.
* :mod:`~calibviz.viz.render`: the figures of a run written to files
  (:func:`render_figures`), drawn here or by a :mod:`~calibviz.viz.worker` process;
  :mod:`~calibviz.viz.selection`: which classes and cases.

Names load on first use, so ``calibviz.viz.presets`` alone does not import matplotlib.
"""

from importlib import import_module

_LAZY = {
    "ALL_CLASSES": "displays",
    "DatasetReliabilityHistogramDisplay": "displays",
    "ReliabilityDiagramDisplay": "displays",
    "XLABEL": "displays",
    "YLABEL": "displays",
    "format_value": "displays",
    "make_norm": "figures",
    "new_figure": "figures",
    "save_figure": "figures",
    "plot_case": "layouts",
    "plot_dataset": "layouts",
    "resolve_classes": "selection",
    "figure_classes": "selection",
    "FORMATS": "presets",
    "NORMS": "presets",
    "SIZE_PRESETS": "presets",
    "Preset": "presets",
    "get_preset": "presets",
    "DATASET_FIGURE": "render",
    "KINDS": "render",
    "render_case_figure": "render",
    "render_dataset_figure": "render",
    "render_figures": "render",
    "safe_name": "selection",
    "select_cases": "selection",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])


__all__ = sorted(_LAZY)
