"""``wbspine dataset import``: check every case of an annotated folder, then write them.

Two passes: :func:`plan_import` reads each case (image file or DICOM series, label map),
checks it and keeps only counts; :func:`write_import` reads them again and writes the
dataset. Nothing is written unless every case passed, so a refusal never leaves a
half-imported dataset. Refusals (:class:`~appliance.errors.DatasetError`, one line):

- an unknown structure name in ``annotated`` (the valid ones are listed);
- image and label map on different grids (both grids named);
- a label map with no voxel that maps to a structure ("mapping matches no voxel",
  with the values present and the mapping), or an empty label map;
- a structure in ``annotated`` that the mapping does not produce or that has no voxel
  in a case (the loss would learn that the structure is absent);
- a ``--map`` entry none of whose source values occurs in any case. An entry (one
  ``--map`` argument, e.g. ``25,26,77,78=2``) may list values that only some cases,
  or none, use (left/right variants): such values are only warned about. A whole entry
  that matches nothing is a typo or the wrong folder, so it is refused. Mappings that
  come from a labels file or ``--project-labels`` describe more labels than a folder
  usually uses; their absent values are not reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from appliance.errors import DatasetError, InputVolumeError
from appliance.labels import LABEL_NAMES, STRUCTURES
from appliance.volume import Volume, read_nifti, write_nifti
from training import dataset as ds
from training import itksnap

#: ``--project-labels``: the values already follow appliance.labels.
PROJECT_MAPPING = {int(s): int(s) for s in STRUCTURES}
#: Label maps with values below this are counted with ``np.bincount`` (fast), others with ``np.unique``.
_BINCOUNT_LIMIT = 1 << 16


@dataclass(frozen=True)
class MappingSpec:
    """The value → project label mapping and where each part came from."""

    mapping: dict[int, int]
    entries: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (--map text, its source values)
    labels_file: Path | None = None
    names: dict[int, str] = field(default_factory=dict)     # value → name from the labels file
    unmapped: dict[int, str] = field(default_factory=dict)  # labels-file names left unmapped
    origin: str = "--map"


@dataclass(frozen=True)
class CaseCheck:
    source: itksnap.CaseSource
    grid: str
    counts: dict[int, int]          # label value → voxels
    voxels: dict[str, int]          # structure → voxels after mapping (before erasing)
    annotated: tuple[str, ...]
    erased: tuple[str, ...]         # structures with voxels that ``annotated`` leaves out


@dataclass(frozen=True)
class ImportPlan:
    src: Path
    discovery: itksnap.Discovery
    spec: MappingSpec
    cases: tuple[CaseCheck, ...]
    warnings: tuple[str, ...]


def structure_names(names: Iterable[str] | None) -> tuple[str, ...] | None:
    """Validate ``--annotated`` names (commas allowed); None stays None (= from the voxels)."""
    if names is None:
        return None
    flat = [n.strip() for item in names for n in str(item).split(",") if n.strip()]
    unknown = [n for n in flat if n not in ds.STRUCTURE_NAMES]
    if unknown:
        raise DatasetError(f"unknown structure {', '.join(map(repr, unknown))} for --annotated; "
                           f"valid names: {', '.join(ds.STRUCTURE_NAMES)}")
    if not flat:
        raise DatasetError(f"--annotated needs at least one of: {', '.join(ds.STRUCTURE_NAMES)}")
    return tuple(n for n in ds.STRUCTURE_NAMES if n in flat)


def mapping_spec(map_items: Sequence[str] | Mapping[int, int] | None, labels_file: Path | None = None,
                 project_labels: bool = False) -> MappingSpec:
    """Combine a labels file (or ``--project-labels``) with ``--map`` items, which win per
    value. A dict stands for one entry per target value."""
    if isinstance(map_items, Mapping):
        by_target: dict[int, list[int]] = {}
        for v, t in sorted(map_items.items()):
            by_target.setdefault(int(t), []).append(int(v))
        map_items = [f"{','.join(map(str, vs))}={t}" for t, vs in by_target.items()]
    items = list(map_items or [])
    given = ds.parse_mapping(items)
    entries = tuple((item, tuple(ds.parse_mapping([item]))) for item in items)
    base: dict[int, int] = {}
    names: dict[int, str] = {}
    unmapped: dict[int, str] = {}
    origin = "--map"
    if labels_file is not None and project_labels:
        raise DatasetError("--labels-file and --project-labels exclude each other")
    if labels_file is not None:
        names = itksnap.read_label_descriptions(labels_file)
        base, unmapped = itksnap.mapping_from_descriptions(names)
        origin = f"labels file {labels_file.name}"
    elif project_labels:
        base, origin = dict(PROJECT_MAPPING), "--project-labels"
    if not base and not given:
        raise DatasetError("no label mapping: give --map SRC=TARGET, --labels-file FILE, or "
                           "--project-labels (values already 1 vertebral_bodies, 2 pelvis, 3 femoral_heads)")
    mapping = base | given
    bad = sorted(set(mapping.values()) - set(LABEL_NAMES))
    if bad:
        raise DatasetError(f"mapping targets {bad} are not project labels "
                           f"({', '.join(f'{k} {v}' for k, v in LABEL_NAMES.items())})")
    if not any(mapping.values()):
        raise DatasetError("the label mapping maps every value to background")
    unmapped = {v: n for v, n in unmapped.items() if v not in given}
    return MappingSpec(mapping, entries, labels_file, names, unmapped, origin + (" + --map" if base and given else ""))


def describe_mapping(spec: MappingSpec, values: Iterable[int] | None = None) -> str:
    """``"10 -> vertebral_bodies, 20 -> pelvis"`` (only ``values`` when given)."""
    keys = sorted(spec.mapping) if values is None else sorted(v for v in values if v)
    parts = []
    for v in keys:
        target = spec.mapping.get(v, 0)
        name = f' "{spec.names[v]}"' if v in spec.names else ""
        parts.append(f"{v}{name} -> {LABEL_NAMES[target] if target else 'background'}"
                     + ("" if v in spec.mapping else " (unmapped)"))
    return ", ".join(parts) or "(none)"


def grid_text(volume: Volume) -> str:
    z, y, x = volume.shape_zyx
    sp = "x".join(f"{s:g}" for s in volume.spacing_mm)
    org = ", ".join(f"{o:g}" for o in volume.origin_mm)
    turned = "" if np.allclose(volume.direction, np.eye(3)) else " (oblique/flipped direction)"
    return f"size {x}x{y}x{z}, spacing {sp} mm, origin ({org}) mm{turned}"


def read_image(source: itksnap.CaseSource) -> Volume:
    """The case's image: a single volume file or a DICOM CT series (``appliance.series``)."""
    if source.image_is_dicom:
        from appliance.series import read_series

        return read_series(source.image)
    return read_nifti(source.image)


