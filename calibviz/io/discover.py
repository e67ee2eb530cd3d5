"""Finding cases in a prediction folder and a label folder and pairing them by case id."""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..options import EvalOptions, parse_classes
from .classes import read_dataset_json
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


def list_files(folder: Path, exts: tuple[str, ...], pattern: str | None = None) -> list[Path]:
    """Files in ``folder`` matching ``pattern`` (a glob), or with one of ``exts`` at the top
    level, or (when the top level has none) one folder down (one folder per case)."""
    if pattern:
        return sorted(p for p in folder.glob(pattern) if p.is_file())
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(exts))
    if not found:
        found = sorted(p for p in folder.glob("*/*") if p.is_file() and p.name.endswith(exts))
    return [p for p in found if not p.name.startswith(".")]


def assign_ids(paths: list[Path], postfix: str | None, side: str,
               problems: list[Problem], strict: bool) -> dict[str, Path]:
    """Case id per file: the file name without extension and suffixes, or the parent folder's
    name when file names repeat across folders (``case_00000/segmentation.nii.gz``)."""
    stems = [strip_suffixes(split_ext(p.name)[0], postfix) for p in paths]
    if len(set(stems)) < len(stems):
        parents = [strip_suffixes(p.parent.name, postfix) for p in paths]
        if len(set(parents)) == len(parents):
            stems = parents
    ids: dict[str, Path] = {}
    for stem, path in zip(stems, paths, strict=True):
        if stem in ids:
            problems.append(Problem(
                stem, str(path),
                f"case {stem}: two {side} files map to this case id: {ids[stem]} and {path}; "
                f"only the first is used",
                "error" if strict else "warning",
            ))
            continue
        ids[stem] = path
    return ids


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
        npz = sorted(pred_dir.glob("*.npz"))
        if npz and (pred_dir / "dataset.json").is_file() and (pred_dir / "plans.json").is_file():
            return "nnunet-v2"
        if npz:
            keys = _npz_keys(npz[0])
            if "probabilities" in keys:
                return "nnunet-v2"
            if "softmax" in keys:
                return "nnunet-v1"
        if fmt == "nnunet":
            raise ValueError(
                f"{pred_dir} is not an nnU-Net prediction folder: expected dataset.json, "
                "plans.json and <case>.npz files (run nnU-Net with --save_probabilities)"
            )
        if npz or list(pred_dir.glob("*.npy")):
            return "npy"
        return "nifti"
    return fmt


