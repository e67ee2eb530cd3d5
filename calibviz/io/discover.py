"""Finding cases in a prediction folder and a label folder and pairing them by case id."""

from __future__ import annotations

import json
import os
import re
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..options import EvalOptions, parse_classes
from .classes import read_dataset_json
from .files import Listing, check_pattern, check_readable, list_folder
from .sniff import check_not_label_maps, check_not_swapped, check_scale_applies
from .types import Case, LabelSpec, Problem

NIFTI_EXTS = (".nii.gz", ".nii")
ARRAY_EXTS = (".npy", ".npz")
DEFAULT_SUFFIXES = ("_seg", "-seg", "_0000")


def split_ext(name: str) -> tuple[str, str]:
    """``"a.nii.gz"`` → ``("a", ".nii.gz")``; other names split at the last dot.

    >>> split_ext("case_01_seg.nii.gz")
    ('case_01_seg', '.nii.gz')
    """
    for ext in (".nii.gz",):
        if name.endswith(ext):
            return name[: -len(ext)], ext
    stem, dot, ext = name.rpartition(".")
    return (stem, dot + ext) if dot else (name, "")


def strip_suffixes(stem: str, postfix: str | None = None) -> str:
    """Remove a configured postfix (``_<postfix>``/``-<postfix>``), then one default suffix.

    >>> strip_suffixes("case_7_prob", "prob"), strip_suffixes("BraTS_0001-seg")
    ('case_7', 'BraTS_0001')
    """
    if postfix:
        post = postfix.lstrip("_-")
        for sep in ("_", "-"):
            if stem.endswith(sep + post) and len(stem) > len(post) + 1:
                stem = stem[: -len(post) - 1]
                break
    for suffix in DEFAULT_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def assign_ids(paths: list[Path], postfix: str | None, side: str) -> _Side:
    """Case id per file: the file name without extension and suffixes, or the parent folder's
    name when file names repeat across folders (``case_00000/segmentation.nii.gz``). Files
    giving the same id make that case ambiguous (recorded in ``clashes``)."""
    stems = [strip_suffixes(split_ext(p.name)[0], postfix) for p in paths]
    if len(set(map(nfc, stems))) < len(stems):
        parents = [strip_suffixes(p.parent.name, postfix) for p in paths]
        if len(set(map(nfc, parents))) == len(parents):
            stems = parents
    found = _Side(side)
    for stem, path in zip(stems, paths, strict=True):
        found.add(stem, path)
    return found


def nfc(case_id: str) -> str:
    """The id cases are paired by: its Unicode NFC form (file systems keep names as written,
    so ``é`` may be one code point in one folder and ``e`` + U+0301 in the other)."""
    return unicodedata.normalize("NFC", case_id)


@dataclass
class _Side:
    """The case ids (NFC) of one folder (predictions, labels or masks) and its ambiguous ids;
    ``written`` keeps each id as its files spell it."""

    side: str
    ids: dict = field(default_factory=dict)
    clashes: dict = field(default_factory=dict)
    written: dict = field(default_factory=dict)

    def add(self, case_id: str, path) -> None:
        key = nfc(case_id)
        self.written.setdefault(key, set()).add(case_id)
        if key in self.ids:
            self.clashes.setdefault(key, [self.ids[key]]).append(path)
            return
        self.ids[key] = path

    def clash(self, case_id: str) -> str | None:
        paths = self.clashes.get(case_id)
        if not paths:
            return None
        why = (" (their names differ only in Unicode normalisation: the same characters "
               "written as different code points)" if len(self.written[case_id]) > 1 else "")
        return (f"ambiguous {self.side} files: {', '.join(map(str, paths))} all give case id "
                f"{case_id}{why}; keep one (the case is not evaluated)")


def _side_of(listing: Listing, postfix: str | None, side: str) -> _Side:
    """Ids of a folder's files; a case folder that cannot be read keeps its id (and fails
    when the case is read, naming the folder)."""
    found = assign_ids(listing.files, postfix, side)
    for folder in listing.unreadable:
        found.add(strip_suffixes(folder.name, postfix), folder)
    return found


