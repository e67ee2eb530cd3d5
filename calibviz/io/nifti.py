"""NIfTI readers: :func:`load_nifti` (headers decoded here, data through the fast inflater;
nothing read before its size is checked) and the NIfTI probability sources — 3-D, 4-D
``(i, j, k, C)`` and 5-D ``(i, j, k, 1, C)`` maps read one channel at a time, and one 3-D file
per class."""

from __future__ import annotations

import functools
import io as _io

import numpy as np

from .source import Source, _f_order
from .types import InputError


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
