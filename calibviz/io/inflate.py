"""Fast deflate decoding for ``.nii.gz`` files and ``.npz`` zip members.

The decoder is the fastest one installed: ``isal`` (Intel ISA-L), else ``zlib-ng``, else the
standard library's ``zlib``; ``BACKEND`` names it (the environment variable ``CALIBVIZ_INFLATE``
forces one). All three release the GIL while decoding.

* :func:`open_gzip` opens a gzip file for sequential reading (``read``/``readinto``/forward
  ``seek``), never through ``indexed_gzip``.
* :class:`ZipMemberReader` decodes one ``.zip`` member's raw deflate stream itself (the
  standard library's ``zipfile`` would always use ``zlib``), checking its CRC-32 at the end.

>>> import os, tempfile, zipfile
>>> path = os.path.join(tempfile.mkdtemp(), "a.zip")
>>> with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
...     zf.writestr("a.npy", b"x" * 100_000)
>>> with zipfile.ZipFile(path) as zf, ZipMemberReader(zf, "a.npy") as member:
...     len(member.read(60_000)), len(member.read())
(60000, 40000)
"""

from __future__ import annotations

import io
import os
import zipfile


def _backend(name: str):
    """(name, zlib-like module) for ``name`` in ``isal``, ``zlib-ng``, ``zlib`` (ImportError
    when that one is not installed)."""
    if name == "isal":
        from isal import isal_zlib as module
    elif name == "zlib-ng":
        from zlib_ng import zlib_ng as module
    elif name == "zlib":
        import zlib as module
    else:
        raise ValueError(f"unknown deflate decoder {name!r}; expected one of {BACKENDS}")
    return name, module


BACKENDS = ("isal", "zlib-ng", "zlib")


def _pick():
    forced = os.environ.get("CALIBVIZ_INFLATE", "")
    for name in (forced,) if forced else BACKENDS:
        try:
            return _backend(name)
        except ImportError:  # pragma: no cover - depends on what is installed
            continue
    raise ImportError(f"CALIBVIZ_INFLATE={forced!r} is not installed")  # pragma: no cover


#: the decoder in use (``CALIBVIZ_INFLATE`` forces one, e.g. to compare them)
BACKEND, _zlib = _pick()

__all__ = ["BACKEND", "ZipMemberReader", "open_gzip"]

_INPUT = 2**20  # compressed bytes handed to the decoder at a time


def open_gzip(path: str) -> _InflateReader:
    """A binary file object decoding the gzip file ``path`` sequentially (``read``,
    ``readinto``, forward ``seek``; closed by the caller). Multi-member files are read whole;
    each member's CRC-32 and length are checked by the decoder.

    Opening raises ``OSError`` (``FileNotFoundError``, ``PermissionError``) like ``open``.
    """
    return _InflateReader(open(path, "rb"), gzip=True, name=str(path))


class _InflateReader(io.RawIOBase):
    """Decodes a deflate stream read from ``file`` (owned: closed with this reader).

    ``gzip``: gzip members until the end of the file. Otherwise one raw deflate stream of
    ``in_size`` compressed bytes holding ``out_size`` bytes whose CRC-32 must be ``crc``.
    """

    def __init__(self, file, *, gzip: bool, in_size: int = -1, out_size: int = -1,
                 crc: int = 0, name: str = "") -> None:
        self._file = file
        self._gzip = gzip
        self._left_in = in_size
        self._left_out = out_size
        self._want_crc = crc
        self._crc = 0
        self._name = name
        self._pos = 0
        self._input = b""
        self._stored = False
        self._decoder = _zlib.decompressobj(31 if gzip else -15)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Forward only (decoding what lies between); backwards raises."""
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence != io.SEEK_SET:
            raise io.UnsupportedOperation("deflate streams seek from the start or current point")
        if offset < self._pos:
            raise io.UnsupportedOperation("deflate streams do not seek backwards; reopen")
        scratch = bytearray(min(offset - self._pos, _INPUT) or 1)
        while self._pos < offset:
            if not self.readinto(memoryview(scratch)[: offset - self._pos]):
                break
        return self._pos

    def _more_input(self) -> bytes:
        size = _INPUT if self._left_in < 0 else min(_INPUT, self._left_in)
        data = self._file.read(size) if size else b""
        if self._left_in >= 0:
            self._left_in -= len(data)
        return data

    def _truncated(self):
        if self._gzip:
            return EOFError(f"{self._name}: compressed file ended before the end-of-stream "
                            "marker was reached")
        return zipfile.BadZipFile(f"member {self._name!r} is truncated")

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        want = len(view) if self._left_out < 0 else min(len(view), self._left_out)
        filled = 0
        while filled < want:
            if self._stored:
                got = self._file.readinto(view[filled:want])
                if not got:
                    raise self._truncated()
                filled += got
                continue
            decoder = self._decoder
            if decoder.eof:
                if not self._gzip:
                    raise self._truncated()
                rest = decoder.unused_data or self._input or self._more_input()
                self._input = b""
                if not rest:
                    break  # end of the last gzip member
                self._decoder = _zlib.decompressobj(31)
                self._input = rest
                continue
            data = decoder.unconsumed_tail or self._input
            self._input = b""
            if not data:
                data = self._more_input()  # empty at the end: flush what the decoder holds
            out = decoder.decompress(data, want - filled)
            if not out and not data and not decoder.eof:
                raise self._truncated()
            view[filled: filled + len(out)] = out
            filled += len(out)
        self._pos += filled
        if not self._gzip:
            self._crc = _zlib.crc32(view[:filled], self._crc)
            self._left_out -= filled
            if self._left_out == 0 and self._crc != self._want_crc:
                raise zipfile.BadZipFile(f"bad CRC-32 for member {self._name!r}")
        return filled

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


class ZipMemberReader(io.BufferedReader):
    """Sequential reader of member ``name`` of the open ``zipfile.ZipFile`` ``zf``.

    Stored and deflated members are decoded here (CRC-32 checked at the end, ``BadZipFile``
    on a mismatch or a truncated member); other compressions and encrypted members go
    through ``zf.open``, as do archives opened from a file object.
    """

    def __init__(self, zf: zipfile.ZipFile, name: str) -> None:
        info = zf.getinfo(name)
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or (
            info.flag_bits & 0x1
        ) or not isinstance(zf.filename, str):
            super().__init__(zf.open(name), buffer_size=2**16)
            return
        file = open(zf.filename, "rb")  # noqa: SIM115 - owned by the reader
        try:
            file.seek(info.header_offset)
            header = file.read(30)
            if len(header) != 30 or header[:4] != b"PK\x03\x04":
                raise zipfile.BadZipFile(f"bad local file header for member {name!r}")
            skip = int.from_bytes(header[26:28], "little") + int.from_bytes(
                header[28:30], "little"
            )
            file.seek(info.header_offset + 30 + skip)
            raw = _InflateReader(file, gzip=False, in_size=info.compress_size,
                                 out_size=info.file_size, crc=info.CRC, name=name)
        except BaseException:
            file.close()
            raise
        raw._stored = info.compress_type == zipfile.ZIP_STORED
        super().__init__(raw, buffer_size=2**16)