def _report_unused(paths, side: str, folder: Path, problems: list[Problem]) -> None:
    for path in paths:
        kind = "folder" if path.is_dir() else "file"
        why = ("its name starts with '.'" if path.name.startswith(".")
               else "it is not a case file of this folder")
        problems.append(Problem("", str(path), f"{kind} {path} in the {side} folder {folder} "
                                f"is not used ({why})", "warning"))


def _check_folder(folder, what) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{what} folder {folder} does not exist or is not a folder")
    return folder


def detect_format(pred_dir: Path, options: EvalOptions) -> str:
    """"nnunet-v2", "nnunet-v1", "npy", "per-class-files" or "nifti"."""
    fmt = options.format
    if fmt == "per-class-files" or (fmt == "auto" and options.class_pattern):
        return "per-class-files"
    if fmt in ("auto", "nnunet"):
        npz = [p for p in sorted(pred_dir.glob("*.npz")) if not _own_output(p)]
        nnunet_files = (pred_dir / "dataset.json").is_file() and (pred_dir / "plans.json").is_file()
        if npz and nnunet_files:
            return "nnunet-v2"
        if npz and options.layout is None:  # a layout given says: generic arrays
            keys = _npz_keys(npz[0])
            if "probabilities" in keys:
                return "nnunet-v2"
            if "softmax" in keys:
                return "nnunet-v1"
        if nnunet_files and not npz and not list(pred_dir.glob("*.npy")):
            raise ValueError(
                f"{pred_dir}: this folder holds segmentations, not probabilities: rerun "
                "nnU-Net with --save_probabilities (the folder has nnU-Net's dataset.json "
                "and plans.json but no <case>.npz)")
        if fmt == "nnunet":
            raise ValueError(
                f"{pred_dir} is not an nnU-Net prediction folder: expected dataset.json, "
                "plans.json and <case>.npz files (run nnU-Net with --save_probabilities)"
            )
        arrays = bool(npz or list(pred_dir.glob("*.npy")))
        niftis = any(pred_dir.glob("*.nii*"))
        if arrays and (options.layout is not None or not niftis):
            return "npy"  # arrays next to NIfTI files without layout: the NIfTI files count
        return "nifti"
    return fmt


def _check_options_fit(fmt: str, pred_dir: Path, options: EvalOptions) -> None:
    """Options that the folder's format would ignore are a usage error, not silence."""
    if options.npz_key is not None and fmt != "npy":
        why = ("nnU-Net npz files hold 'probabilities' (v2) or 'softmax' (v1)"
               if fmt.startswith("nnunet") else "it holds no generic .npz arrays")
        raise ValueError(f"--npz-key {options.npz_key!r} does not apply to {pred_dir} (format "
                         f"{fmt}): {why}; leave it out")
    if options.scale is not None and fmt not in ("nifti", "per-class-files", "npy"):
        raise ValueError(f"--scale does not apply to {pred_dir} (format "
                         f"{fmt}: its arrays are read as stored; --scale applies only to "
                         "integer-stored NIfTI maps without scl_slope and integer "
                         "arrays); leave it out")
    if options.layout is not None and fmt != "npy":
        raise ValueError(f"--layout {options.layout!r} does not apply to {pred_dir} (format "
                         f"{fmt}: its axis order is known from the file); leave it out")


def _npz_keys(path: Path) -> list[str]:
    try:
        check_readable(path)  # never open a FIFO (it blocks) or an unreadable file
        with zipfile.ZipFile(path) as zf:
            return [split_ext(n)[0] for n in zf.namelist()]
    except (OSError, ValueError, zipfile.BadZipFile):
        return []


def _file_ending(dataset_json: Path) -> str:
    try:
        ending = json.loads(dataset_json.read_text()).get("file_ending", ".nii.gz")
    except (OSError, ValueError, AttributeError) as err:
        raise ValueError(f"cannot read {dataset_json}: {err}") from None
    return str(ending)


