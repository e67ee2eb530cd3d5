"""What every reader hands out: a :class:`Source` of one prediction, one channel at a time, in
the label's ``(i, j, k)`` axis order."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


def _f_order(array: np.ndarray) -> np.ndarray:
    """The array as F-contiguous (NIfTI label maps are F-ordered: flattening then needs no copy)."""
    return array if array.flags.f_contiguous else np.asfortranarray(array)


class Source(ABC):
    """Base: ``n_channels``, ``spatial_shape`` (label order), ``dtype`` (stored), ``scale``/
    ``intercept`` for integer storage (None: unscaled integers), ``affine`` (or None),
    ``affine_file``, ``reversed`` (the source is known to store reversed axes)."""

    path: str
    n_channels: int
    spatial_shape: tuple[int, ...]
    stored_shape: tuple[int, ...]
    dtype: np.dtype
    scale: float | None = None
    intercept: float = 0.0
    affine: np.ndarray | None = None
    affine_file: str = ""
    reversed: bool = False
    nifti_images: tuple = ()

    @abstractmethod
    def channel(self, c: int) -> np.ndarray:
        """Probabilities of channel ``c`` as stored, shape ``spatial_shape`` (label order)."""

    def close(self) -> None:  # noqa: B027 - optional hook: most sources hold nothing open
        """Release open files (sources that keep a handle override this)."""

    @property
    def integer(self) -> bool:
        return self.dtype.kind in "iub"
