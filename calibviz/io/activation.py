"""Logits to probabilities while streaming (option ``activation``).

``sigmoid`` is per channel. ``softmax`` needs every channel of a voxel, so it streams twice:
the first pass keeps a running maximum and sum of exponentials per voxel (two float32
volumes), giving the log-sum-exp; the second reads each channel again and hands out
``exp(x - lse)``. Memory stays at a few volumes whatever the number of channels.

An activation applied to values that are probabilities already changes every number without
failing a check; :meth:`ActivatedSource.probability_look` says when the stored values look
like probabilities (every value in [0, 1], channels summing to 1), and nnU-Net's files, which
hold probabilities by definition, refuse the option (:func:`activation_refusal`).
"""

from __future__ import annotations

import numpy as np

from .source import Source
from .watch import sum_tolerance

#: Formats whose files hold probabilities by definition: no activation applies to them.
PROBABILITY_FORMATS = {"nnunet-v2": "nnU-Net v2 --save_probabilities output",
                       "nnunet-v1": "nnU-Net v1 --save_npz output"}


def activation_refusal(activation: str | None, fmt: str) -> str | None:
    """Why ``activation`` cannot apply to files of format ``fmt`` (None: it may)."""
    if activation is None or fmt not in PROBABILITY_FORMATS:
        return None
    return (f"--activation {activation} does not apply to {PROBABILITY_FORMATS[fmt]}: its "
            ".npz files hold probabilities already (nnU-Net applied the softmax or sigmoid); "
            "leave --activation out")


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
        self._look = _ProbabilityLook(source)

    def _logits(self, c: int) -> np.ndarray:
        data = self.inner.channel(c)
        if self.inner.integer:
            out = data.astype(np.float32)
            if self.inner.scale is not None:
                out *= np.float32(self.inner.scale)
            out += np.float32(self.inner.intercept)
        else:
            out = np.array(data, dtype=np.float32, order="K")  # a copy: computed in place
        self._look.observe(c, out)
        return out

    def probability_look(self) -> str | None:
        """Once every channel was read: how the stored values look like probabilities
        ("in [0, 1], channels sum to 1", "in [0, 1]"), or None when they do not."""
        return self._look.verdict()

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
        self._look.sums = None
        self.inner.close()


class _ProbabilityLook:
    """Whether the values handed to the activation are probabilities already: every value
    in [0, 1] and, with several channels, channel sums within the softmax tolerance of 1
    (voxels with every channel 0 aside, as nnU-Net writes outside its crop box). Watching
    stops at the first value outside [0, 1], as it comes at once in a map of logits."""

    def __init__(self, source: Source) -> None:
        self.n_channels = source.n_channels
        self.tolerance = sum_tolerance(source) + self.n_channels * float(
            np.finfo(np.float32).eps)  # the sums are float32
        self.possible = True
        self.seen: set[int] = set()
        self.sums: np.ndarray | None = None

    def observe(self, c: int, values: np.ndarray) -> None:
        if not self.possible or c in self.seen:
            return
        self.seen.add(c)
        if values.size and not (values.min() >= 0 and values.max() <= 1):  # NaN: not either
            self.possible, self.sums = False, None
            return
        if self.n_channels > 1:
            if self.sums is None:
                self.sums = np.array(values, dtype=np.float32, order="K")
            else:
                self.sums += values

    def verdict(self) -> str | None:
        if not self.possible or len(self.seen) < self.n_channels:
            return None
        if self.sums is None:
            return "in [0, 1]"
        off = np.abs(self.sums - 1) > self.tolerance
        off &= self.sums != 0
        return "in [0, 1]" if off.any() else "in [0, 1], channels sum to 1"
