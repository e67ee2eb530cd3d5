"""Readers: each opens one prediction and hands out the probabilities of one channel at a time,
in the label's ``(i, j, k)`` axis order, without loading the other channels.

* :class:`NiftiSource` — 3-D ``(i, j, k)``, 4-D ``(i, j, k, C)``, 5-D ``(i, j, k, 1, C)``; float
  or scaled-integer storage (``dataobj[..., c]`` reads one block of the file).
* :class:`NpzStreamSource` — a C-order ``(C, …)`` member of an ``.npz`` streamed channel by
  channel from the zip (the npy header is parsed on the stream; nothing else is loaded); a
  Fortran-order member is read with a stride (:mod:`.npzchannels`).
* :class:`ArraySource` — generic ``.npy``/``.npz`` with a user-given layout (``.npy`` is
  memory-mapped).
* :class:`PerClassSource` — one 3-D NIfTI per class.

Nothing is ever unpickled (``allow_pickle=False`` everywhere).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .files import check_claimed_size
from .nifti import NiftiSource, PerClassSource
from .npzchannels import read_strided_channel
from .prefetch import ReadAhead
from .source import Source, _f_order
from .types import InputError

_CHUNK = 2**20  # bytes read from a zip stream at a time (bounds the transient copy)
PICKLED = ("holds Python objects (pickled); calibviz never unpickles: save the probabilities "
           "as a numeric array")


# --------------------------------------------------------------------------- npz streaming
#: Array names taken as probabilities in a generic ``.npz`` without ``npz_key`` (``arr_0``:
#: ``numpy.savez`` of an unnamed array); any other name needs ``npz_key``.
GENERIC_KEYS = ("probabilities", "softmax", "probs", "prob", "arr_0")


def choose_key(path: str, names: list[str], key: str | None, candidates) -> str:
    """The array to read: ``key`` when given, else the first of ``candidates`` present; an
    array under another name (``seg``) is never taken for probabilities."""
    if key is not None:
        if key not in names:
            raise InputError(f"{path} has no array {key!r} (it holds {names})", path)
        return key
    for cand in candidates:
        if cand in names:
            return cand
    wanted = " or ".join(map(repr, candidates))
    fix = ("say which holds the probabilities with npz_key (--npz-key)"
           if tuple(candidates) == GENERIC_KEYS else
           "is this an nnU-Net --save_probabilities file?")
    raise InputError(f"{path} holds arrays {names} but none named {wanted}; {fix}", path)


def check_member_size(stream) -> None:
    """An npy header must not claim more data than its zip member holds (before reading)."""
    info = stream.zip.getinfo(stream.member)
    claimed = int(np.prod(stream.shape, dtype=np.int64)) * stream.dtype.itemsize
    if claimed > info.file_size:
        raise InputError(f"{stream.path}: array {stream.key!r} claims shape {stream.shape} "
                         f"({claimed:,} bytes) but its zip member holds {info.file_size:,} "
                         "bytes: the file is truncated or corrupt", stream.path)
    if info.compress_type == zipfile.ZIP_DEFLATED:
        check_claimed_size(stream.path, claimed, True, info.compress_size,
                           f"array {stream.key!r} of")


def _starts_with(path: str, prefix: bytes) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(prefix)) == prefix
    except OSError:
        return False


class NpyStream:
    """Channel-by-channel reader of a C-order ``(C, …)`` ``.npy`` inside an ``.npz``.

    The npy header is parsed on the zip member's stream; channel ``c`` is the next
    ``prod(shape[1:]) * itemsize`` bytes. Reading backwards reopens the member.
    """

    def __init__(self, path: str, key: str | None, *, candidates: tuple[str, ...] = ()) -> None:
        self.path = str(path)
        try:
            self.zip = zipfile.ZipFile(self.path)
        except FileNotFoundError:
            raise InputError(f"file {path} does not exist", self.path) from None
        except (OSError, zipfile.BadZipFile) as err:
            if _starts_with(self.path, b"\x80"):  # a pickle's first opcode
                raise InputError(f"{path} {PICKLED}", self.path) from None
            raise InputError(f"cannot read {path} as .npz: {err}", self.path) from None
        names = [n[:-4] if n.endswith(".npy") else n for n in self.zip.namelist()]
        self.key = key = choose_key(self.path, names, key, candidates)
        self.member = self.zip.namelist()[names.index(key)]
        self._open()
        self.stored_shape = self.shape
        check_member_size(self)

    def _open(self) -> None:
        fmt = np.lib.format
        from . import inflate

        self.stream = inflate.ZipMemberReader(self.zip, self.member)
        try:
            version = fmt.read_magic(self.stream)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(self.stream)
            else:
                shape, fortran, dtype = fmt.read_array_header_2_0(self.stream)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            raise InputError(f"cannot read array {self.key!r} of {self.path}: {err}",
                             self.path) from None
        if dtype.hasobject:
            raise InputError(f"{self.path}: array {self.key!r} {PICKLED}", self.path)
        self.shape, self.fortran, self.dtype = tuple(shape), fortran, dtype
        self.next = 0

    def read(self, c: int) -> np.ndarray:
        """Channel ``c`` (first axis) as a C-ordered array of shape ``shape[1:]``."""
        if self.fortran:
            raise InputError(f"{self.path}: array {self.key!r} is stored in Fortran order; "
                             "channels cannot be streamed", self.path)
        if c < self.next:
            self.stream.close()
            self._open()
        nbytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        try:
            while self.next < c:
                self._skip(nbytes)
                self.next += 1
            out = np.empty(self.shape[1:], dtype=self.dtype)
            view = memoryview(out.reshape(-1).view(np.uint8))
            pos = 0
            while pos < nbytes:
                got = self.stream.readinto(view[pos: pos + _CHUNK])
                if not got:
                    raise EOFError(f"file ends after {pos} of {nbytes} bytes of channel {c}")
                pos += got
        except (EOFError, OSError, zipfile.BadZipFile) as err:
            raise InputError(f"cannot read channel {c} of {self.path}: {err}", self.path) from None
        self.next = c + 1
        if not self.dtype.isnative:
            out = out.astype(self.dtype.newbyteorder("="))
        return out

    def _skip(self, nbytes: int) -> None:
        left = nbytes
        while left:
            got = len(self.stream.read(min(left, _CHUNK)))
            if not got:
                raise EOFError("file ends early")
            left -= got

    def close(self) -> None:
        self.stream.close()
        self.zip.close()


class NpzStreamSource(Source):
    """nnU-Net npz: ``(C, k, j, i)`` reversed (v2 ``probabilities``, v1 ``softmax``).

    ``orientation``: nibabel orientation transform from the stored (RAS) frame back to the
    label's frame, for nnU-Net's ``...WithReorient`` readers (None otherwise).
    """

    reversed = True

    def __init__(self, path: str, key: str | None = None, candidates=("probabilities",),
                 label_affine: np.ndarray | None = None, reorient: bool = False) -> None:
        self.path = str(path)
        self.stream = NpyStream(path, key, candidates=candidates)
        shape = self.stream.shape
        if len(shape) != 4:
            raise InputError(f"array {self.stream.key!r} of {path} has shape {shape}; expected "
                             "(C, k, j, i)", self.path)
        self.stored_shape = shape
        self.n_channels = shape[0]
        self.dtype = self.stream.dtype
        ijk = shape[:0:-1]
        self.transform = None
        if reorient and label_affine is not None:
            from nibabel.orientations import io_orientation, ornt_transform

            identity = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)
            self.transform = ornt_transform(identity, io_orientation(label_affine))
            ijk = _apply_orientation(np.broadcast_to(np.int8(0), ijk), self.transform).shape
        self.spatial_shape = tuple(ijk)

    def channel(self, c: int) -> np.ndarray:
        if self.stream.fortran:  # channel elements are interleaved: read with a stride
            data = _f_order(read_strided_channel(self.stream, 0, c).T)
        else:
            data = self.stream.read(c).T  # (k, j, i) C-order -> (i, j, k) F-order view
        if self.transform is not None:
            data = _f_order(_apply_orientation(data, self.transform))
        return data

    def close(self) -> None:
        self.stream.close()


def _apply_orientation(array, transform):
    from nibabel.orientations import apply_orientation

    return apply_orientation(array, transform)


# --------------------------------------------------------------------------- generic arrays
def _npy_header(path: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data offset)`` of an ``.npy`` file, read without loading anything;
    a pickle (or an array of Python objects) is refused, never loaded."""
    fmt = np.lib.format
    with open(path, "rb") as handle:
        start = handle.read(len(fmt.MAGIC_PREFIX))
        if start != fmt.MAGIC_PREFIX:
            if start[:1] == b"\x80":  # the opcode that starts a pickle (protocol 2 and later)
                raise InputError(f"{path} {PICKLED}", path)
            what = ("a zip archive (.npz) named .npy" if start.startswith(b"PK")
                    else f"not a .npy file (it starts with {start!r}, not {fmt.MAGIC_PREFIX!r})")
            raise InputError(f"{path} is {what}", path)
        handle.seek(0)
        version = fmt.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(handle)
        else:  # 2.0 and 3.0 (a UTF-8 header) share the 4-byte header length
            shape, _, dtype = fmt.read_array_header_2_0(handle)
        return tuple(shape), dtype, handle.tell()


