"""Readers: each opens one prediction and hands out the probabilities of one channel at a time,
in the label's ``(i, j, k)`` axis order, without loading the other channels.

* :class:`NiftiSource` — 3-D ``(i, j, k)``, 4-D ``(i, j, k, C)``, 5-D ``(i, j, k, 1, C)``; float
  or scaled-integer storage (``dataobj[..., c]`` reads one block of the file).
* :class:`NpzStreamSource` — a C-order ``(C, …)`` member of an ``.npz`` streamed channel by
  channel from the zip (the npy header is parsed on the stream; nothing else is loaded).
* :class:`ArraySource` — generic ``.npy``/``.npz`` with a user-given layout (``.npy`` is
  memory-mapped).
* :class:`PerClassSource` — one 3-D NIfTI per class.

Nothing is ever unpickled (``allow_pickle=False`` everywhere).
"""

from __future__ import annotations

import functools
import io as _io
import zipfile
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from .files import check_claimed_size
from .npzchannels import read_strided_channel
from .types import InputError

_CHUNK = 2**20  # bytes read from a zip stream at a time (bounds the transient copy)


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


# --------------------------------------------------------------------------- NIfTI
def load_nifti(path: str):
    """``nibabel.load`` with a clear error for missing or unreadable files.

    A ``.nii.gz`` NIfTI-1/2 file is opened here instead: its header is decoded with the fast
    deflate decoder (:mod:`calibviz.io.inflate`) and its data array reads the file the same
    way, never through ``indexed_gzip``.
    """
    import nibabel as nib

    path = str(path)
    try:
        if path.endswith(".gz"):
            img = _load_nifti_gz(path)
            if img is not None:
                return img
        return nib.load(path)
    except FileNotFoundError:
        raise InputError(f"file {path} does not exist", path) from None
    except InputError:
        raise
    except Exception as err:  # nibabel raises many kinds for broken headers
        raise InputError(f"cannot read {path}: {err}", path) from None


def _read_nifti_header(stream, path: str):
    """(image class, header) of the NIfTI-1/2 file on ``stream`` (at its start), or None for
    other formats; the stream is left at the end of the header and extensions."""
    import nibabel as nib

    prefix = stream.read(540)
    size_le = int.from_bytes(prefix[:4], "little")
    size_be = int.from_bytes(prefix[:4], "big")
    sizes = {size_le, size_be}
    if 348 in sizes and prefix[344:347] == b"n+1":
        klass = nib.Nifti1Image
    elif 540 in sizes and prefix[4:7] == b"n+2":
        klass = nib.Nifti2Image
    else:
        return None
    header_size = 348 if klass is nib.Nifti1Image else 540
    base = klass.header_class.from_fileobj(_io.BytesIO(prefix[:header_size]), check=False)
    offset = int(base.get_data_offset())
    if offset > len(prefix):
        prefix += stream.read(offset - len(prefix))
    header = klass.header_class.from_fileobj(_io.BytesIO(prefix), check=True)
    return klass, header


def _load_nifti_gz(path: str):
    from . import inflate

    with inflate.open_gzip(path) as stream:
        found = _read_nifti_header(stream, path)
    if found is None:
        return None
    klass, header = found
    proxy = _inflate_proxy_class()(path, header.copy())
    img = klass(proxy, None, header, file_map=klass.filespec_to_file_map(path))
    img._affine = header.get_best_affine()
    return img


@functools.cache
def _inflate_proxy_class():
    from contextlib import contextmanager

    from nibabel.arrayproxy import ArrayProxy

    from . import inflate

    class InflateProxy(ArrayProxy):
        """nibabel ``ArrayProxy`` whose reads decode the ``.gz`` file with
        :func:`calibviz.io.inflate.open_gzip` (a fresh sequential stream per read)."""

        def __init__(self, path, header):
            super().__init__(path, header, mmap=False, keep_file_open=False)

        @contextmanager
        def _get_fileobj(self):
            with inflate.open_gzip(self.file_like) as stream:
                yield stream

    return InflateProxy