def _counts(array: np.ndarray, case_id: str) -> dict[int, int]:
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise DatasetError(f"case {case_id}: label map has non-integer values")
    if array.size and array.min() < 0:
        raise DatasetError(f"case {case_id}: label map has negative values")
    if array.size and array.max() < _BINCOUNT_LIMIT:
        counts = np.bincount(array.astype(np.int64, copy=False).ravel())
        return {int(v): int(n) for v, n in enumerate(counts) if n}
    values, n = np.unique(array, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, n)}


def _read_pair(source: itksnap.CaseSource) -> tuple[Volume, Volume]:
    try:
        image, label = read_image(source), read_nifti(source.label)
    except InputVolumeError as exc:
        raise DatasetError(f"case {source.id}: {exc}") from exc
    if not image.same_geometry(label):
        raise DatasetError(f"case {source.id}: image and label map are on different grids: "
                           f"image {source.image.name} {grid_text(image)}; "
                           f"label {source.label.name} {grid_text(label)}")
    return image, label


def check_case(source: itksnap.CaseSource, spec: MappingSpec,
               annotated: tuple[str, ...] | None) -> CaseCheck:
    """Read one case and apply the refusals listed in the module docstring."""
    if not ds._CASE_ID.match(source.id):
        raise DatasetError(f"case id {source.id!r} (from {source.label.name}) must be 1-100 of [A-Za-z0-9._-]")
    image, label = _read_pair(source)
    counts = _counts(label.array, source.id)
    voxels = {LABEL_NAMES[int(s)]: 0 for s in STRUCTURES}
    for value, n in counts.items():
        target = spec.mapping.get(value, 0)
        if target:
            voxels[LABEL_NAMES[target]] += n
    present = ", ".join(f"{v} ({n})" for v, n in sorted(counts.items()))
    if set(counts) <= {0}:
        raise DatasetError(f"case {source.id}: label map {source.label.name} is empty (only 0)")
    if not any(voxels.values()):
        raise DatasetError(f"case {source.id}: mapping matches no voxel: {source.label.name} holds values "
                           f"{present} (value (voxels)); mapping {describe_mapping(spec)}")
    if annotated is None:
        chosen = tuple(n for n, k in voxels.items() if k)
    else:
        produced = {LABEL_NAMES[t] for t in spec.mapping.values() if t}
        for name in annotated:
            if name not in produced:
                raise DatasetError(f"--annotated {name}: the mapping produces no {name} "
                                   f"(mapping {describe_mapping(spec)})")
            if not voxels[name]:
                raise DatasetError(f"case {source.id}: --annotated {name} but it has 0 voxels after mapping "
                                   f"(values {present}); it would teach the network that {name} is absent")
        chosen = annotated
    erased = tuple(n for n, k in voxels.items() if k and n not in chosen)
    return CaseCheck(source, grid_text(image), counts, voxels, chosen, erased)


