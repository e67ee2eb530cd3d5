"""Files on disk before any reader touches them: listing a folder (what is used, what is not,
which case folders cannot be read) and checking that a file can be read at all.

A reader is never handed a path that is not a readable regular file: ``nibabel.load`` of a
permission-denied ``.nii.gz`` crashes inside ``indexed_gzip`` 1.10.3 (segfault), and opening a
FIFO blocks forever. :func:`check_readable` turns each of these into one :class:`InputError`.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..options import check_relative_glob
from .types import InputError

#: Operating-system clutter that is never reported as an unused file.
OS_CLUTTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
#: deflate (gzip, zip) compresses at most about 1032:1; a header claiming more data than its
#: compressed file can hold is a truncated or forged file (a "bomb"), refused before reading.
MAX_DEFLATE_RATIO = 1032


def check_readable(path: str | os.PathLike, what: str = "file") -> None:
    """Raise :class:`InputError` unless ``path`` is a regular file this process can read.

    Never opens anything but a regular file (a FIFO would block, a device could be anything);
    reads one byte with plain ``open`` so a permission error is found here, not in a reader.
    """
    path = str(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise InputError(f"{what} {path} is a dangling symbolic link (it points to "
                             f"{os.readlink(path)!r}, which does not exist)", path) from None
        raise InputError(f"{what} {path} does not exist", path) from None
    except OSError as err:
        raise InputError(f"cannot read {what} {path}: {err.strerror or err}", path) from None
    if stat.S_ISDIR(info.st_mode):
        try:
            os.listdir(path)
        except OSError as err:
            raise InputError(f"{what} {path} is a folder that cannot be read "
                             f"({err.strerror or err})", path) from None
        raise InputError(f"{what} {path} is a folder, not a file", path)
    if not stat.S_ISREG(info.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(info.st_mode)
                else "a socket" if stat.S_ISSOCK(info.st_mode) else "a device file")
        raise InputError(f"{what} {path} is {kind}, not a regular file", path)
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as err:
        raise InputError(f"cannot read {what} {path}: {err.strerror or err}", path) from None
    if info.st_size == 0:
        raise InputError(f"{what} {path} is empty (0 bytes)", path)


def check_claimed_size(path: str, claimed: int, compressed: bool, file_size: int | None = None,
                       what: str = "file") -> None:
    """Refuse a header that claims more bytes than the file can hold (truncated or forged)."""
    size = os.path.getsize(path) if file_size is None else file_size
    limit = size * MAX_DEFLATE_RATIO + 4096 if compressed else size
    if claimed > limit:
        raise InputError(
            f"{what} {path}: its header claims {claimed:,} bytes of data but the file "
            f"({size:,} bytes{', compressed' if compressed else ''}) can hold at most "
            f"{limit:,}: the file is truncated or corrupt", path)


def check_nifti_size(path: str, img, what: str = "file") -> None:
    """The header's shape × dtype must fit in the file (checked before any data is read)."""
    header = img.header
    try:
        n_voxels = 1
        for n in img.shape:
            n_voxels *= int(n)
        claimed = n_voxels * header.get_data_dtype().itemsize + int(header.get_data_offset())
    except Exception:  # an exotic header: the reader reports it
        return
    check_claimed_size(str(path), claimed, str(path).endswith(".gz"), what=what)


@dataclass
class Listing:
    """One folder's entries: ``files`` (candidates, whatever their type: a dangling link or a
    FIFO named like a case is reported when the case is read), ``unused`` (every other entry)
    and ``unreadable`` (case folders that cannot be listed)."""

    files: list[Path] = field(default_factory=list)
    unused: list[Path] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)


def _entries(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: e.name)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _split(entries, exts, listing: Listing) -> None:
    for entry in entries:
        path = Path(entry.path)
        if entry.name in OS_CLUTTER:
            continue
        if entry.name.endswith(exts) and not entry.name.startswith("."):
            listing.files.append(path)
        else:
            listing.unused.append(path)


def list_folder(folder: Path, exts: tuple[str, ...], pattern: str | None = None) -> Listing:
    """Entries of ``folder`` matching ``pattern`` (a relative glob), or named ``*<ext>`` at the
    top level, or (when the top level has none) one folder down (one folder per case)."""
    listing = Listing()
    if pattern:
        check_pattern(pattern)
        try:
            found = sorted(folder.glob(pattern))
        except (OSError, ValueError, RuntimeError) as err:  # pathlib: non-relative patterns
            raise ValueError(f"pattern {pattern!r} in {folder}: {err}") from None
        for path in found:
            if not path.is_dir() or path.name.endswith(exts):
                listing.files.append(path)
        return listing
    try:
        top = _entries(folder)
    except OSError as err:
        raise ValueError(f"cannot read the folder {folder}: {err.strerror or err}") from None
    _split(top, exts, listing)
    if listing.files:
        return listing
    listing.unused = [Path(e.path) for e in top if not _is_dir(e) and e.name not in OS_CLUTTER]
    for entry in top:
        if not _is_dir(entry):
            continue
        if entry.name.startswith("."):
            listing.unused.append(Path(entry.path))
            continue
        try:
            _split(_entries(Path(entry.path)), exts, listing)
        except OSError:
            listing.unreadable.append(Path(entry.path))
    return listing


def check_pattern(pattern: str, name: str = "pattern") -> None:
    """A glob relative to its folder: no absolute paths, no ``..`` (the options' rule)."""
    check_relative_glob(name, pattern)
