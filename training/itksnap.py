"""Find ITK-SNAP style cases in a folder and read ITK-SNAP label descriptions.

Pure functions over file names and text; nothing here reads voxels. Three layouts
(:func:`discover`):

``pairs``    one folder, ``CASE.ext`` + ``CASE{suffix}.ext`` (suffix in :data:`LABEL_SUFFIXES`,
             ext in :data:`IMAGE_EXTENSIONS`); the image may also be a DICOM subfolder ``CASE/``.
``folders``  ``SRC/CASE/`` holds one image (named as in :data:`IMAGE_NAMES`, else a DICOM
             series subfolder, else the folder's only other volume file) and one
             segmentation (named as in :data:`SEGMENTATION_NAMES` or ending in a label
             suffix). ``wbspine phantom --out SRC/CASE`` writes exactly this.
``case``     ``SRC`` itself is one such case folder (id = the folder's name).

A named image file wins over a DICOM subfolder in the same case folder: the phantom
writes both from the same volume, and a NIfTI file carries its grid unambiguously.

ITK-SNAP's label description file (*Segmentation → Export Label Descriptions*) has
``#`` comment lines, then one line per label::

    IDX   -R-  -G-  -B-  -A--  VIS MSH  "LABEL"
      1   255    0    0     1    1   1  "L1 vertebra"

:func:`structure_for_name` maps a label's name onto the project's structures
(``appliance.labels``) by the rules documented there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import DatasetError
from appliance.labels import Label

#: Single-file volume formats SimpleITK reads (``appliance.volume.read_nifti``).
IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: ``CASE{suffix}.ext`` is CASE's segmentation (ITK-SNAP and common exports).
LABEL_SUFFIXES = ("_seg", "-label", "_label", "_labels", "-seg", "_segmentation")
#: File stems (case-insensitive) that name the image inside a case folder.
IMAGE_NAMES = ("image", "img", "ct")
#: File stems (case-insensitive) that name the segmentation inside a case folder.
SEGMENTATION_NAMES = ("labels", "label", "seg", "segmentation")
LAYOUTS = ("pairs", "folders", "case")
#: How many files of a folder are sniffed for the DICOM preamble magic (PS3.10 7.1).
DICOM_SNIFF_FILES = 8
_DICOM_MAGIC_OFFSET = 128


@dataclass(frozen=True)
class CaseSource:
    """Where one case's image and segmentation are; ``image`` is a file or a DICOM folder."""

    id: str
    image: Path
    label: Path
    layout: str

    @property
    def image_is_dicom(self) -> bool:
        return self.image.is_dir()


@dataclass(frozen=True)
class Discovery:
    layout: str
    cases: tuple[CaseSource, ...]
    skipped: tuple[str, ...]  # human-readable notes on what was not taken, and why


def split_volume_name(name: str) -> tuple[str, str] | None:
    """``"case01_seg.nii.gz"`` → ``("case01_seg", ".nii.gz")``; None for non-volume files."""
    lower = name.lower()
    for ext in IMAGE_EXTENSIONS:
        if lower.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)], ext
    return None


def is_dicom_folder(path: Path) -> bool:
    """True when ``path`` is a folder whose files include ``*.dcm`` or the ``DICM`` magic."""
    if not path.is_dir():
        return False
    files = sorted(p for p in path.iterdir() if p.is_file())
    if any(p.suffix.lower() == ".dcm" for p in files):
        return True
    for p in files[:DICOM_SNIFF_FILES]:
        try:
            with p.open("rb") as fh:
                fh.seek(_DICOM_MAGIC_OFFSET)
                if fh.read(4) == b"DICM":
                    return True
        except OSError:
            continue
    return False


def _volumes(folder: Path) -> dict[str, Path]:
    """Volume files directly in ``folder`` by stem (a stem twice, e.g. .nii and .nrrd: refused)."""
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        parts = split_volume_name(p.name) if p.is_file() else None
        if parts:
            if parts[0] in found:
                raise DatasetError(f"{folder}: two volume files named {parts[0]!r} "
                                   f"({found[parts[0]].name}, {p.name})")
            found[parts[0]] = p
    return found


def _label_stem(stem: str, suffixes: tuple[str, ...]) -> str | None:
    for sfx in suffixes:
        if stem.endswith(sfx) and len(stem) > len(sfx):
            return stem[: -len(sfx)]
    return None