class NiftiSource(Source):
    """A NIfTI probability map, one channel at a time.

    A single-file NIfTI-1/2 (``.nii`` or ``.nii.gz``) is read sequentially: channel ``c`` is one
    contiguous block of the file (the channel is the slowest axis), decoded straight into its
    array (``.nii.gz`` through :mod:`calibviz.io.inflate`, never ``indexed_gzip``), so channel
    ``c + 1`` continues the stream where channel ``c`` ended and nothing is decoded twice.
    Other files go through ``img.dataobj[..., c]``.
    """

    def __init__(self, path: str, scale: float | None = None) -> None:
        import nibabel as nib
        from nibabel.arrayproxy import ArrayProxy

        self.path = str(path)
        self.img = load_nifti(path)
        self._stream = None
        self.nifti_images = ((self.path, self.img),)
        shape = tuple(self.img.shape)
        self.stored_shape = shape
        if len(shape) == 3:
            self._slicer = lambda c: (slice(None),) * 3
            self.n_channels = 1
        elif len(shape) == 4:
            self._slicer = lambda c: (slice(None),) * 3 + (c,)
            self.n_channels = shape[3]
        elif len(shape) == 5 and shape[3] == 1:
            self._slicer = lambda c: (slice(None),) * 3 + (0, c)
            self.n_channels = shape[4]
        else:
            raise InputError(
                f"probability map {path} has shape {shape}; expected (i, j, k), (i, j, k, C) "
                "or (i, j, k, 1, C)", self.path,
            )
        self.spatial_shape = shape[:3]
        self.affine = np.asarray(self.img.affine, dtype=np.float64)
        self.affine_file = self.path
        self.dtype = np.dtype(self.img.get_data_dtype())
        proxy = self.img.dataobj
        slope = getattr(proxy, "slope", 1.0)
        inter = getattr(proxy, "inter", 0.0)
        slope = 1.0 if slope is None or not np.isfinite(slope) else float(slope)
        inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
        self._scaled_float = False
        self._scaled_int = self.integer and (slope != 1.0 or inter != 0.0)
        if self._scaled_int:
            self.scale, self.intercept = slope, inter
        elif self.integer:
            self.scale, self.intercept = scale, 0.0
        elif slope != 1.0 or inter != 0.0:
            self._scaled_float = True
            self.dtype = np.dtype(np.float64) if self.dtype.itemsize > 4 else np.dtype(np.float32)
        self._raw_dtype = np.dtype(self.img.get_data_dtype())
        self._direct = (
            isinstance(self.img, nib.Nifti1Image | nib.Nifti2Image)
            and isinstance(proxy, ArrayProxy)
            and getattr(proxy, "order", "F") == "F"
            and self.path.endswith((".nii", ".nii.gz"))
        )
        self._offset = int(proxy.offset) if self._direct else 0

    def _read_block(self, c: int) -> np.ndarray:
        """The stored values of channel ``c`` (native byte order, F-ordered), decoded in place."""
        from . import inflate

        out = np.empty(self.spatial_shape, dtype=self._raw_dtype, order="F")
        nbytes = out.nbytes
        start = self._offset + c * nbytes
        try:
            if self._stream is None or start < self._stream.tell():
                self.close()
                if self.path.endswith(".gz"):
                    self._stream = inflate.open_gzip(self.path)
                else:
                    self._stream = open(self.path, "rb")  # noqa: SIM115 - closed in close()
            if self._stream.seek(start) != start:
                raise EOFError(f"file ends before channel {c}")
            view = memoryview(out.reshape(-1, order="A").view(np.uint8))
            pos = 0
            while pos < nbytes:
                got = self._stream.readinto(view[pos:])
                if not got:
                    raise EOFError(f"file ends after {pos} of {nbytes} bytes of channel {c}")
                pos += got
        except (OSError, EOFError, ValueError) as err:
            self.close()
            raise InputError(f"cannot read channel {c} of {self.path}: {err}", self.path) from None
        if not out.dtype.isnative:
            out = out.astype(out.dtype.newbyteorder("="), order="F")
        return out

    def channel(self, c: int) -> np.ndarray:
        proxy = self.img.dataobj
        if self._direct:
            data = self._read_block(c)
            if self._scaled_float:  # as nibabel's ArrayProxy scales (dtype=None)
                from nibabel.volumeutils import apply_read_scaling

                slope = np.asanyarray(proxy.slope)
                inter = np.asanyarray(proxy.inter)
                if np.can_cast(inter, slope.dtype):
                    inter = inter.astype(slope.dtype)
                data = apply_read_scaling(data, slope, inter)
        elif self.integer and hasattr(proxy, "_get_unscaled"):
            data = proxy._get_unscaled(self._slicer(c))  # raw stored integers, kernel scales
        else:
            data = proxy[self._slicer(c)]
        if not self.integer and data.dtype != self.dtype:
            data = data.astype(self.dtype)
        return _f_order(np.asarray(data))

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