def _npz_keys(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            return [split_ext(n)[0] for n in zf.namelist()]
    except (OSError, zipfile.BadZipFile):
        return []


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
    files: list[Path] = field(default_factory=list)
    model: LabelSpec | None = None
    reorient: bool = False
    seg_ending: str = ".nii.gz"
    class_names: list[str] | None = None


def _read_prediction_folder(pred_dir: Path, options: EvalOptions) -> _PredictionFolder:
    fmt = detect_format(pred_dir, options)
    if options.npz_key and fmt != "npy":
        raise ValueError(f"--npz-key applies to generic .npy/.npz arrays (input format npy), "
                         f"but {pred_dir} is read as {fmt}, whose array name is fixed")
    folder = _PredictionFolder(fmt)
    if fmt == "nnunet-v2":
        dataset_json = pred_dir / "dataset.json"
        if not dataset_json.is_file():
            raise ValueError(f"nnU-Net v2 folder {pred_dir} has no dataset.json")
        folder.model = read_dataset_json(dataset_json)
        folder.seg_ending = json.loads(dataset_json.read_text()).get("file_ending", ".nii.gz")
        folder.reorient = "withreorient" in _reader_writer(pred_dir).lower()
        folder.files = list_files(pred_dir, (".npz",), options.pattern or "*.npz")
    elif fmt == "nnunet-v1":
        if (pred_dir / "dataset.json").is_file():
            folder.model = read_dataset_json(pred_dir / "dataset.json")
        folder.files = list_files(pred_dir, (".npz",), options.pattern or "*.npz")
    elif fmt == "npy":
        if not options.layout:
            raise ValueError(
                f"{pred_dir} holds .npy/.npz arrays: give their axis order with layout "
                "(e.g. 'cijk', 'ckji' or 'ijkc')"
            )
        folder.files = list_files(pred_dir, ARRAY_EXTS, options.pattern)
    elif fmt == "per-class-files":
        if not options.class_pattern or "{case}" not in options.class_pattern \
                or "{class}" not in options.class_pattern:
            raise ValueError("per-class-files need class_pattern with {case} and {class}, "
                             "e.g. '{case}_{class}.nii.gz'")
        if not options.classes:
            raise ValueError("per-class-files need classes, e.g. 'liver=1,tumour=2'")
        folder.class_names = [n for n, _ in parse_classes(options.classes)]
    else:
        folder.files = list_files(pred_dir, NIFTI_EXTS, options.pattern)
    return folder


def discover_cases(pred_dir, label_dir, options: EvalOptions | None = None,
                   ) -> tuple[list[Case], list[Problem]]:
    """Find and pair the cases of a prediction folder and a label folder.

    Returns the paired cases (sorted by id) and the problems found: unpaired files by name
    (warnings, errors when ``options.strict``), duplicate ids, missing masks. Raises
    :class:`ValueError` when a folder is missing or holds no usable files.
    """
    options = options or EvalOptions()
    pred_dir = _check_folder(pred_dir, "prediction")
    label_dir = _check_folder(label_dir, "label")
    problems: list[Problem] = []
    folder = _read_prediction_folder(pred_dir, options)
    labels = list_files(label_dir, NIFTI_EXTS, options.label_pattern)
    if not labels:
        where = f"matching {options.label_pattern!r}" if options.label_pattern else "(.nii/.nii.gz)"
        raise ValueError(f"no label files {where} found in {label_dir}")
    label_ids = assign_ids(labels, options.postfix, "label", problems, options.strict)
    if folder.format == "per-class-files":
        pred_ids, class_problems = _per_class_files(pred_dir, options.class_pattern,
                                                    folder.class_names)
        problems += class_problems
    else:
        if not folder.files:
            raise ValueError(
                f"no prediction files found in {pred_dir} (format {folder.format}"
                + (f", pattern {options.pattern!r}" if options.pattern else "") + ")"
            )
        pred_ids = assign_ids(folder.files, options.postfix, "prediction", problems,
                              options.strict)
    mask_ids: dict[str, Path] = {}
    if options.mask_dir:
        mask_dir = _check_folder(options.mask_dir, "mask")
        mask_ids = assign_ids(list_files(mask_dir, NIFTI_EXTS), options.postfix, "mask",
                              problems, options.strict)
    cases = _pair(folder, pred_ids, label_ids, mask_ids, options, label_dir, problems)
    unpaired = "error" if options.strict else "warning"
    for case_id in sorted(set(label_ids) - set(pred_ids)):
        problems.append(Problem(
            case_id, str(label_ids[case_id]),
            f"case {case_id}: label {label_ids[case_id]} has no prediction in {pred_dir}",
            unpaired,
        ))
    return cases, problems


def _pair(folder: _PredictionFolder, pred_ids, label_ids, mask_ids, options: EvalOptions,
          label_dir: Path, problems: list[Problem]) -> list[Case]:
    """One :class:`Case` per prediction with a label (and a mask when masks are used)."""
    unpaired = "error" if options.strict else "warning"
    cases = []
    for case_id in sorted(pred_ids):
        pred = pred_ids[case_id]
        pred_name = ", ".join(map(str, pred)) if isinstance(pred, tuple) else str(pred)
        if case_id not in label_ids:
            problems.append(Problem(
                case_id, pred_name,
                f"case {case_id}: prediction {pred_name} has no label file in {label_dir}",
                unpaired,
            ))
            continue
        mask = None
        if options.mask_dir:
            if case_id not in mask_ids:
                problems.append(Problem(
                    case_id, pred_name,
                    f"case {case_id}: no mask file in {options.mask_dir} "
                    f"(prediction {pred_name}, label {label_ids[case_id]})",
                ))
                continue
            mask = str(mask_ids[case_id])
        segmentation = None
        if folder.format.startswith("nnunet"):
            seg = pred.parent / (split_ext(pred.name)[0] + folder.seg_ending)
            segmentation = str(seg) if seg.is_file() else None
        cases.append(Case(
            case_id=case_id,
            prediction=tuple(map(str, pred)) if isinstance(pred, tuple) else str(pred),
            label=str(label_ids[case_id]), mask=mask, format=folder.format,
            segmentation=segmentation, model=folder.model, reorient=folder.reorient,
            class_files=tuple(folder.class_names) if folder.class_names else None,
        ))
    return cases


def _per_class_files(pred_dir: Path, pattern: str, class_names: list[str]):
    """Group per-class files by case: ``{case: (path per class in class order)}``."""
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
        if m is None or not path.is_file():
            continue
        groups.setdefault(m.group("case"), {})[m.group("cls")] = path
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