def find_pairs(src: Path, suffixes: tuple[str, ...] = LABEL_SUFFIXES) -> Discovery:
    """``CASE.ext`` (or DICOM folder ``CASE/``) + ``CASE{suffix}.ext`` in ``src``."""
    volumes = _volumes(src)
    dicom = {p.name: p for p in sorted(src.iterdir()) if is_dicom_folder(p)}
    cases, used, skipped = [], set(), []
    for stem, path in volumes.items():
        base = _label_stem(stem, suffixes)
        if base is None:
            continue
        image = volumes.get(base) or dicom.get(base)
        if image is None:
            continue
        if base in {c.id for c in cases}:
            other = next(c for c in cases if c.id == base)
            raise DatasetError(f"case {base}: two segmentations ({other.label.name}, {path.name}); "
                               "keep one or pass --label-suffix")
        cases.append(CaseSource(base, image, path, "pairs"))
        used.update({image, path})
    for path in [*volumes.values(), *dicom.values()]:
        if path not in used:
            skipped.append(f"{path.name}: no matching image/segmentation "
                           f"(segmentation suffixes: {', '.join(suffixes)})")
    return Discovery("pairs", tuple(sorted(cases, key=lambda c: c.id)), tuple(skipped))


def case_in_folder(folder: Path, suffixes: tuple[str, ...] = LABEL_SUFFIXES) -> CaseSource | None:
    """The image and segmentation inside one case folder; None when it holds neither.
    Refuses a folder with a segmentation but no image, or with two candidates for either."""
    volumes = _volumes(folder)
    segs = [p for s, p in volumes.items()
            if s.lower() in SEGMENTATION_NAMES or _label_stem(s, suffixes) is not None]
    rest = {s: p for s, p in volumes.items() if p not in segs}
    named = [p for s, p in rest.items() if s.lower() in IMAGE_NAMES]
    dicom = [p for p in sorted(folder.iterdir()) if is_dicom_folder(p)]
    images = named or dicom or list(rest.values())
    if not segs and not images:
        return None
    if not segs:
        return None if not named else _refuse(folder, "an image but no segmentation "
                                              f"(named {'/'.join(SEGMENTATION_NAMES)}.* or *_seg.*)")
    if len(segs) > 1:
        _refuse(folder, f"several segmentations ({', '.join(p.name for p in segs)})")
    if not images:
        _refuse(folder, f"a segmentation but no image (named {'/'.join(IMAGE_NAMES)}.* or a DICOM folder)")
    if len(images) > 1:
        _refuse(folder, f"several images ({', '.join(p.name for p in images)}); name one image.*")
    return CaseSource(folder.name, images[0], segs[0], "folders")


def _refuse(folder: Path, what: str):
    raise DatasetError(f"case folder {folder}: {what}")


def find_case_folders(src: Path, suffixes: tuple[str, ...] = LABEL_SUFFIXES) -> Discovery:
    cases, skipped = [], []
    for sub in sorted(p for p in src.iterdir() if p.is_dir()):
        if is_dicom_folder(sub):
            continue
        case = case_in_folder(sub, suffixes)
        if case is None:
            skipped.append(f"{sub.name}/: no image + segmentation inside")
        else:
            cases.append(case)
    return Discovery("folders", tuple(cases), tuple(skipped))


def discover(src: str | Path, layout: str | None = None, label_suffix: str | None = None) -> Discovery:
    """Cases in ``src``. ``layout`` None: pairs if any, else case folders, else ``src``
    itself as one case; pairs *and* case folders together are refused (say --layout)."""
    src = Path(src)
    if not src.is_dir():
        raise DatasetError(f"{src} is not a folder")
    if layout is not None and layout not in LAYOUTS:
        raise DatasetError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    suffixes = (label_suffix,) if label_suffix else LABEL_SUFFIXES
    if layout == "pairs":
        found = find_pairs(src, suffixes)
    elif layout == "folders":
        found = find_case_folders(src, suffixes)
    elif layout == "case":
        case = case_in_folder(src, suffixes)
        found = Discovery("case", (CaseSource(src.resolve().name, case.image, case.label, "case"),) if case else (), ())
    else:
        pairs = find_pairs(src, suffixes)
        try:
            folders = find_case_folders(src, suffixes)
        except DatasetError:
            if not pairs.cases:
                raise
            folders = Discovery("folders", (), ())
        if pairs.cases and folders.cases:
            raise DatasetError(f"{src} holds both CASE + CASE_seg pairs and case folders; "
                               "pass --layout pairs or --layout folders")
        found = pairs if pairs.cases else folders
        if not found.cases:
            case = case_in_folder(src, suffixes)
            if case is not None:
                found = Discovery("case", (CaseSource(src.resolve().name, case.image, case.label, "case"),), ())
    if not found.cases:
        raise DatasetError(
            f"no cases in {src}: expected CASE.nii.gz + CASE{{{','.join(suffixes)}}}.nii.gz pairs, "
            f"or folders CASE/ holding {'|'.join(IMAGE_NAMES)}.* (or a DICOM folder) + "
            f"{'|'.join(SEGMENTATION_NAMES)}.*")
    return found


# --- ITK-SNAP label descriptions -------------------------------------------------------

_DESCRIPTION_LINE = re.compile(
    r'^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([0-9.]+)\s+(\d+)\s+(\d+)\s+"(.*)"\s*$')