def _reader_writer(pred_dir: Path) -> str:
    names = []
    for fname, key in (("plans.json", "image_reader_writer"),
                       ("dataset.json", "overwrite_image_reader_writer")):
        path = pred_dir / fname
        if path.is_file():
            try:
                value = json.loads(path.read_text()).get(key)
            except (OSError, ValueError):
                value = None
            if value:
                names.append(str(value))
    return names[-1] if names else ""


@dataclass
class _PredictionFolder:
    """What a prediction folder holds: its format, model definitions and files."""

    format: str
    listing: Listing = field(default_factory=Listing)
    model: LabelSpec | None = None
    reorient: bool = False
    seg_ending: str = ".nii.gz"
    class_names: list[str] | None = None
    own_outputs: list[Path] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        return self.listing.files


#: nnU-Net writes these next to the probabilities; they are not reported as unused.
NNUNET_FILES = ("dataset.json", "plans.json", "predict_from_raw_data_args.json")


def _read_prediction_folder(pred_dir: Path, options: EvalOptions) -> _PredictionFolder:
    fmt = detect_format(pred_dir, options)
    _check_options_fit(fmt, pred_dir, options)
    folder = _PredictionFolder(fmt)
    if fmt == "nnunet-v2":
        dataset_json = pred_dir / "dataset.json"
        if not dataset_json.is_file():
            raise ValueError(f"nnU-Net v2 folder {pred_dir} has no dataset.json")
        folder.model = read_dataset_json(dataset_json)
        folder.seg_ending = _file_ending(dataset_json)
        folder.reorient = "withreorient" in _reader_writer(pred_dir).lower()
    elif fmt == "nnunet-v1":
        if (pred_dir / "dataset.json").is_file():
            folder.model = read_dataset_json(pred_dir / "dataset.json")
    elif fmt == "npy":
        if not options.layout:
            raise ValueError(
                f"{pred_dir} holds .npy/.npz arrays: give their axis order with layout "
                "(e.g. 'cijk', 'ckji' or 'ijkc')"
            )
    elif fmt == "per-class-files":
        if not options.class_pattern or "{case}" not in options.class_pattern \
                or "{class}" not in options.class_pattern:
            raise ValueError("per-class-files need class_pattern with {case} and {class}, "
                             "e.g. '{case}_{class}.nii.gz'")
        if not options.classes:
            raise ValueError("per-class-files need classes, e.g. 'liver=1,tumour=2'")
        folder.class_names = [n for n, _ in parse_classes(options.classes)]
        return folder
    exts = {"nnunet-v2": (".npz",), "nnunet-v1": (".npz",), "npy": ARRAY_EXTS}.get(fmt, NIFTI_EXTS)
    folder.listing = list_folder(pred_dir, exts, options.pattern)
    folder.own_outputs = _leave_out_own_outputs(pred_dir, folder.listing)
    if fmt.startswith("nnunet"):
        stems = {split_ext(p.name)[0] for p in folder.files}
        folder.listing.unused = [
            p for p in folder.listing.unused if p.name not in NNUNET_FILES
            and not (split_ext(p.name)[0] in stems and split_ext(p.name)[1] in
                     (".pkl", folder.seg_ending))]
    return folder


def _own_output(path: Path) -> bool:
    """A file or folder calibviz writes, next to the ``run.json`` of the run that wrote it."""
    from ..store import OWN_OUTPUTS

    names = {n for n in OWN_OUTPUTS if "/" not in n} | {"figures", ".partial"}
    return path.name in names and (path.parent / "run.json").is_file()


def _leave_out_own_outputs(folder: Path, listing: Listing) -> list[Path]:
    """calibviz's outputs in a folder an earlier run wrote into (one that holds that run's
    ``run.json``): taken out of ``listing`` and returned, never read as cases."""
    own = [p for p in (*listing.files, *listing.unused) if _own_output(p)]
    listing.files = [p for p in listing.files if p not in own]
    listing.unused = [p for p in listing.unused if p not in own]
    return own


