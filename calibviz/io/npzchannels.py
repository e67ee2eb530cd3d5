"""One channel of an ``.npy`` inside an ``.npz`` whose channel axis is not the leading
C-order axis (``ijkc``, a Fortran-order array): the member is read from its start in blocks
and only the channel's elements are kept, so memory stays at one channel plus a block.

Works on an open :class:`~calibviz.io.readers.NpyStream` (its header parsed and checked).
"""

from __future__ import annotations

import zipfile

import numpy as np

from .types import InputError

BLOCK = 2**22  # bytes read at a time


def read_strided_channel(npy, axis: int | None, c: int) -> np.ndarray:
    """Channel ``c`` along ``axis`` of the member's array (the whole array when ``axis`` is
    None), shaped as the array without that axis."""
    shape, dtype = tuple(npy.shape), npy.dtype
    c_shape = shape[::-1] if npy.fortran else shape  # an F-order array is C-order reversed
    c_axis = None if axis is None else (len(shape) - 1 - axis if npy.fortran else axis)
    if c_axis is None:
        outer, n_c, inner, c = 1, 1, int(np.prod(c_shape, dtype=np.int64)), 0
        out_shape = c_shape
    else:
        outer = int(np.prod(c_shape[:c_axis], dtype=np.int64))
        n_c, inner = c_shape[c_axis], int(np.prod(c_shape[c_axis + 1:], dtype=np.int64))
        out_shape = c_shape[:c_axis] + c_shape[c_axis + 1:]
    out = np.empty(outer * inner, dtype=dtype)
    npy.stream.close()
    npy._open()  # back to the start of the data
    try:
        _read_rows(npy, out, outer, n_c, inner, c)
    except (EOFError, OSError, zipfile.BadZipFile) as err:
        raise InputError(f"cannot read channel {c} of {npy.path}: {err}", npy.path) from None
    npy.next = n_c  # the stream is at the end: the next read reopens it
    out = out.reshape(out_shape)
    if npy.fortran:
        out = out.T
    if not dtype.isnative:
        out = out.astype(dtype.newbyteorder("="))
    return out


def _read_rows(npy, out: np.ndarray, outer: int, n_c: int, inner: int, c: int) -> None:
    """Fill ``out`` with element ``[o, c, :]`` of the ``(outer, n_c, inner)`` stream."""
    size = npy.dtype.itemsize
    row = n_c * inner * size
    flat = out.view(np.uint8)
    if row > BLOCK:  # long rows: skip to the channel, read it, skip the rest
        for o in range(outer):
            if c:
                npy._skip(c * inner * size)
            _read_exact(npy.stream, flat[o * inner * size:(o + 1) * inner * size])
            rest = (n_c - c - 1) * inner * size
            if rest:
                npy._skip(rest)
        return
    rows = max(1, BLOCK // row)
    buffer = np.empty(rows * row, dtype=np.uint8)
    done = 0
    while done < outer:
        n = min(rows, outer - done)
        _read_exact(npy.stream, buffer[: n * row])
        block = buffer[: n * row].reshape(n, n_c, inner * size)
        flat[done * inner * size:(done + n) * inner * size] = block[:, c, :].reshape(-1)
        done += n


def _read_exact(stream, target: np.ndarray) -> None:
    view = memoryview(target)
    pos = 0
    while pos < len(view):
        got = stream.readinto(view[pos:])
        if not got:
            raise EOFError(f"file ends after {pos} of {len(view)} bytes")
        pos += got