def parse_label_descriptions(text: str, source: str = "label descriptions") -> dict[int, str]:
    """ITK-SNAP label description text → ``{value: name}``; a malformed line is refused."""
    labels: dict[int, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _DESCRIPTION_LINE.match(line)
        if not m:
            raise DatasetError(f"{source} line {number}: expected IDX R G B A VIS MSH \"LABEL\", got {line.strip()!r}")
        value = int(m.group(1))
        if value in labels:
            raise DatasetError(f"{source} line {number}: label {value} described twice")
        labels[value] = m.group(8)
    if not labels:
        raise DatasetError(f"{source}: no label lines")
    return labels


def read_label_descriptions(path: str | Path) -> dict[int, str]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DatasetError(f"cannot read labels file {path}: {exc}") from exc
    return parse_label_descriptions(text, source=str(path))


def find_label_descriptions(src: Path) -> Path | None:
    """The one ``*.txt`` in ``src`` that parses as ITK-SNAP label descriptions; None if
    none does; several are refused (name one with --labels-file)."""
    found = []
    for p in sorted(src.glob("*.txt")):
        try:
            read_label_descriptions(p)
        except DatasetError:
            continue
        found.append(p)
    if len(found) > 1:
        raise DatasetError(f"several label description files in {src} "
                           f"({', '.join(p.name for p in found)}); pass --labels-file")
    return found[0] if found else None


#: Names with these words are other anatomy even when they name a level or a bone
#: ("L4-L5 disc", "L1 spinous process", "femoral artery"): left unmapped.
EXCLUDED_WORDS = ("disc", "disk", "process", "lamina", "pedicle", "facet", "arch", "posterior",
                  "canal", "cord", "nerve", "artery", "vein", "vessel", "muscle", "ligament",
                  "rib", "foramen", "neck", "shaft")
#: Background names (ITK-SNAP's label 0 is "Clear Label").
BACKGROUND_NAMES = ("clear label", "background", "bg", "none", "unlabeled", "unlabelled")
FEMORAL_HEAD_WORDS = ("femoral head", "femur head", "head of femur", "femur", "femurs", "femora",
                      "caput femoris")
PELVIS_WORDS = ("pelvis", "pelvic", "sacrum", "sacral", "ilium", "iliac", "hip bone", "hipbone",
                "coccyx", "coccygeal", "ischium", "pubis", "os coxae")
VERTEBRA_WORDS = ("vertebra", "vertebrae", "vertebral", "vertebral body")
#: Level names. C1 (atlas) has no vertebral body (appliance.labels.LEVELS starts at C2);
#: S1-S5 are sacrum (pelvis, as in the label contract).
_LEVEL = re.compile(r"(?<![a-z0-9])(c[2-7]|th?(?:1[0-2]|[1-9])|l[1-6])(?![a-z0-9])")
_SACRAL_LEVEL = re.compile(r"(?<![a-z0-9])s[1-5](?![a-z0-9])")


def _has_word(name: str, words: tuple[str, ...]) -> bool:
    """Whole-word match, plurals included ("femoral heads", "hip bones", "discs")."""
    return any(re.search(rf"(?<![a-z]){re.escape(w)}(?:e?s)?(?![a-z])", name) for w in words)


def structure_for_name(name: str) -> int | None:
    """Project label for an ITK-SNAP label name, or None (unmapped → background).

    Rules, first match wins, case-insensitive, whole words (singular or plural):
    0. :data:`BACKGROUND_NAMES` → 0; any of :data:`EXCLUDED_WORDS` → None;
    1. :data:`FEMORAL_HEAD_WORDS` → femoral heads (3);
    2. :data:`PELVIS_WORDS` or a sacral level S1..S5 → pelvis (2);
    3. :data:`VERTEBRA_WORDS` or a level C2..C7, T1..T12 (Th1..), L1..L6 → vertebral bodies (1).
    A bare "body" is *not* a vertebral body: label sets often have a "Body" outline.
    """
    n = " ".join(name.lower().replace("_", " ").split())
    if n in BACKGROUND_NAMES:
        return int(Label.BACKGROUND)
    if _has_word(n, EXCLUDED_WORDS):
        return None
    if _has_word(n, FEMORAL_HEAD_WORDS):
        return int(Label.FEMORAL_HEADS)
    if _has_word(n, PELVIS_WORDS) or _SACRAL_LEVEL.search(n):
        return int(Label.PELVIS)
    if _has_word(n, VERTEBRA_WORDS) or _LEVEL.search(n):
        return int(Label.VERTEBRAL_BODIES)
    return None


def mapping_from_descriptions(descriptions: dict[int, str]) -> tuple[dict[int, int], dict[int, str]]:
    """``{value: name}`` → (``{value: project label}`` for the recognised foreground
    names, ``{value: name}`` of the unmapped ones). Value 0 is never mapped."""
    mapping, unmapped = {}, {}
    for value, name in sorted(descriptions.items()):
        if value == 0:
            continue
        target = structure_for_name(name)
        if target is None:
            unmapped[value] = name
        elif target:
            mapping[value] = target
    return mapping, unmapped