class PerClassSource(Source):
    """One 3-D NIfTI per class (``paths`` in class order)."""

    def __init__(self, paths: tuple[str, ...], scale: float | None = None) -> None:
        self.path = ", ".join(paths)
        self.sources = [NiftiSource(p, scale) for p in paths]
        first = self.sources[0]
        for s in self.sources:
            if s.n_channels != 1:
                raise InputError(f"per-class file {s.path} has shape {s.stored_shape}; expected "
                                 "one 3-D (i, j, k) map per class", s.path)
            if s.spatial_shape != first.spatial_shape:
                raise InputError(f"per-class files {first.path} and {s.path} have different "
                                 f"shapes {first.spatial_shape} and {s.spatial_shape}", s.path)
            if s.dtype != first.dtype or (s.scale, s.intercept) != (first.scale, first.intercept):
                raise InputError(f"per-class files {first.path} and {s.path} are stored "
                                 "differently (dtype or scaling)", s.path)
        self.n_channels = len(self.sources)
        self.spatial_shape = self.stored_shape = first.spatial_shape
        self.dtype, self.scale, self.intercept = first.dtype, first.scale, first.intercept
        self.affine, self.affine_file = first.affine, first.affine_file
        self.nifti_images = tuple(x for s in self.sources for x in s.nifti_images)
        self.extra_affines = [(s.path, s.affine) for s in self.sources[1:]]

    def channel(self, c: int) -> np.ndarray:
        return self.sources[c].channel(0)

    def close(self) -> None:
        for s in self.sources:
            s.close()


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
            raise InputError(f"{self.path}: array {self.key!r} holds Python objects; "
                             "refusing to unpickle", self.path)
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
def parse_layout(layout: str) -> str:
    layout = layout.lower().strip()
    if sorted(layout) not in (sorted("cijk"), sorted("ijk")):
        raise ValueError(f"layout must be a permutation of 'cijk' (or 'ijk'), got {layout!r}")
    return layout


class ArraySource(Source):
    """Generic ``.npy`` (memory-mapped) or ``.npz`` array with a user-given axis layout; an
    ``.npz`` member is streamed (its header is checked before any data is read)."""

    def __init__(self, path: str, layout: str, key: str | None = None) -> None:
        self.path = str(path)
        self.layout = parse_layout(layout)
        self._stream = None
        if self.path.endswith(".npz"):
            self._stream = NpyStream(self.path, key, candidates=GENERIC_KEYS)
            shape, self.dtype = self._stream.shape, self._stream.dtype
        else:
            try:
                self._array = np.load(self.path, mmap_mode="r", allow_pickle=False)
            except FileNotFoundError:
                raise InputError(f"file {path} does not exist", self.path) from None
            except Exception as err:
                raise InputError(f"cannot read {path}: {err}", self.path) from None
            shape, self.dtype = self._array.shape, self._array.dtype
        self.stored_shape = tuple(shape)
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
    """The reader for ``case.format``."""
    fmt = case.format
    if fmt == "nnunet-v2":
        return NpzStreamSource(case.prediction, candidates=("probabilities",),
                               label_affine=label_affine, reorient=case.reorient)
    if fmt == "nnunet-v1":
        return NpzStreamSource(case.prediction, candidates=("softmax",))
    if fmt == "npy":
        return ArraySource(case.prediction, options.layout or "", options.npz_key)
    if fmt == "per-class-files":
        return PerClassSource(tuple(case.prediction), options.scale)
    if Path(case.prediction).suffix in (".npy", ".npz"):
        raise InputError(f"{case.prediction} is not a NIfTI file", case.prediction)
    return NiftiSource(case.prediction, options.scale)
