"""Logits to probabilities while streaming (option ``activation``).

``sigmoid`` is per channel. ``softmax`` needs every channel of a voxel, so it streams twice:
the first pass keeps a running maximum and sum of exponentials per voxel (two float32
volumes), giving the log-sum-exp; the second reads each channel again and hands out
``exp(x - lse)``. Memory stays at a few volumes whatever the number of channels.
"""

from __future__ import annotations

import numpy as np

from .source import Source


def apply_activation(source: Source, activation: str | None) -> Source:
    """``source`` itself, or a wrapper applying ``activation`` ("softmax" or "sigmoid")."""
    if activation is None:
        return source
    return ActivatedSource(source, activation)


class ActivatedSource(Source):
    """Hands out ``activation(logits)`` of the wrapped source as float32, one channel at a
    time; everything else (shapes, affines, images) is the wrapped source's."""

    def __init__(self, source: Source, activation: str) -> None:
        if activation not in ("softmax", "sigmoid"):
            raise ValueError(f"activation must be 'softmax' or 'sigmoid', got {activation!r}")
        self.inner = source
        self.activation = activation
        for name in ("path", "n_channels", "spatial_shape", "stored_shape", "affine",
                     "affine_file", "reversed", "nifti_images"):
            setattr(self, name, getattr(source, name))
        if hasattr(source, "extra_affines"):
            self.extra_affines = source.extra_affines
        self.dtype = np.dtype(np.float32)
        self.scale, self.intercept = None, 0.0
        self._lse: np.ndarray | None = None

    def _logits(self, c: int) -> np.ndarray:
        data = self.inner.channel(c)
        if self.inner.integer:
            out = data.astype(np.float32)
            if self.inner.scale is not None:
                out *= np.float32(self.inner.scale)
            out += np.float32(self.inner.intercept)
            return out
        return np.array(data, dtype=np.float32, order="K")  # a copy: computed in place

    def _log_sum_exp(self) -> np.ndarray:
        """First pass: per voxel ``log(sum_c exp(x_c))``, with a running maximum so nothing
        overflows."""
        top = total = None
        for c in range(self.n_channels):
            x = self._logits(c)
            if top is None:
                top, total = x.copy(order="K"), np.ones_like(x)
                continue
            new_top = np.maximum(top, x)
            total *= np.exp(top - new_top)
            x -= new_top
            total += np.exp(x, out=x)
            top = new_top
        np.log(total, out=total)
        total += top
        return total

    def channel(self, c: int) -> np.ndarray:
        with np.errstate(over="ignore", under="ignore"):
            return self._channel(c)

    def _channel(self, c: int) -> np.ndarray:
        x = self._logits(c)
        if not np.isfinite(x).all():
            return x  # the value checks report the non-finite logits
        if self.activation == "sigmoid":
            np.negative(x, out=x)
            np.exp(x, out=x)
            x += 1
            return np.reciprocal(x, out=x)
        if self._lse is None:
            self._lse = self._log_sum_exp()
        x -= self._lse
        return np.exp(x, out=x)

    def close(self) -> None:
        self._lse = None
        self.inner.close()