def discover_cases(pred_dir, label_dir, options: EvalOptions | None = None,
                   ) -> tuple[list[Case], list[Problem]]:
    """Find and pair the cases of a prediction folder and a label folder.

    Returns the paired cases (sorted by id) and the problems found: unpaired files by name
    (warnings, errors when ``options.strict``), files not used (warnings), missing masks.
    A case with ambiguous files (two files giving its id) is returned with ``error`` set; a
    case file that cannot be read fails when its case is evaluated. Raises
    :class:`ValueError` when a folder is missing, holds no usable files or looks wrong as a
    whole (segmentations or label maps instead of probabilities, folders given in the wrong
    order, the same files as predictions and labels). Case ids are paired by their NFC form;
    statistics an earlier run left in the prediction folder are never cases.
    """
    options = options or EvalOptions()
    pred_dir = _check_folder(pred_dir, "prediction")
    label_dir = _check_folder(label_dir, "label")
    problems: list[Problem] = []
    folder = _read_prediction_folder(pred_dir, options)
    label_listing = list_folder(label_dir, NIFTI_EXTS, options.label_pattern)
    if not label_listing.files and not label_listing.unreadable:
        where = f"matching {options.label_pattern!r}" if options.label_pattern else "(.nii/.nii.gz)"
        raise ValueError(f"no label files {where} found in {label_dir}")
    _check_not_both(pred_dir, label_dir, folder.files, label_listing.files)
    labels = _side_of(label_listing, options.postfix, "label")
    if folder.format == "per-class-files":
        pred_ids, class_problems = _per_class_files(pred_dir, options.class_pattern,
                                                    folder.class_names)
        preds = _Side("prediction")
        for case_id, files in pred_ids.items():
            preds.add(case_id, files)
        problems += class_problems
    else:
        if not folder.files and not folder.listing.unreadable:
            raise ValueError(
                f"no prediction files found in {pred_dir} (format {folder.format}"
                + (f", pattern {options.pattern!r}" if options.pattern else "") + ")"
            )
        preds = _side_of(folder.listing, options.postfix, "prediction")
        check_not_swapped(pred_dir, folder.format, folder.files, label_listing.files, options)
        check_not_label_maps(pred_dir, folder.format, folder.files, options)
    masks = None
    if options.mask_dir:
        mask_dir = _check_folder(options.mask_dir, "mask")
        mask_listing = list_folder(mask_dir, NIFTI_EXTS)
        masks = _side_of(mask_listing, options.postfix, "mask")
        _report_unused(mask_listing.unused, "mask", mask_dir, problems)
    _report_unused(folder.listing.unused, "prediction", pred_dir, problems)
    for path in folder.own_outputs:
        kind = "folder" if path.is_dir() else "file"
        problems.append(Problem("", str(path), f"{kind} {path} in the prediction folder "
                                f"{pred_dir} is not used (calibviz's own output: an earlier "
                                "run wrote into this folder)", "warning"))
    _report_unused(label_listing.unused, "label", label_dir, problems)
    cases = _pair(folder, preds, labels, masks, options, (pred_dir, label_dir), problems)
    check_scale_applies(cases, options)
    return cases, problems


def _check_not_both(pred_dir: Path, label_dir: Path, pred_files, label_files) -> None:
    """No file may be read both as a prediction and as a label (the same folder given twice,
    or patterns that select the same files; symbolic links resolved)."""
    labels = {_resolved(p) for p in label_files}
    both = [p for p in pred_files if _resolved(p) in labels]
    if not both:
        return
    if _resolved(pred_dir) == _resolved(label_dir) and len(both) == len(pred_files):
        raise ValueError(f"the prediction folder {pred_dir} is the label folder {label_dir}: "
                         "give the folder of predicted probabilities first, then the labels")
    raise ValueError(f"{both[0]} is both a prediction and a label file ({len(both)} such "
                     f"file(s) in {pred_dir} and {label_dir}): give the folder of predicted "
                     "probabilities first, then the labels")