def plan_import(src: str | Path, map_items: Sequence[str] | Mapping[int, int] | None = None, *,
                labels_file: str | Path | None = None, project_labels: bool = False,
                layout: str | None = None, label_suffix: str | None = None,
                annotated: Iterable[str] | None = None) -> ImportPlan:
    """Find and check every case in ``src``; raises on the first refusal, writes nothing.
    Without ``map_items``, ``labels_file`` and ``project_labels``, a label description
    file in ``src`` (:func:`training.itksnap.find_label_descriptions`) is used if there is one."""
    src = Path(src)
    names = structure_names(annotated)
    discovery = itksnap.discover(src, layout, label_suffix)
    labels_path = Path(labels_file) if labels_file is not None else None
    warnings: list[str] = []
    if labels_path is None and not map_items and not project_labels:
        labels_path = itksnap.find_label_descriptions(src)
        if labels_path is not None:
            warnings.append(f"labels file: {labels_path} (found in {src}; pass --map or --labels-file to choose)")
    spec = mapping_spec(map_items, labels_path, project_labels)
    ids = [c.id for c in discovery.cases]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise DatasetError(f"case ids occur twice: {', '.join(dupes)}")
    cases = tuple(check_case(c, spec, names) for c in discovery.cases)
    seen = set().union(*(c.counts for c in cases))
    for item, values in spec.entries:
        missing = [v for v in values if v not in seen]
        if len(missing) == len(values):
            raise DatasetError(f"--map {item} matches no voxel in any of the {len(cases)} cases "
                               f"(values present: {', '.join(map(str, sorted(seen)))})")
        warnings += [f"warning: --map {item}: value {v} occurs in no case" for v in missing]
    warnings += [f"unmapped: {name} (value {v})" for v, name in sorted(spec.unmapped.items())]
    return ImportPlan(src, discovery, spec, cases, tuple(warnings))


def _relative(path: Path, src: Path) -> str:
    try:
        return str(path.relative_to(src))
    except ValueError:
        return str(path)


def format_plan(plan: ImportPlan, split: str) -> str:
    """The per-case printout of ``wbspine dataset import``."""
    lines = [f"source: {plan.src}  layout: {plan.discovery.layout}  cases: {len(plan.cases)}",
             f"mapping ({plan.spec.origin}): {describe_mapping(plan.spec)}"]
    lines += list(plan.warnings) + [f"skipped: {note}" for note in plan.discovery.skipped]
    for c in plan.cases:
        kind = "DICOM series" if c.source.image_is_dicom else "file"
        lines += [
            "",
            f"case {c.source.id}",
            f"  image: {_relative(c.source.image, plan.src)} ({kind}; {c.grid})",
            f"  label: {_relative(c.source.label, plan.src)}",
            "  values: " + ", ".join(f"{v} ({n} voxels)" for v, n in sorted(c.counts.items())),
            f"  mapping: {describe_mapping(plan.spec, c.counts)}",
            "  structures: " + ", ".join(f"{n} {k}" for n, k in c.voxels.items()),
            f"  annotated: {', '.join(c.annotated)}",
        ]
        if c.erased:
            lines.append(f"  erased (not in --annotated): {', '.join(c.erased)}")
        lines.append(f"  split: {split}")
    return "\n".join(lines)


def write_import(plan: ImportPlan, out: str | Path, *, split: str = "train",
                 pseudo_labels: bool = False) -> ds.Dataset:
    """Write the checked cases into ``out`` (added to an existing dataset there; a case
    with the same id is replaced)."""
    if split not in ds.SPLITS:
        raise DatasetError(f"split must be one of {ds.SPLITS}, got {split!r}")
    root = Path(out)
    labels = {int(k): v for k, v in LABEL_NAMES.items()}
    existing: list[ds.Case] = []
    if (root / ds.MANIFEST).exists():
        old = ds.load(root)
        if {k: old.labels.get(k) for k in labels} != labels:
            raise DatasetError(f"{root}: existing dataset has other labels {old.labels}")
        labels, existing = old.labels, list(old.cases)
    new = []
    for c in plan.cases:
        image, label = _read_pair(c.source)
        mapping = {v: (0 if t and LABEL_NAMES[t] in c.erased else t) for v, t in plan.spec.mapping.items()}
        case = ds.Case(c.source.id, f"images/{c.source.id}.nii.gz", f"labels/{c.source.id}.nii.gz", split,
                       c.annotated, pseudo_labels,
                       {"source": _relative(c.source.image, plan.src), "label_source": _relative(c.source.label, plan.src),
                        "layout": c.source.layout, "mapping": {str(k): v for k, v in sorted(mapping.items())},
                        **({"labels_file": plan.spec.labels_file.name} if plan.spec.labels_file else {})})
        ds._check_case(case, labels)
        write_nifti(image, root / case.image)
        write_nifti(label.with_array(ds.remap(label.array, mapping)), root / case.label)
        new.append(case)
    ids = {c.id for c in new}
    ds._save(root, labels, [*(c for c in existing if c.id not in ids), *new])
    return ds.load(root)
