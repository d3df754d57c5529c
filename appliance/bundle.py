"""Model bundle: a folder with ``manifest.json`` and the files it lists (issue 4).

The manifest is the only thing the appliance reads about a model. Schema
``wbspine.bundle/1`` (pydantic, unknown fields refused)::

    schema_version   "wbspine.bundle/1"
    model            {name, version, description}
    created          ISO-8601 UTC time the bundle was written
    source           {git_commit, git_dirty}
    training         {config (JSON object), config_sha256 (sha256 of its canonical JSON)}
    preprocessing    {working_spacing_mm (x, y, z), window_zyx (z, y, x; z = 16 per the paper),
                      normalization_t, intensity_offset (1000), canonical_orientation ("LPS")}
    io               {input_name, output_name, layout "NCDHW", num_classes, output "logits"}
    labels           [{value, name, code {value, scheme, meaning}, category {value, scheme, meaning}}]
    validation       {dataset, structures {name: {dice, volume_similarity, recall, cases}},
                      gate (optional, since wbspine export's quality gate): {min_dice, passed,
                      overridden, structure, dice} — the export's check of the lowest Dice}
    files            [{path (relative, posix), role, sha256, size_bytes}]   roles: "onnx" (required),
                      "onnx_fp16", "tensorrt_plan", "triton_repository", "model_card",
                      "weights" (optional, since bundle 1.1.1: the network's trainable weights
                      as safetensors, for ``wbspine train --init-from``), "other"

The appliance never reads the ``weights`` file (it runs the ONNX); it only checks its size
and sha256 like every listed file. Bundles without it stay valid.

Untrusted input (a bundle may be copied onto the box by hand): the manifest's size is
capped before it is read, its JSON nesting is bounded, paths must stay inside the
bundle, and every file's size and sha256 are checked before use. Each refusal is a
:class:`~appliance.errors.BundleError` whose ``code`` is one of :class:`BundleErrorCode`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from appliance.errors import BundleError

SCHEMA_VERSION = "wbspine.bundle/1"
MANIFEST_NAME = "manifest.json"
#: Hard caps on untrusted manifest input.
MAX_MANIFEST_BYTES = 1 << 20
MAX_JSON_DEPTH = 32
MAX_FILES = 64
MAX_FILE_BYTES = 4 << 30


class BundleErrorCode(str, Enum):
    NOT_FOUND = "not_found"                  # no folder / no manifest.json
    TOO_LARGE = "too_large"                  # manifest or a listed file beyond the caps
    NOT_JSON = "not_json"                    # not UTF-8 JSON, or nested too deep
    UNKNOWN_SCHEMA = "unknown_schema"        # schema_version missing or not supported
    INVALID = "invalid"                      # fails the schema
    UNSAFE_PATH = "unsafe_path"              # absolute, '..', or a link leaving the bundle
    MISSING_FILE = "missing_file"            # a listed file is absent
    HASH_MISMATCH = "hash_mismatch"          # size or sha256 differs from the manifest


def _error(code: BundleErrorCode, message: str) -> BundleError:
    return BundleError(message, code=code.value)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelInfo(_Strict):
    name: str = Field(min_length=1, max_length=128)
    version: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=4096)


class SourceInfo(_Strict):
    git_commit: str = Field(pattern=r"^([0-9a-f]{7,40}|unknown)$")
    git_dirty: bool = False


class TrainingInfo(_Strict):
    config: dict[str, Any]
    config_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _hash_matches(self) -> "TrainingInfo":
        if config_hash(self.config) != self.config_sha256:
            raise ValueError("training.config_sha256 does not match training.config")
        return self


class Preprocessing(_Strict):
    working_spacing_mm: tuple[float, float, float]
    window_zyx: tuple[int, int, int]
    normalization_t: float = Field(gt=0, le=10000)
    intensity_offset: float = 1000.0
    canonical_orientation: Literal["LPS"] = "LPS"

    @field_validator("working_spacing_mm")
    @classmethod
    def _spacing(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(not 0.05 <= s <= 20 for s in v):
            raise ValueError(f"working spacing must be within 0.05–20 mm, got {v}")
        return v

    @field_validator("window_zyx")
    @classmethod
    def _window(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(not 1 <= n <= 1024 for n in v):
            raise ValueError(f"window sizes must be within 1–1024, got {v}")
        return v


class IOInfo(_Strict):
    input_name: str = Field(min_length=1, max_length=128)
    output_name: str = Field(min_length=1, max_length=128)
    layout: Literal["NCDHW"] = "NCDHW"
    num_classes: int = Field(ge=2, le=64)
    output: Literal["logits"] = "logits"


class Code(_Strict):
    """A DICOM coded concept (e.g. SCT): CodeValue, CodingSchemeDesignator, CodeMeaning."""

    value: str = Field(min_length=1, max_length=64)
    scheme: str = Field(min_length=1, max_length=16)
    meaning: str = Field(min_length=1, max_length=64)


class LabelInfo(_Strict):
    value: int = Field(ge=0, le=255)
    name: str = Field(min_length=1, max_length=64)
    code: Code | None = None        # property type (None for background)
    category: Code | None = None    # property category


class StructureMetrics(_Strict):
    dice: float = Field(ge=0, le=1)
    volume_similarity: float = Field(ge=-1, le=1)
    recall: float = Field(ge=0, le=1)
    cases: int = Field(ge=0)


class ValidationGate(_Strict):
    """``wbspine export``'s quality gate as applied (:mod:`appliance.bundle_quality`): the
    lowest validated structure's Dice against ``min_dice``; ``overridden`` when a model that
    did not pass was exported anyway (``--allow-weak``). ``structure``/``dice`` are None
    when no validation was recorded."""

    min_dice: float = Field(ge=0, le=1)
    passed: bool
    overridden: bool = False
    structure: str | None = Field(default=None, max_length=64)
    dice: float | None = Field(default=None, ge=0, le=1)


class Validation(_Strict):
    dataset: str = Field(default="", max_length=1024)
    structures: dict[str, StructureMetrics] = Field(default_factory=dict)
    gate: ValidationGate | None = None  # optional: bundles before the gate have none


class FileEntry(_Strict):
    path: str = Field(min_length=1, max_length=255)
    role: Literal["onnx", "onnx_fp16", "tensorrt_plan", "triton_repository", "model_card", "weights", "other"]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0, le=MAX_FILE_BYTES)

    @field_validator("path")
    @classmethod
    def _relative(cls, v: str) -> str:
        p = PurePosixPath(v)
        if p.is_absolute() or ".." in p.parts or "\\" in v or v.startswith("~") or not p.parts:
            raise ValueError(f"file path must be relative inside the bundle: {v!r}")
        return v


class Manifest(_Strict):
    schema_version: Literal["wbspine.bundle/1"]
    model: ModelInfo
    created: datetime
    source: SourceInfo
    training: TrainingInfo
    preprocessing: Preprocessing
    io: IOInfo
    labels: list[LabelInfo] = Field(min_length=2, max_length=64)
    validation: Validation = Field(default_factory=Validation)
    files: list[FileEntry] = Field(min_length=1, max_length=MAX_FILES)

    @model_validator(mode="after")
    def _consistent(self) -> "Manifest":
        values = [lab.value for lab in self.labels]
        if sorted(values) != list(range(self.io.num_classes)):
            raise ValueError(f"labels must be 0..{self.io.num_classes - 1} exactly once each, got {values}")
        if len({f.path for f in self.files}) != len(self.files):
            raise ValueError("duplicate file paths")
        if sum(f.role == "onnx" for f in self.files) != 1:
            raise ValueError("exactly one file with role 'onnx' is required")
        if sum(f.role == "weights" for f in self.files) > 1:
            raise ValueError("at most one file with role 'weights' is allowed")
        return self

    def file(self, role: str) -> FileEntry | None:
        return next((f for f in self.files if f.role == role), None)


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a training config (sorted keys, no spaces)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class Bundle:
    """A verified bundle: its folder and manifest."""

    def __init__(self, root: Path, manifest: Manifest) -> None:
        self.root = root
        self.manifest = manifest

    def path(self, role: str = "onnx") -> Path | None:
        entry = self.manifest.file(role)
        return None if entry is None else self.root / entry.path

    @property
    def onnx_path(self) -> Path:
        return self.root / self.manifest.file("onnx").path  # type: ignore[union-attr]


def _depth(obj: Any, limit: int) -> int:
    stack, deepest = [(obj, 1)], 1
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        if d > limit:
            return d
        if isinstance(node, dict):
            stack.extend((v, d + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, d + 1) for v in node)
    return deepest


def parse_manifest(raw: bytes) -> Manifest:
    """Parse untrusted manifest bytes (size-capped, depth-bounded, strict schema)."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise _error(BundleErrorCode.TOO_LARGE, f"manifest is {len(raw)} bytes; the limit is {MAX_MANIFEST_BYTES}")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _error(BundleErrorCode.NOT_JSON, f"manifest is not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise _error(BundleErrorCode.NOT_JSON, "manifest must be a JSON object")
    if _depth(data, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise _error(BundleErrorCode.NOT_JSON, f"manifest nests deeper than {MAX_JSON_DEPTH} levels")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise _error(BundleErrorCode.UNKNOWN_SCHEMA,
                     f"unsupported bundle schema_version {str(version)[:64]!r}; this appliance reads "
                     f"{SCHEMA_VERSION!r} (update the appliance or re-export the bundle)")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise _error(BundleErrorCode.INVALID, f"manifest does not follow {SCHEMA_VERSION}: {exc}") from exc


def _verify_file(root: Path, entry: FileEntry) -> None:
    path = root / entry.path
    try:
        resolved = path.resolve(strict=True)
    except (FileNotFoundError, RuntimeError) as exc:
        raise _error(BundleErrorCode.MISSING_FILE, f"bundle file {entry.path!r} is missing") from exc
    if not resolved.is_relative_to(root.resolve()):
        raise _error(BundleErrorCode.UNSAFE_PATH, f"bundle file {entry.path!r} leaves the bundle folder")
    if not resolved.is_file():
        raise _error(BundleErrorCode.MISSING_FILE, f"bundle file {entry.path!r} is not a regular file")
    size = resolved.stat().st_size
    if size != entry.size_bytes:
        raise _error(BundleErrorCode.HASH_MISMATCH,
                     f"bundle file {entry.path!r} is {size} bytes; the manifest says {entry.size_bytes}")
    if sha256_file(resolved) != entry.sha256:
        raise _error(BundleErrorCode.HASH_MISMATCH,
                     f"bundle file {entry.path!r} does not match its sha256 in the manifest (modified or corrupt)")


def load_bundle(directory: str | Path, *, verify: bool = True) -> Bundle:
    """Read and verify a bundle folder; raise :class:`BundleError` on any problem."""
    root = Path(directory)
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise _error(BundleErrorCode.NOT_FOUND, f"no {MANIFEST_NAME} in {root}")
    size = manifest_path.stat().st_size
    if size > MAX_MANIFEST_BYTES:  # refuse before reading
        raise _error(BundleErrorCode.TOO_LARGE, f"{MANIFEST_NAME} is {size} bytes; the limit is {MAX_MANIFEST_BYTES}")
    with open(manifest_path, "rb") as f:
        raw = f.read(MAX_MANIFEST_BYTES + 1)
    manifest = parse_manifest(raw)
    if verify:
        for entry in manifest.files:
            _verify_file(root, entry)
    return Bundle(root, manifest)


def file_entry(root: str | Path, relpath: str, role: str) -> FileEntry:
    """Describe one bundle file (for writers: export, tests)."""
    path = Path(root) / relpath
    return FileEntry(path=relpath, role=role, sha256=sha256_file(path), size_bytes=path.stat().st_size)  # type: ignore[arg-type]


def write_manifest(root: str | Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` (validated by construction). The export step calls this."""
    path = Path(root) / MANIFEST_NAME
    # a manifest without a gate is written exactly as before the gate existed
    exclude = {"validation": {"gate"}} if manifest.validation.gate is None else None
    path.write_text(manifest.model_dump_json(indent=2, exclude=exclude) + "\n", encoding="utf-8")
    return path


#: Where the default model bundle ships (issue 4 puts it there); ``--bundle`` overrides.
DEFAULT_BUNDLE_DIR = Path(__file__).resolve().parent / "models" / "default"