def _resolved(path: Path) -> Path:
    """``path`` with symbolic links resolved; a link that loops or cannot be followed stays
    as it is (its case reports it)."""
    return Path(os.path.realpath(path))  # never raises (Path.resolve does on a loop)


def _pair(folder: _PredictionFolder, preds: _Side, labels: _Side, masks: _Side | None,
          options: EvalOptions, dirs: tuple[Path, Path], problems: list[Problem]) -> list[Case]:
    """One :class:`Case` per prediction with a label (and a mask when masks are used)."""
    unpaired = "error" if options.strict else "warning"
    pred_dir, label_dir = dirs
    cases = []
    for case_id in sorted(set(preds.ids) | set(labels.ids)):
        clashes = [t for t in (side.clash(case_id) for side in (preds, labels, masks) if side)
                   if t]
        if case_id not in preds.ids or case_id not in labels.ids:
            have, other, where = ((preds, "label file", label_dir) if case_id in preds.ids
                                  else (labels, "prediction", pred_dir))
            name = _name(have.ids[case_id])
            problems.append(Problem(case_id, name, f"case {case_id}: {have.side} {name} has no "
                                    f"{other} in {where}", unpaired))
            problems += [Problem(case_id, name, f"case {case_id}: {t}") for t in clashes]
            continue
        pred, label = preds.ids[case_id], labels.ids[case_id]
        mask = None
        if masks is not None:
            if case_id not in masks.ids:
                problems.append(Problem(
                    case_id, _name(pred),
                    f"case {case_id}: no mask file in {options.mask_dir} "
                    f"(prediction {_name(pred)}, label {label})",
                ))
                continue
            mask = str(masks.ids[case_id])
        segmentation = None
        if folder.format.startswith("nnunet"):
            seg = pred.parent / (split_ext(pred.name)[0] + folder.seg_ending)
            segmentation = str(seg) if os.path.lexists(seg) else None
        cases.append(Case(
            case_id=case_id,
            prediction=tuple(map(str, pred)) if isinstance(pred, tuple) else str(pred),
            label=str(label), mask=mask, format=folder.format,
            segmentation=segmentation, model=folder.model, reorient=folder.reorient,
            class_files=tuple(folder.class_names) if folder.class_names else None,
            error="; ".join(clashes) or None,
        ))
    return cases


def _name(pred) -> str:
    return ", ".join(map(str, pred)) if isinstance(pred, tuple) else str(pred)


def _per_class_files(pred_dir: Path, pattern: str, class_names: list[str]):
    """Group per-class files by case: ``{case: (path per class in class order)}``."""
    check_pattern(pattern, "class_pattern")
    glob = pattern.replace("{case}", "*").replace("{class}", "*")
    regex = re.escape(pattern)
    regex = regex.replace(re.escape("{case}"), "(?P<case>.+?)").replace(
        re.escape("{class}"), "(?P<cls>" + "|".join(re.escape(n) for n in class_names) + ")"
    )
    matcher = re.compile(regex + r"\Z")
    groups: dict[str, dict[str, Path]] = {}
    for path in sorted(pred_dir.glob(glob)):
        rel = path.relative_to(pred_dir).as_posix()
        m = matcher.match(rel)
        if m is None:
            continue
        groups.setdefault(nfc(m.group("case")), {})[m.group("cls")] = path
    if not groups:
        raise ValueError(f"no prediction files matching {pattern!r} found in {pred_dir}")
    ids: dict[str, tuple[Path, ...]] = {}
    problems = []
    for case_id, files in sorted(groups.items()):
        missing = [n for n in class_names if n not in files]
        if missing:
            problems.append(Problem(
                case_id, str(pred_dir),
                f"case {case_id}: no file for class(es) {missing} "
                f"(pattern {pattern!r} in {pred_dir})",
            ))
            continue
        ids[case_id] = tuple(files[n] for n in class_names)
    return ids, problems
