"""Reading and writing a run: one :func:`write_atomic` for every file calibviz writes, the
statistics archive (``stats.npz``) and the partial-case store that makes a run resumable.
NumPy only."""

from __future__ import annotations

import errno
import io
import json
import os
import shlex
import shutil
import tempfile
import zipfile
from dataclasses import asdict
from pathlib import Path
from urllib.parse import quote

import numpy as np

from . import archive
from .archive import DamagedArchive
from .results import Results
from .stats import SUM_FIELDS, BinStats


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` through a temporary file in the
    same folder and a rename, so a reader never sees half a file. The file gets the usual
    permissions of a new file (``0666`` minus the umask). Returns the path. An ``OSError``
    (of the same kind: ``PermissionError``, ``IsADirectoryError``, …) names ``path``, never
    the temporary file."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    temporary = None
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a file stands where a folder must be
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)) from None
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                                 suffix=".tmp")
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(payload)
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException as error:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.strerror:  # the user's path, not ours
            raise OSError(error.errno, error.strerror, str(path)) from None
        raise
    return path


def _umask() -> int:
    """The process umask (read by setting and restoring it; there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------ the stats archive
FORMAT_VERSION = 1
STATS_FILE = "stats.npz"
#: With ``evaluate --fine-bins F``: the per-image statistics at the fine resolution, from which
#: ``calibviz sweep`` computes any bin count dividing F exactly.
FINE_STATS_FILE = "stats_fine.npz"
#: ``OUT/roi-<spec>/`` holds a run's results on the region of interest (same files).
ROI_PREFIX = "roi-"


def _pack(results: Results) -> bytes:
    """The archive bytes of ``results``: the per-image sums stacked ``[n_images, ...]``, the
    shared convention once, case ids, options and problems as JSON."""
    arrays: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION),
        "cases": np.array(results.cases, dtype=str),
        "options_json": np.array(json.dumps(results.options, default=str)),
        "problems_json": np.array(json.dumps([asdict(p) for p in results.problems])),
        "skipped": np.array(results.skipped, dtype=str),
    }
    if results.stats:
        per_image = [s.to_arrays() for s in results.stats]
        for key in per_image[0]:
            if key in SUM_FIELDS:
                arrays[f"stats_{key}"] = np.stack([a[key] for a in per_image])
            else:
                arrays[f"stats_{key}"] = per_image[0][key]
        arrays["stats_n_images"] = np.array([s.n_images for s in results.stats])
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _unpack(arrays: dict[str, np.ndarray], path: Path) -> Results:
    """The archive's :class:`Results`, refusing anything it cannot vouch for: an unknown
    format version, missing fields, or content no evaluation can produce (see
    :mod:`calibviz.archive`). Raises ``ValueError`` naming the file and what is wrong."""
    try:
        return _checked_results(arrays, path)
    except (KeyError, IndexError, TypeError, ValueError, json.JSONDecodeError) as error:
        if str(error).startswith(str(path)):
            raise
        raise DamagedArchive(path, str(error)) from None


def _checked_results(arrays: dict[str, np.ndarray], path: Path) -> Results:
    from .io.types import Problem

    if "format_version" not in arrays or "cases" not in arrays:
        raise ValueError(f"{path} is not a calibviz stats.npz (no case list inside)")
    version = archive.integer_scalar(arrays, "format_version", path)
    if version != FORMAT_VERSION:
        raise ValueError(f"{path} has format version {version}; this calibviz reads version "
                         f"{FORMAT_VERSION} (written by another calibviz version?)")
    cases = archive.text_list(arrays, "cases", path, unique=True)
    options = {}
    if "options_json" in arrays:
        options = archive.json_field(arrays, "options_json", path, dict)
        archive.check_options(options, path)
    problems = ()
    if "problems_json" in arrays:
        records = archive.json_field(arrays, "problems_json", path, list)
        problems = tuple(Problem(**p) for p in archive.check_problems(records, path))
    skipped = ()
    if "skipped" in arrays:
        skipped = archive.text_list(arrays, "skipped", path, unique=False)
    if not cases:
        return Results((), (), options, problems, skipped)
    missing = [f for f in SUM_FIELDS if f"stats_{f}" not in arrays and f != "n_clipped"]
    missing += [f for f in ("edges", "class_names", "closure", "binning", "empty_weight",
                            "n_images") if f"stats_{f}" not in arrays]
    if missing:
        raise ValueError(f"{path} lacks the statistics {', '.join(missing)}")
    n_stats = len(np.atleast_1d(arrays["stats_count"]))
    if n_stats != len(cases):
        raise ValueError(f"{path} lists {len(cases)} cases but holds statistics of {n_stats}")
    archive.check_statistics(arrays, path, cases)
    stats = []
    for index in range(len(cases)):
        fields = {}
        for key, value in arrays.items():
            if not key.startswith("stats_") or key == "stats_n_images":
                continue
            name = key[len("stats_"):]
            fields[name] = value[index] if name in SUM_FIELDS else value
        fields["n_images"] = arrays["stats_n_images"][index]
        stats.append(BinStats.from_arrays(fields))
    _check_options_match(options, stats[0], path)
    return Results(cases=cases, stats=tuple(stats), options=options, problems=problems,
                   skipped=skipped)


def _check_options_match(options: dict, stats: BinStats, path: Path) -> None:
    """The options a run records describe its statistics (bins, closure, binning)."""
    recorded = {"n_bins": stats.n_bins, "closure": stats.closure, "binning": stats.binning}
    for key, value in recorded.items():
        if options.get(key) is not None and options[key] != value:
            raise DamagedArchive(path, f"options_json says {key} {options[key]!r} but the "
                                       f"statistics have {value!r}")
    fine = options.get("fine_bins")
    if fine is not None and fine % stats.n_bins:
        raise DamagedArchive(path, f"options_json says fine_bins {fine}, not a multiple of "
                                   f"the statistics' {stats.n_bins} bins")


def save_results(path: str | os.PathLike, results: Results) -> Path:
    """Write ``results`` to ``path`` (``.npz``) atomically; returns the path."""
    return write_atomic(path, _pack(results))


def load_results(path: str | os.PathLike) -> Results:
    """Read a ``stats.npz`` written by :func:`save_results` (or ``calibviz evaluate``); a
    folder means its ``stats.npz``."""
    path = Path(path)
    check_finished(path if path.is_dir() else path.parent)
    if path.is_dir():
        path = path / STATS_FILE
    if not path.exists():
        raise ValueError(f"no statistics file at {path} (expected a stats.npz from evaluate)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a readable calibviz stats.npz: "
                         f"{_unreadable(error, path)}") from None
    return _unpack(arrays, path)


def _unreadable(error: Exception, path: Path) -> str:
    """What is wrong with an archive NumPy could not open, in the user's terms."""
    text = str(error)
    try:
        with open(path, "rb") as file:
            head = file.read(8)
    except OSError:
        head = b""
    if head and not head.startswith((b"PK", b"\x93NUMPY", b"\x80")):
        return ("it is not a NumPy archive (another kind of file: it starts with "
                f"{head!r})")
    if "pickle" in text or "Object arrays" in text:
        return "it holds pickled Python objects, which calibviz never writes and never loads"
    if isinstance(error, EOFError) or "No data left" in text:
        return "the file is empty"
    if isinstance(error, zipfile.BadZipFile):
        return f"not a complete zip archive (truncated, or another kind of file: {text})"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return text


def load_finest_results(run: str | os.PathLike) -> Results:
    """The finest statistics of a run (a folder, or its ``stats.npz``): its
    ``stats_fine.npz`` when it kept one, else its ``stats.npz``. The run's ``stats.npz`` is
    always read, and a ``stats_fine.npz`` that is not that run's (other cases, classes,
    options, or sums that do not add up to it) is refused. ``ValueError``, one line."""
    from .sweep import fine_mismatch

    run = Path(run)
    folder = run if run.is_dir() else run.parent
    main = folder / STATS_FILE if run.is_dir() or run.name == FINE_STATS_FILE else run
    results = load_results(folder if main == folder / STATS_FILE else main)
    fine_path = folder / FINE_STATS_FILE
    if not fine_path.exists():
        return results
    fine = load_results(fine_path)
    problem = fine_mismatch(fine, results)
    if problem:
        raise ValueError(f"{fine_path} is not the fine statistics of the run in {main}: "
                         f"{problem}; remove it (then {main.name}'s own bins are used) or "
                         "evaluate again with --fine-bins")
    return fine


# ------------------------------------------------------------------ the output folder
#: What calibviz writes into an output folder (globs relative to it). ``--overwrite`` removes
#: these and nothing else.
OWN_OUTPUTS = (
    STATS_FILE, FINE_STATS_FILE, "per_image.csv", "summary.csv", "run.json", "problems.csv",
    "summary.json", "metrics.csv", "comparison.csv",
    # the reference implementation's layout (--csv-style reference)
    *(f"{stem}_{part}.csv" for stem in ("macro_ece", "macro_ace", "macro_mce", "mean_dice",
                                        "micro_ece", "micro_ace", "micro_mce",
                                        "missing_classes") for part in ("raw", "summary")),
    "comparison_micro.csv", "report.html", "figures/dataset_reliability_histogram.*",
    "figures/cases/*.png", "figures/cases/*.pdf", "figures/cases/*.svg", "figures/comparison.*",
)
#: Any of these marks a folder as holding a run.
RUN_MARKERS = (STATS_FILE, "run.json", "per_image.csv", "summary.csv", "figures")


def holds_run(out_dir: str | os.PathLike) -> bool:
    """True when ``out_dir`` holds the results (or the partial store) of a run."""
    out_dir = Path(out_dir)
    return any((out_dir / name).exists() for name in (*RUN_MARKERS, ".partial"))


def check_finished(folder: str | os.PathLike) -> None:
    """``ValueError`` (one line) when ``folder`` holds an interrupted run: the partial store
    of ``calibviz evaluate`` and no ``run.json`` (which a run writes last, before removing
    the store). Its reports may be there but are not a finished run's (problems are lost).
    A region-of-interest set ``roi-*/`` without its ``run.json`` belongs to the run above."""
    folder = Path(folder)
    run = folder
    if folder.name.startswith(ROI_PREFIX) and (folder.parent / PARTIAL_DIR).is_dir():
        run = folder.parent
    if not (run / PARTIAL_DIR).is_dir() or (folder / "run.json").is_file():
        return
    n_cases = sum(1 for f in (run / PARTIAL_DIR).glob("*.npz")
                  if not f.name.endswith(".roi.npz"))
    try:
        stored = json_object((run / PARTIAL_DIR / RUN_OPTIONS).read_text(encoding="utf-8"))
        inputs = " ".join(shlex.quote(str(stored[key])) for key in ("pred_dir", "label_dir"))
    except (OSError, ValueError, KeyError):
        inputs = "PRED LABELS"
    missing = "run.json" if run == folder else f"{folder.name}/run.json"
    raise ValueError(
        f"{run} holds an interrupted run ({n_cases} cases evaluated, {PARTIAL_DIR}/ kept, "
        f"no {missing}): finish it with calibviz evaluate {inputs} --out "
        f"{shlex.quote(str(run))} --resume (and the options it was started with)"
    )


def clear_outputs(out_dir: str | os.PathLike, *, keep_partial: bool = False) -> int:
    """Remove calibviz's own files from ``out_dir`` (never any other file); returns how many."""
    out_dir = Path(out_dir)
    removed = 0
    for pattern in OWN_OUTPUTS:
        for path in out_dir.glob(pattern):
            if path.is_file() or path.is_symlink():
                path.unlink()
                removed += 1
    for folder in (out_dir / "figures" / "cases", out_dir / "figures"):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    for folder in out_dir.glob(f"{ROI_PREFIX}*"):  # the region-of-interest result sets
        if folder.is_dir() and not folder.is_symlink() and holds_run(folder):
            removed += clear_outputs(folder, keep_partial=True)
            if not any(folder.iterdir()):
                folder.rmdir()
    if not keep_partial:
        PartialStore(out_dir).finish()
    return removed


def input_fingerprint(paths) -> dict[str, list[int]]:
    """``{path: [size, mtime_ns, ctime_ns, inode, device]}`` of a case's input files (what
    makes a stored case stale), as git's index tells a changed file: a file replaced by
    another of the same size with its modification time kept (``cp -p``, ``rsync -a``,
    ``touch -r``) still has a new inode or change time, which no tool can set back."""
    out = {}
    for path in paths:
        try:
            info = os.stat(path)
            out[str(path)] = [int(info.st_size), int(info.st_mtime_ns), int(info.st_ctime_ns),
                              int(info.st_ino), int(info.st_dev)]
        except OSError:
            out[str(path)] = [-1, -1, -1, -1, -1]
    return out


def json_object(text: str) -> dict:
    """``text`` parsed as a JSON object; ``ValueError`` for anything else, including JSON
    nested too deeply to parse (Python's parser would raise ``RecursionError``)."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


# ------------------------------------------------------------------ the partial-case store
PARTIAL_DIR = ".partial"
RUN_OPTIONS = "options.json"


class PartialStore:
    """Finished cases of a run in ``out/.partial/``, one archive per case, so an interrupted
    run loses nothing and ``resume`` continues it. ``options.json`` records what the stored
    numbers depend on (resuming with other options is refused); each case records its input
    files' :func:`input_fingerprint`, taken before they were read (a changed input is
    evaluated again). The store is
    removed when the run completes."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.folder = Path(out_dir) / PARTIAL_DIR

    def _case_file(self, case_id: str) -> Path:
        return self.folder / f"{quote(case_id, safe='')}.npz"

    def open(self, wanted: dict, resume: bool) -> tuple[list[str], str | None]:
        """Start (or, with ``resume``, continue) a run that depends on ``wanted``.

        Returns ``(differences, notice)``: the option differences that forbid resuming
        (empty when it may go on) and a line to tell the user (a damaged record), or None.
        """
        stored_path = self.folder / RUN_OPTIONS
        notice = None
        if resume and stored_path.exists():
            try:
                stored = json_object(stored_path.read_text())
            except (OSError, ValueError) as error:
                notice = (f"the record of the interrupted run ({stored_path}) is damaged "
                          f"({error}); evaluating every case again")
            else:
                differences = [
                    f"{key}: {stored.get(key)!r} then, {wanted.get(key)!r} now"
                    for key in sorted(set(stored) | set(wanted))
                    if stored.get(key) != wanted.get(key)
                ]
                return differences, None
        self.finish()
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(stored_path, json.dumps(wanted, indent=2))
        return [], notice

    def _roi_file(self, case_id: str) -> Path:
        return self.folder / f"{quote(case_id, safe='')}.roi.npz"

    def save(self, case_id: str, stats: BinStats, problems, inputs: dict,
             info: dict | None = None, roi: BinStats | None = None) -> None:
        """Store one finished case (its BinStats, warnings, input fingerprint, what the run
        records of it and its statistics on the region of interest, written first: the
        case's own file marks it finished)."""
        if roi is not None:
            write_atomic(self._roi_file(case_id), _pack(Results((case_id,), (roi,))))
        write_atomic(self._case_file(case_id), _pack(Results(
            (case_id,), (stats,), {"inputs": inputs, "info": info, "roi": roi is not None},
            problems=tuple(problems))))

    def load(self, case_id: str, inputs: dict
             ) -> tuple[BinStats, list, dict | None, BinStats | None] | str | None:
        """A stored case's ``(stats, problems, info, roi stats or None)``; None when absent;
        a reason (str) when it must be evaluated again (damaged, or its input files changed
        since)."""
        path = self._case_file(case_id)
        if not path.exists():
            return None
        try:
            stored = load_results(path)
            roi = None
            if stored.options.get("roi"):
                roi_stored = load_results(self._roi_file(case_id))
                if roi_stored.cases != (case_id,):
                    raise ValueError("another case's statistics")
                roi = roi_stored.stats[0]
        except (ValueError, KeyError, TypeError):
            return "its stored result is damaged"
        if stored.cases != (case_id,):
            return "its stored result is damaged"
        if stored.options.get("inputs") != inputs:
            return "its input files changed since the interrupted run"
        return stored.stats[0], list(stored.problems), stored.options.get("info"), roi

    def finish(self) -> None:
        """Remove the store (the run is complete, or a new one starts)."""
        if self.folder.is_dir():
            shutil.rmtree(self.folder)
