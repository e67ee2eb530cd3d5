"""Class and region definitions: ``dataset.json`` (nnU-Net v2 and v1/MSD), user options and
presets, and their resolution against the channels of a prediction.

Regions are never guessed from label values: the same values mean different things in
different datasets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..options import EvalOptions, check_ignore_unscored, parse_classes, user_regions
from .types import LabelSpec


@dataclass(frozen=True)
class Target:
    """One scored class or region.

    channels : prediction channels whose probabilities are summed (one for a plain class).
    members : label values whose union is the truth.
    """

    name: str
    channels: tuple[int, ...]
    members: tuple[int, ...]


@dataclass(frozen=True)
class Resolved:
    """What a case's channels mean and what is scored.

    channel_values : per channel, the label values it predicts (one value = a class).
    softmax : channels are a softmax over every label (background included): sums ≈ 1.
    declared : label values allowed in the label map.
    regions_assumed : nothing said what the channels are, and their number equals the
        regions asked for, so each channel is taken to be one region's probability.
    """

    channel_names: tuple[str, ...]
    channel_values: tuple[tuple[int, ...], ...]
    softmax: bool
    targets: tuple[Target, ...]
    declared: tuple[int, ...]
    ignore_label: int | None
    regions_assumed: bool = False  # channels taken to be the user's regions, one each

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.targets)


class OptionsConflict(ValueError):
    """The options contradict each other for every case with these classes (a usage error
    of the run, said once, not a problem of one case)."""


def _check_ignore_unscored(ignore: int, channel_names, channel_values, regions) -> None:
    """:class:`OptionsConflict` when the ignore label is a label value that a channel or
    region scores: its voxels would be left out of that class's own score, silently."""
    named = list(zip(channel_names, channel_values, strict=True)) + list(regions or [])
    try:
        check_ignore_unscored(ignore, named)
    except ValueError as error:
        raise OptionsConflict(str(error)) from None


