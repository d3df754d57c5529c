"""Training configuration: typed, loaded once from a file plus ``--set key=value`` overrides.

Every default is the paper's (JoVE 67781, see ../shared/PROTOCOL.md) where the paper
gives one, cited as ``[paper]``. Every choice the paper leaves open is a field whose
comment starts with ``[ours]`` and gives the reason. ``config_hash`` identifies the
*semantic* content (everything but the ``run`` section, which only says where and how
fast to run) and goes into every checkpoint and model manifest.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from appliance.bundle_quality import MIN_VAL_DICE
from appliance.errors import ConfigError
from appliance.labels import LABEL_NAMES, STRUCTURES

#: The paper's input depth along z: 16 slices ("balances memory and context").
WINDOW_SLICES = 16


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    dataset: Path = Path("datasets/phantoms")  # folder with dataset.json (see training.dataset)
    # [ours] 1.5 mm isotropic: the paper gives no resampling; isotropic voxels keep the
    # in-plane rotation augmentation exact, and 1.5 mm keeps vertebral bodies (≥ 20 mm)
    # well resolved while making CPU inference ~8× cheaper than the 0.68×0.68×1 mm grid.
    working_spacing_mm: tuple[float, float, float] = (1.5, 1.5, 1.5)
    window_slices: int = WINDOW_SLICES  # [paper] 16 slices along z
    # [ours] in-plane crop of a training window (voxels, multiple of the model's in-plane
    # downsampling); 160 × 1.5 mm = 240 mm holds the spine and most of the pelvis.
    patch_xy: int = 160
    t_range: tuple[float, float] = (1000.0, 3000.0)  # [paper] t ~ U(1000, 3000) in training
    # [ours] the fixed inference t: the centre of the training range, the value whose
    # distance to every t seen in training is smallest in the worst case.
    inference_t: float = 2000.0
    # [ours] overlap of consecutive 16-slice windows in validation/evaluation (half a
    # window: every slice seen twice, window-edge effects averaged out).
    inference_overlap_slices: int = 8
    # [ours] windows drawn per training case per epoch (the paper's epoch size is not given;
    # a whole-spine case holds ~20-40 distinct 16-slice windows at 1.5 mm).
    windows_per_case: int = 8
    # [ours] share of windows whose crop is centred on a random foreground voxel (else a
    # uniform position): keeps pelvis/heads in enough windows (nnU-Net uses 1/3).
    foreground_fraction: float = Field(0.33, ge=0.0, le=1.0)
    # [ours] air value outside the image after rotation/translation (grey value, HU-like).
    pad_value: float = -1024.0
    labels: dict[int, str] = Field(default_factory=lambda: {int(k): v for k, v in LABEL_NAMES.items()})

    @field_validator("working_spacing_mm")
    @classmethod
    def _positive(cls, v):
        if any(s <= 0 for s in v):
            raise ValueError("spacing must be positive")
        return v


class AugmentConfig(_Section):
    enabled: bool = True
    # [paper] Poisson noise; [ours] applied to normalised intensities as counts = x * peak,
    # peak ~ U(range): at x = 0.5, peak 200 gives 10 % noise, 2000 gives 3 %.
    poisson_peak_range: tuple[float, float] = (200.0, 2000.0)
    poisson_probability: float = 0.5  # [ours] half the windows stay noise-free
    brightness_range: tuple[float, float] = (0.8, 1.2)  # [paper] brightness × U(0.8, 1.2)
    translate_mm: float = 20.0  # [paper] random x/y translation; [ours] amplitude ±20 mm
    rotate_deg: float = 15.0  # [paper] random rotation; [ours] about z, ±15° (scoliotic twist)


class SynthConfig(_Section):
    """Domain randomisation (issue 17; SynthSeg, Billot et al., Med Image Anal 2023): windows
    of cases with a tissue map are rendered anew with random grey values per tissue, blur,
    resolution, bias field and noise; any window may get cone-beam degradations
    (``training.cbct``). Off by default: the shipped recipe says when it is on."""

    # [ours] share of windows of a case with a tissue map that are rendered anew
    probability: float = Field(0.0, ge=0.0, le=1.0)
    # [SynthSeg] share of those renderings with fully random grey values per tissue
    # (anything in ``random_range_hu``, bone darker than fat included); the others draw
    # each tissue from a wide CT-like range (training.synth.CT_PRIOR_HU)
    random_fraction: float = Field(0.3, ge=0.0, le=1.0)
    random_range_hu: tuple[float, float] = (-1000.0, 2000.0)
    tissue_sd_hu: tuple[float, float] = (0.0, 40.0)  # within-tissue texture, per tissue
    blur_mm: tuple[float, float] = (0.0, 1.5)  # Gaussian sigma of the point spread
    # [SynthSeg] lower acquired resolution: with this probability, slice thickness (z) and
    # in-plane resolution (x/y) drawn in these ranges, as a Gaussian of FWHM = resolution
    resolution_probability: float = Field(0.5, ge=0.0, le=1.0)
    slice_mm: tuple[float, float] = (1.5, 5.0)
    inplane_mm: tuple[float, float] = (0.5, 3.0)
    # [SynthSeg] smooth multiplicative bias field: log-gain sd on a 4 x 5 x 5 grid
    bias_probability: float = Field(0.5, ge=0.0, le=1.0)
    bias_sd: tuple[float, float] = (0.0, 0.3)
    noise_sd_hu: tuple[float, float] = (0.0, 60.0)
    # [ours] share of windows (rendered or not, phantom or real CT) given cone-beam
    # degradations (training.cbct.degrade, field of view placed for a window)
    cbct_probability: float = Field(0.0, ge=0.0, le=1.0)


class ModelConfig(_Section):
    width: int = 16  # [ours] channels at full resolution, doubled per level (paper: unspecified)
    # [ours] downsampling strides between the 4 levels (z, y, x): no z pooling at the first
    # step so the 16-slice window keeps z ≥ 4 at the bottom (16 → 16 → 8 → 4).
    strides: tuple[tuple[int, int, int], ...] = ((1, 2, 2), (2, 2, 2), (2, 2, 2))
    blocks_per_level: int = 1  # [ours] residual blocks (2 convs each) per level
    norm: Literal["instance", "batch", "group"] = "instance"  # [ours] batch 1-2 per GPU
    max_width: int = 256  # [ours] cap on channels

    @property
    def depths(self) -> int:
        """Resolution levels = number of deep-supervision outputs (the paper's four)."""
        return len(self.strides) + 1


class OptimConfig(_Section):
    lr: float = 1e-5  # [paper] Adam, learning rate 1e-5
    lr_step_epochs: int = 100  # [paper] lr × 0.8 every 100 epochs
    lr_gamma: float = 0.8  # [paper]
    alpha: float = 0.8  # [paper] deep-supervision weight starts at 0.8
    alpha_step_epochs: int = 30  # [paper] alpha × 0.8 every 30 epochs
    alpha_gamma: float = 0.8  # [paper]
    weight_decay: float = 0.0  # [ours] the paper mentions none
    dice_smooth: float = 1.0  # [ours] additive smoothing (voxels) of the soft Dice
    # [ours] Dice sums over the batch's annotating cases, not per window: per-window Dice
    # scores 1 for "nothing" on windows without a structure and rewards all-background.
    batch_dice: bool = True


class TrainConfig(_Section):
    epochs: int = 500  # [paper] 500 epochs
    batch_size: int = 2  # [ours] windows per step per process (paper: unspecified)
    seed: int = 0
    val_every: int = 5  # [ours] epochs between validations (sliding window on val cases)
    amp: bool = True  # mixed precision, used only on CUDA
    # [ours] start from these trained weights (a bundle folder with a ``weights`` file, or
    # a checkpoint) instead of a random init: ``wbspine train --init-from``. Left out of
    # the config (and its hash) when unset, so configs written before it keep their hash.
    init_from: Path | None = None


class ExportConfig(_Section):
    """What ``wbspine export`` requires of the run before it bundles the model."""

    # [ours] the lowest validation Dice of any validated structure a bundle may have
    # (``wbspine export --allow-weak`` overrides, and the manifest says so). Left out of
    # the config (and its hash) at its default, so configs written before it keep their hash.
    min_val_dice: float = Field(MIN_VAL_DICE, ge=0.0, le=1.0)


class RunConfig(_Section):
    """Where and how fast to run: not part of the config hash."""

    out: Path = Path("runs/default")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: int = 2
    prefetch_factor: int = 4
    progress: bool = True
    # torch intra-op threads (None: torch's default, one per core). On a CPU shared with
    # other work, 1 is often much faster: spinning threads that lose their core stall.
    torch_threads: int | None = None
    cache_dir: Path | None = None  # resampled-case cache; default DATASET/cache
    # Wall-clock budget (s) of one call: stop after the last epoch that fits (a batch
    # job's limit, a lent GPU's time); last.pt/best.pt stay valid and --resume goes on.
    time_limit_s: float | None = Field(None, gt=0)


class Config(_Section):
    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    synth: SynthConfig = SynthConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    export: ExportConfig = ExportConfig()
    run: RunConfig = RunConfig()

    @property
    def num_classes(self) -> int:
        return len(self.data.labels)

    def semantic_dict(self) -> dict:
        data = json.loads(self.model_dump_json(exclude={"run"}))
        if data["train"].get("init_from") is None:
            data["train"].pop("init_from", None)
        if data["export"] == ExportConfig().model_dump():
            data.pop("export")
        if data["synth"] == json.loads(SynthConfig().model_dump_json()):
            data.pop("synth")  # configs from before domain randomisation keep their hash
        return data

    @property
    def hash(self) -> str:
        return config_hash(self)


def config_hash(config: Config) -> str:
    """sha256 (first 16 hex) of the canonical JSON of everything but ``run``."""
    blob = json.dumps(config.semantic_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _parse_value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare string such as a path


def apply_overrides(raw: dict, overrides: Iterable[str]) -> dict:
    """Apply ``section.key=value`` strings (values parsed as TOML, else kept as text)."""
    raw = json.loads(json.dumps(raw, default=str))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        *parents, leaf = key.strip().split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[leaf] = _parse_value(value.strip())
    return raw


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Read a TOML config (or the defaults when ``path`` is None) and apply overrides."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
    raw = apply_overrides(raw, overrides)
    if "data" in raw and "labels" in raw["data"]:
        raw["data"]["labels"] = {int(k): v for k, v in raw["data"]["labels"].items()}
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid training config: {exc}") from exc
    check(config)
    return config


def check(config: Config) -> None:
    """Cross-field rules pydantic cannot express per field."""
    labels = config.data.labels
    if sorted(labels) != list(range(len(labels))) or labels.get(0) != "background":
        raise ConfigError("data.labels must map 0..K-1 with 0 = background")
    down_xy = 1
    for s in config.model.strides:
        down_xy *= s[1]
    down_z = 1
    for s in config.model.strides:
        down_z *= s[0]
    if config.data.patch_xy % down_xy:
        raise ConfigError(f"data.patch_xy must be a multiple of {down_xy} (model in-plane downsampling)")
    if config.data.window_slices % down_z:
        raise ConfigError(f"data.window_slices must be a multiple of {down_z} (model z downsampling)")
    lo, hi = config.data.t_range
    if not 0 < lo <= hi:
        raise ConfigError("data.t_range must be 0 < low <= high")


def default_structures() -> tuple[str, ...]:
    return tuple(LABEL_NAMES[int(s)] for s in STRUCTURES)
