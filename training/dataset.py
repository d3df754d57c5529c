"""Training datasets on disk: ITK-SNAP style NIfTI pairs plus a small JSON manifest.

Layout::

    DATASET/
      dataset.json            manifest (below)
      images/CASE.nii.gz      grey values
      labels/CASE.nii.gz      label map, project convention (appliance.labels)
      tissues/CASE.nii.gz     optional: the phantom's tissue map (appliance.phantom.tissues),
                              from which training renders new looks (training.synth)

``dataset.json``::

    {"format": "wbspine-dataset", "version": 1,
     "labels": {"0": "background", "1": "vertebral_bodies", ...},
     "cases": [{"id": "phantom-0001", "image": "images/phantom-0001.nii.gz",
                "label": "labels/phantom-0001.nii.gz", "split": "train",
                "annotated": ["vertebral_bodies", "pelvis"],
                "pseudo_labels": false, "provenance": {...}}, ...]}

``annotated`` lists the structures drawn in that case (the paper's Table 2: not every
case has every structure); the loss ignores the others rather than calling them
background. ``pseudo_labels`` marks labels made by another model, not by an annotator.
Importing annotated folders (ITK-SNAP, DICOM, label descriptions) is in :mod:`training.importer`;
the TotalSegmentator example is in :mod:`training.totalseg`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from appliance.errors import DatasetError
from appliance.labels import LABEL_NAMES, STRUCTURES
from appliance.volume import Volume, read_nifti, write_nifti

MANIFEST = "dataset.json"
FORMAT = "wbspine-dataset"
VERSION = 1
SPLITS = ("train", "val", "test")
STRUCTURE_NAMES = tuple(LABEL_NAMES[int(s)] for s in STRUCTURES)
#: Paper Table 2 share of cases annotated per structure (100 spine, 57 pelvis, 47 heads).
PAPER_ANNOTATED_FRACTION = {"vertebral_bodies": 1.0, "pelvis": 0.57, "femoral_heads": 0.47}
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class Case:
    id: str
    image: str
    label: str
    split: str
    annotated: tuple[str, ...]
    pseudo_labels: bool = False
    provenance: dict = field(default_factory=dict)
    tissues: str | None = None  # tissue map (phantoms only), same grid as the label map

    def as_dict(self) -> dict:
        d = {"id": self.id, "image": self.image, "label": self.label, "split": self.split,
             "annotated": list(self.annotated), "pseudo_labels": self.pseudo_labels,
             "provenance": self.provenance}
        if self.tissues is not None:
            d["tissues"] = self.tissues
        return d

    def files(self) -> tuple[str, ...]:
        return (self.image, self.label) + ((self.tissues,) if self.tissues is not None else ())


@dataclass(frozen=True)
class Dataset:
    root: Path
    labels: dict[int, str]
    cases: tuple[Case, ...]

    def split(self, name: str) -> tuple[Case, ...]:
        return tuple(c for c in self.cases if c.split == name)

    def path(self, relative: str) -> Path:
        return self.root / relative


def _check_case(case: Case, labels: Mapping[int, str]) -> None:
    if not _CASE_ID.match(case.id):
        raise DatasetError(f"case id {case.id!r} must be 1-100 of [A-Za-z0-9._-]")
    if case.split not in SPLITS:
        raise DatasetError(f"case {case.id}: split must be one of {SPLITS}, got {case.split!r}")
    unknown = set(case.annotated) - set(labels.values()) | ({"background"} & set(case.annotated))
    if unknown:
        raise DatasetError(f"case {case.id}: unknown annotated structures {sorted(unknown)}")


def load(root: str | Path) -> Dataset:
    """Read and validate ``root/dataset.json``."""
    root = Path(root)
    try:
        raw = json.loads((root / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read {root / MANIFEST}: {exc}") from exc
    if raw.get("format") != FORMAT or raw.get("version") != VERSION:
        raise DatasetError(f"{root / MANIFEST}: not a {FORMAT} v{VERSION} manifest")
    labels = {int(k): str(v) for k, v in raw.get("labels", {}).items()}
    cases = []
    for c in raw.get("cases", []):
        try:
            case = Case(id=c["id"], image=c["image"], label=c["label"], split=c["split"],
                        annotated=tuple(c["annotated"]), pseudo_labels=bool(c.get("pseudo_labels", False)),
                        provenance=dict(c.get("provenance", {})),
                        tissues=None if c.get("tissues") is None else str(c["tissues"]))
        except (KeyError, TypeError) as exc:
            raise DatasetError(f"{root / MANIFEST}: malformed case entry {c!r}") from exc
        _check_case(case, labels)
        for rel in case.files():
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise DatasetError(f"case {case.id}: paths must stay inside the dataset ({rel})")
        cases.append(case)
    if len({c.id for c in cases}) != len(cases):
        raise DatasetError(f"{root / MANIFEST}: duplicate case ids")
    return Dataset(root, labels, tuple(cases))


def _save(root: Path, labels: Mapping[int, str], cases: Iterable[Case]) -> Path:
    manifest = {
        "format": FORMAT, "version": VERSION,
        "labels": {str(k): v for k, v in sorted(labels.items())},
        "note": "cases with pseudo_labels=true carry another model's output, not manual annotation",
        "cases": [c.as_dict() for c in cases],
    }
    path = root / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(path)
    return path


def add_case(root: str | Path, case_id: str, image: Volume, label: Volume, *, split: str,
             annotated: Iterable[str], pseudo_labels: bool = False,
             provenance: Mapping | None = None) -> Case:
    """Write one image/label pair into ``root`` (created if needed) and record it."""
    root = Path(root)
    if not image.same_geometry(label):
        raise DatasetError(f"case {case_id}: image and label grids differ")
    labels = {int(k): v for k, v in LABEL_NAMES.items()}
    existing: list[Case] = []
    if (root / MANIFEST).exists():
        ds = load(root)
        labels, existing = ds.labels, [c for c in ds.cases if c.id != case_id]
    present = set(np.unique(label.array).tolist()) - set(labels)
    if present:
        raise DatasetError(f"case {case_id}: label values {sorted(present)} are not in the label map")
    case = Case(case_id, f"images/{case_id}.nii.gz", f"labels/{case_id}.nii.gz", split,
                tuple(a for a in labels.values() if a in set(annotated)), pseudo_labels,
                dict(provenance or {}))
    _check_case(case, labels)
    write_nifti(image, root / case.image)
    write_nifti(label.with_array(label.array.astype(np.uint8)), root / case.label)
    _save(root, labels, [*existing, case])
    return case


def assign_splits(n: int, val_fraction: float, test_fraction: float) -> list[str]:
    """Deterministic split: the last cases go to test, those before to val."""
    n_test = round(n * test_fraction)
    n_val = round(n * val_fraction)
    if n - n_test - n_val < 1:
        raise DatasetError(f"{n} cases leave no training case with val={val_fraction}, test={test_fraction}")
    return ["train"] * (n - n_val - n_test) + ["val"] * n_val + ["test"] * n_test


def from_phantoms(out: str | Path, n: int, seed: int = 0, size: str = "small", *,
                  val_fraction: float = 0.2, test_fraction: float = 0.2,
                  partial: bool = False, workers: int = 1, anatomy: str = "classic") -> Dataset:
    """``n`` seeded phantoms (seeds from ``seed`` up; a seed the generator refuses is
    skipped) → a dataset in ``out``.

    ``partial=True`` simulates the paper's Table 2 for *training* cases: pelvis and
    femoral heads are kept in 57 % and 47 % of them (seeded draw) and erased from the
    label map otherwise, with ``annotated`` saying so. Val/test cases stay complete.

    ``workers > 1`` generates and writes phantoms in that many processes (a full-size
    phantom takes ~25 s and ~2.6 GB); the dataset is the same as with one: the first
    ``n`` accepted seeds, in order, whatever finishes first.

    ``anatomy="rich"`` draws the phantoms with organs, vessels, muscles, table and metal
    (``appliance.phantom.organs``) and writes each one's tissue map too, for the
    domain-randomised rendering of ``training.synth``.
    """
    if n < 1:
        raise DatasetError("need at least one phantom")
    root = Path(out)
    splits = assign_splits(n, val_fraction, test_fraction)
    from appliance.phantom.generate import ANATOMIES

    if anatomy not in ANATOMIES:
        raise DatasetError(f"unknown anatomy {anatomy!r}; use one of {', '.join(ANATOMIES)}")
    seeds = _accepted_seeds(root, n, seed, size, max(1, int(workers)), anatomy)
    labels = {int(k): v for k, v in LABEL_NAMES.items()}
    existing: list[Case] = []
    if (root / MANIFEST).exists():
        old = load(root)
        labels, existing = old.labels, list(old.cases)
    rng = np.random.default_rng([seed, 67781])
    cases = []
    for split, case_seed in zip(splits, seeds):
        case_id = f"phantom-{case_seed:05d}"
        annotated = list(STRUCTURE_NAMES)
        if partial and split == "train":
            draws = rng.random(len(STRUCTURE_NAMES))
            erased = [name for name, u in zip(STRUCTURE_NAMES, draws) if u >= PAPER_ANNOTATED_FRACTION[name]]
            if erased:
                label = read_nifti(root / f"labels/{case_id}.nii.gz")
                array = label.array.copy()
                for name in erased:
                    annotated.remove(name)
                    array[array == STRUCTURE_NAMES.index(name) + 1] = 0
                write_nifti(label.with_array(array), root / f"labels/{case_id}.nii.gz")
        case = Case(case_id, f"images/{case_id}.nii.gz", f"labels/{case_id}.nii.gz", split,
                    tuple(a for a in labels.values() if a in set(annotated)), False,
                    {"source": "appliance.phantom", "seed": case_seed, "size": size, "anatomy": anatomy,
                     "labels": "exact (planted) phantom truth"},
                    f"tissues/{case_id}.nii.gz" if anatomy == "rich" else None)
        _check_case(case, labels)
        cases.append(case)
    ids = {c.id for c in cases}
    _save(root, labels, [*(c for c in existing if c.id not in ids), *cases])
    return load(root)


def _write_phantom(job: tuple[str, int, str, str]) -> bool:
    """Generate phantom ``seed`` and write its image and labels (and, for the rich
    anatomy, its tissue map) under ``root``; False when the generator refuses the seed
    (a process-pool task: pickles only the job)."""
    from appliance.errors import PhantomError
    from appliance.phantom import generate_study

    root, seed, size, anatomy = job
    try:
        study = generate_study(seed, size, anatomy=anatomy)
    except PhantomError:
        return False
    case_id = f"phantom-{seed:05d}"
    write_nifti(study.image, Path(root) / f"images/{case_id}.nii.gz")
    write_nifti(study.labels.with_array(study.labels.array.astype(np.uint8)), Path(root) / f"labels/{case_id}.nii.gz")
    if anatomy == "rich" and study.tissues is not None:
        write_nifti(study.tissues, Path(root) / f"tissues/{case_id}.nii.gz")
    return True


def _accepted_seeds(root: Path, n: int, seed: int, size: str, workers: int, anatomy: str = "classic",
                    max_refused_run: int = 20) -> list[int]:
    """Write the first ``n`` seeds from ``seed`` up that the generator accepts; returns them.
    Each round tries exactly as many new seeds as are still missing, so no phantom is
    generated in vain unless the generator refuses one."""
    accepted: list[int] = []
    tried: list[tuple[int, bool]] = []
    next_seed = seed
    pool = None
    if workers > 1:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(min(workers, n))
    try:
        while len(accepted) < n:
            jobs = [(str(root), s, size, anatomy) for s in range(next_seed, next_seed + n - len(accepted))]
            results = pool.map(_write_phantom, jobs, chunksize=1) if pool else map(_write_phantom, jobs)
            for (_, s, _, _), ok in zip(jobs, results):
                tried.append((s, ok))
                if ok:
                    accepted.append(s)
            next_seed = jobs[-1][1] + 1
            run = 0
            for _, ok in reversed(tried):
                if ok:
                    break
                run += 1
            if run >= max_refused_run:
                raise DatasetError(f"no usable phantom among seeds {next_seed - run}..{next_seed - 1}")
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return accepted


def parse_mapping(items: Iterable[str]) -> dict[int, int]:
    """``["1=1", "25,26,77,78=2"]`` → ``{1: 1, 25: 2, 26: 2, 77: 2, 78: 2}``."""
    mapping: dict[int, int] = {}
    for item in items:
        src, sep, dst = item.partition("=")
        try:
            values = [int(v) for v in src.split(",") if v.strip()]
            target = int(dst)
        except ValueError as exc:
            raise DatasetError(f"label mapping {item!r} must be 'SRC[,SRC...]=TARGET' integers") from exc
        if not sep or not values:
            raise DatasetError(f"label mapping {item!r} must be 'SRC[,SRC...]=TARGET'")
        for v in values:
            if v in mapping and mapping[v] != target:
                raise DatasetError(f"source label {v} mapped twice")
            mapping[v] = target
    return mapping


def remap(array: np.ndarray, mapping: Mapping[int, int]) -> np.ndarray:
    """Map source label values; values not in ``mapping`` become background (0)."""
    lut = np.zeros(max([int(array.max()) if array.size else 0, *mapping]) + 1, dtype=np.uint8)
    for src, dst in mapping.items():
        if src >= 0:
            lut[src] = dst
    return lut[np.clip(array.astype(np.int64), 0, None)]


def import_folder(src: str | Path, out: str | Path, mapping: Mapping[int, int] | Iterable[str] | None = None, *,
                  label_suffix: str | None = None, split: str = "train", pseudo_labels: bool = False,
                  annotated: Iterable[str] | None = None, labels_file: str | Path | None = None,
                  project_labels: bool = False, layout: str | None = None) -> Dataset:
    """Check every case of an annotated folder, then import them all (see
    :mod:`training.importer` for the layouts, the mapping and the refusals).

    Label values are mapped with ``mapping`` and/or a labels file (others → background);
    ``annotated`` defaults, per case, to the structures that have voxels after mapping.
    """
    from training.importer import plan_import, write_import

    plan = plan_import(src, mapping, labels_file=labels_file, project_labels=project_labels,
                       layout=layout, label_suffix=label_suffix, annotated=annotated)
    return write_import(plan, out, split=split, pseudo_labels=pseudo_labels)