def load_npy(path: str) -> np.ndarray:
    """The ``.npy`` array at ``path``, memory-mapped, its header checked first: no pickles,
    and the data the header claims must be in the file (a truncated file is named so)."""
    try:
        shape, dtype, offset = _npy_header(path)
    except FileNotFoundError:
        raise InputError(f"file {path} does not exist", path) from None
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"cannot read {path} as .npy: {err}", path) from None
    if dtype.hasobject:
        raise InputError(f"{path} {PICKLED}", path)
    claimed = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    check_claimed_size(path, claimed, False)
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as err:
        raise InputError(f"cannot read {path}: {err}", path) from None


def parse_layout(layout: str) -> str:
    layout = layout.lower().strip()
    if sorted(layout) not in (sorted("cijk"), sorted("ijk")):
        raise ValueError(f"layout must be a permutation of 'cijk' (or 'ijk'), got {layout!r}")
    return layout


class ArraySource(Source):
    """Generic ``.npy`` (memory-mapped) or ``.npz`` array with a user-given axis layout; an
    ``.npz`` member is streamed (its header is checked before any data is read). Integer
    storage is quantised probabilities times ``scale`` (the user's)."""

    def __init__(self, path: str, layout: str, key: str | None = None,
                 scale: float | None = None) -> None:
        self.path = str(path)
        self.layout = parse_layout(layout)
        self._stream = None
        if self.path.endswith(".npz"):
            self._stream = NpyStream(self.path, key, candidates=GENERIC_KEYS)
            shape, self.dtype = self._stream.shape, self._stream.dtype
        else:
            self._array = load_npy(self.path)
            shape, self.dtype = self._array.shape, self._array.dtype
        self.stored_shape = tuple(shape)
        self.scale = scale if self.integer else None  # integers: quantised probabilities
        if len(shape) != len(self.layout):
            raise InputError(f"{path} has shape {tuple(shape)} but layout {self.layout!r} "
                             f"has {len(self.layout)} axes", self.path)
        axes = {a: n for a, n in zip(self.layout, shape, strict=True)}
        self.n_channels = axes.get("c", 1)
        self.spatial_shape = (axes["i"], axes["j"], axes["k"])
        spatial_layout = self.layout.replace("c", "")
        self._perm = tuple(spatial_layout.index(a) for a in "ijk")

    def channel(self, c: int) -> np.ndarray:
        axis = self.layout.index("c") if "c" in self.layout else None
        if self._stream is not None and axis == 0 and not self._stream.fortran:
            data = self._stream.read(c)
        elif self._stream is not None:
            data = read_strided_channel(self._stream, axis, c)
        elif axis is not None:
            index = [slice(None)] * len(self.layout)
            index[axis] = c
            data = np.asarray(self._array[tuple(index)])
        else:
            data = np.asarray(self._array)
        return _f_order(data.transpose(self._perm))

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()


def open_source(case, options, label_affine) -> Source:
    """The reader for ``case.format``, reading each channel ahead in a thread while the one
    before it is checked and binned (:class:`.prefetch.ReadAhead`)."""
    return ReadAhead(_open_source(case, options, label_affine))


def _open_source(case, options, label_affine) -> Source:
    fmt = case.format
    if fmt == "nnunet-v2":
        return NpzStreamSource(case.prediction, candidates=("probabilities",),
                               label_affine=label_affine, reorient=case.reorient)
    if fmt == "nnunet-v1":
        return NpzStreamSource(case.prediction, candidates=("softmax",))
    if fmt == "npy":
        return ArraySource(case.prediction, options.layout or "", options.npz_key,
                           options.scale)
    if fmt == "per-class-files":
        return PerClassSource(tuple(case.prediction), options.scale)
    if Path(case.prediction).suffix in (".npy", ".npz"):
        raise InputError(f"{case.prediction} is not a NIfTI file", case.prediction)
    return NiftiSource(case.prediction, options.scale)
