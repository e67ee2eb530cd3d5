"""The ``top-label`` row of a softmax map, from the running max and argmax kept while the
channels stream: confidence the largest probability of each voxel, outcome ``argmax ==
label`` (ties go to the lowest channel, as ``numpy.argmax``)."""

from __future__ import annotations

import numpy as np

from ..stats import TOP_LABEL, BinStats
from .watch import CaseInputs


def check_top_label(inputs_softmax: bool, channel_names) -> str | None:
    """Why a top-label row cannot be made (None when it can): it needs a softmax map."""
    if inputs_softmax:
        return None
    return ("--top-label needs a softmax map (one channel per label, background included); "
            f"these channels ({', '.join(channel_names)}) are scored independently")


def top_label_row(inputs: CaseInputs, best: np.ndarray, argbest: np.ndarray) -> BinStats:
    """One ``top-label`` row: ``best`` ``(*spatial)`` the largest probability per voxel,
    ``argbest`` the channel it came from; scored where the case's mask and ignore label
    allow, binned with the run's convention."""
    from ..binning import BinAccumulator  # Numba: loaded with the first case

    options, resolved = inputs.options, inputs.resolved
    channel_labels = np.array([v[0] for v in resolved.channel_values], dtype=np.int64)
    correct = channel_labels[argbest] == inputs.labels
    accumulator = BinAccumulator(
        [TOP_LABEL], n_bins=options.n_bins, precision=best.dtype, closure=options.closure,
        binning=options.binning, empty_weight=options.empty_weight,
        where=f"case {inputs.case.case_id}: ")
    accumulator.add_class(0, best, correct, mask=inputs.scored_voxels())
    return accumulator.result()