def read_dataset_json(path: str | Path) -> LabelSpec:
    """Label definitions from an nnU-Net ``dataset.json`` (v2 ``{"name": value}`` or v1/MSD
    ``{"value": "name"}``, told apart by digit-string keys).

    Entries are in channel order: a softmax model's channels are its label values sorted
    (``ignore`` excluded); a region model's channels are its non-background entries as written.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path}: {err}") from None
    labels = data.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise ValueError(f"{path}: no 'labels' mapping found")
    if all(isinstance(k, str) and k.strip().lstrip("-").isdigit() for k in labels):
        # v1 / MSD: {"0": "background", "1": "liver"}
        entries = sorted(((str(v), (int(k),)) for k, v in labels.items()), key=lambda e: e[1])
        return LabelSpec(tuple(entries), source=str(path))
    entries = []
    ignore = None
    is_region = False
    for name, value in labels.items():
        if isinstance(value, list | tuple):
            values = tuple(int(v) for v in value)
            is_region = is_region or len(values) > 1
        else:
            values = (int(value),)
        if name == "ignore":
            ignore = values[0]
            continue
        entries.append((str(name), values))
    order = data.get("regions_class_order")
    if is_region:
        if order is None:
            raise ValueError(f"{path}: region-based labels but no 'regions_class_order'")
        order = tuple(int(v) for v in order)
    else:
        entries.sort(key=lambda e: e[1][0])
        order = None
    return LabelSpec(tuple(entries), is_region=is_region, regions_class_order=order,
                     ignore_label=ignore, source=str(path))


# --------------------------------------------------------------------------- resolution
def _name_for(value: int) -> str:
    return "background" if value == 0 else f"label{value}"


def _channels(n_channels: int, options: EvalOptions, model: LabelSpec | None,
              class_files, classes, regions) -> tuple[list, list, set]:
    """Names, label values (per channel) and the declared label values."""
    if model is not None:
        if model.is_region:
            entries = [(n, v) for n, v in model.entries if v != (0,)]
        else:
            entries = list(model.entries)
        if len(entries) != n_channels:
            raise ValueError(
                f"{model.source} defines {len(entries)} channels "
                f"({', '.join(n for n, _ in entries)}) but the prediction has {n_channels}"
            )
        channel_names = [n for n, _ in entries]
        channel_values = [v for _, v in entries]
        declared = {x for _, v in model.entries for x in v} | {0}
        if classes is not None:  # user names for the model's classes, matched by value
            rename = {v: n for n, v in classes}
            channel_names = [
                rename.get(v[0], n) if len(v) == 1 else n
                for n, v in zip(channel_names, channel_values, strict=True)
            ]
    elif class_files is not None:
        if classes is None:
            raise ValueError("per-class-files need classes, e.g. classes='liver=1,tumour=2'")
        channel_names = [n for n, _ in classes]
        channel_values = [(v,) for _, v in classes]
        declared = {v for _, v in classes} | {0}
    elif classes is not None:
        if n_channels == len(classes):
            channel_names = [n for n, _ in classes]
            channel_values = [(v,) for _, v in classes]
        elif n_channels == len(classes) + 1 and all(v != 0 for _, v in classes):
            channel_names = ["background"] + [n for n, _ in classes]
            channel_values = [(0,)] + [(v,) for _, v in classes]
        else:
            raise ValueError(
                f"classes {options.classes!r} name {len(classes)} classes but the prediction "
                f"has {n_channels} channels (expected {len(classes)}, or {len(classes) + 1} "
                "with a background channel first)"
            )
        declared = {v for _, v in classes} | {0}
    elif regions is not None and n_channels == len(regions):
        channel_names = [n for n, _ in regions]
        channel_values = [v for _, v in regions]
        declared = {x for _, v in regions for x in v} | {0}
    elif n_channels == 1:
        channel_names, channel_values, declared = ["foreground"], [(1,)], {0, 1}
    else:
        channel_values = [(v,) for v in range(n_channels)]
        channel_names = [_name_for(v) for v in range(n_channels)]
        declared = set(range(n_channels))
    return channel_names, channel_values, declared


def _targets(options: EvalOptions, regions, channel_names, channel_values,
             single: bool, values: list) -> list[Target]:
    """The scored classes or regions, each with its channels and member labels."""
    targets: list[Target] = []
    if regions is not None:
        by_set = {frozenset(v): i for i, v in enumerate(channel_values)}
        for name, members in regions:
            if frozenset(members) in by_set:
                targets.append(Target(name, (by_set[frozenset(members)],), tuple(members)))
                continue
            if not single:
                known = "; ".join(
                    f"{n}={v}" for n, v in zip(channel_names, channel_values, strict=True)
                )
                raise ValueError(
                    f"region {name}={','.join(map(str, members))} is not one of the model's "
                    f"regions ({known})"
                )
            missing = [m for m in members if m not in values]
            if missing:
                raise ValueError(
                    f"region {name!r} needs label values {missing} but the prediction channels "
                    f"hold only {values}"
                )
            targets.append(Target(name, tuple(values.index(m) for m in members), tuple(members)))
    else:
        include_bg = options.include_background
        for i, (name, members) in enumerate(zip(channel_names, channel_values, strict=True)):
            is_bg = members == (0,)
            if is_bg and not include_bg:
                continue
            targets.append(Target(name, (i,), tuple(members)))
        if not targets:
            raise ValueError("no classes left to score (only a background channel)")
    return targets


def resolve(
    n_channels: int,
    options: EvalOptions,
    model: LabelSpec | None = None,
    class_files: tuple[str, ...] | None = None,
) -> Resolved:
    """Decide what each of ``n_channels`` channels predicts and which targets are scored.

    Raises :class:`ValueError` when the definitions do not fit the channels.
    """
    ignore = options.ignore_label
    if model is not None and model.ignore_label is not None:
        if ignore is not None and ignore != model.ignore_label:
            raise ValueError(
                f"ignore_label={ignore} but {model.source} declares ignore={model.ignore_label}"
            )
        ignore = model.ignore_label
    classes = parse_classes(options.classes) if options.classes else None
    regions = user_regions(options)

    channel_names, channel_values, declared = _channels(
        n_channels, options, model, class_files, classes, regions)
    if regions is not None:
        declared |= {x for _, v in regions for x in v}
    if ignore is not None:
        _check_ignore_unscored(int(ignore), channel_names, channel_values, regions)
        declared.add(int(ignore))
    single = all(len(v) == 1 for v in channel_values)
    values = [v[0] for v in channel_values] if single else []
    softmax = single and n_channels > 1 and 0 in values
    if model is not None and model.is_region:
        softmax = False

    targets = _targets(options, regions, channel_names, channel_values, single, values)
    return Resolved(
        channel_names=tuple(channel_names),
        channel_values=tuple(tuple(v) for v in channel_values),
        softmax=softmax,
        targets=tuple(targets),
        declared=tuple(sorted(declared)),
        ignore_label=None if ignore is None else int(ignore),
        regions_assumed=(model is None and class_files is None and classes is None
                         and regions is not None and n_channels == len(regions)
                         and n_channels > 1),
    )
