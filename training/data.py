"""Cases at the working spacing (resampled once, cached) and a DataLoader of windows.

Determinism: window ``index`` of epoch ``e`` is drawn from
``numpy.random.default_rng([seed, e, index])`` whatever worker makes it, so a run is
reproducible with any number of workers and resumes exactly. The sampler hands out
``(epoch, index)`` pairs and splits them between DDP ranks (rank r takes r, r+W, ...),
the role ``DistributedSampler`` plays for a map-style dataset, so an epoch has the same
length on every rank.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.preprocess import reorient, resample
from appliance.volume import Volume, read_nifti
from training import dataset as ds
from training.augment import sample_window
from training.torch_import import require_torch

torch = require_torch("Training data loading")

#: Foreground voxels kept per case for foreground-centred windows (a seeded subsample).
MAX_FOREGROUND_POINTS = 20000


@dataclass
class PreparedCase:
    id: str
    image: np.ndarray  # float32 (z, y, x) at the working spacing, canonical LPS
    labels: np.ndarray  # uint8, same grid
    annotated: np.ndarray  # (K,) bool, background True
    volume: Volume  # geometry of the prepared grid (array = labels)
    foreground: np.ndarray  # (M, 3) int voxel indices
    tissues: np.ndarray | None = None  # uint8 tissue codes (phantoms with a tissue map), same grid


def _cache_key(case: ds.Case, root: Path, spacing_mm) -> str:
    parts = [case.id, repr(tuple(float(s) for s in spacing_mm))]
    for rel in case.files():
        st = (root / rel).stat()
        parts += [rel, str(st.st_size), str(st.st_mtime_ns)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _cache_files(dataset: ds.Dataset, case: ds.Case, spacing_mm, cache_dir: Path) -> tuple[Path, ...]:
    """image, labels, geometry and, for a case with a tissue map, tissues."""
    key = _cache_key(case, dataset.root, spacing_mm)
    names = ("image", "labels", "geometry") + (("tissues",) if case.tissues is not None else ())
    return tuple(cache_dir / f"{case.id}-{key}-{name}.npy" for name in names)


def prepare_case(dataset: ds.Dataset, case: ds.Case, spacing_mm, cache_dir: Path | None = None) -> PreparedCase:
    """Read, reorient to LPS and resample a case with the appliance's own functions."""
    files = _cache_files(dataset, case, spacing_mm, cache_dir) if cache_dir is not None else None
    tissues = None
    if files is not None and all(f.exists() for f in files):
        image, labels = np.load(files[0]), np.load(files[1])
        geo = np.load(files[2])
        volume = Volume(labels, tuple(geo[0]), tuple(geo[1]), geo[2:5])
        if case.tissues is not None:
            tissues = np.load(files[3])
    else:
        img = resample(reorient(read_nifti(dataset.path(case.image))), spacing_mm)
        lab = resample(reorient(read_nifti(dataset.path(case.label))), spacing_mm, is_label=True)
        image, labels, volume = img.array.astype(np.float32), lab.array.astype(np.uint8), lab
        if case.tissues is not None:
            tis = resample(reorient(read_nifti(dataset.path(case.tissues))), spacing_mm, is_label=True)
            if tis.array.shape != labels.shape:
                from appliance.errors import DatasetError
                raise DatasetError(f"case {case.id}: the tissue map is not on the label map's grid")
            tissues = tis.array.astype(np.uint8)
        if files is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            np.save(files[0], image)
            np.save(files[1], labels)
            np.save(files[2], np.vstack([volume.spacing_mm, volume.origin_mm, volume.direction]))
            if tissues is not None:
                np.save(files[3], tissues)
    names = [dataset.labels[k] for k in sorted(dataset.labels)]
    annotated = np.array([k == 0 or names[k] in case.annotated for k in range(len(names))])
    fg = np.argwhere(labels > 0)
    if len(fg) > MAX_FOREGROUND_POINTS:
        rng = np.random.default_rng(len(fg))
        fg = fg[np.sort(rng.choice(len(fg), MAX_FOREGROUND_POINTS, replace=False))]
    return PreparedCase(case.id, image, labels, annotated, volume, fg, tissues)


def prepare_split(dataset: ds.Dataset, split: str, spacing_mm, cache_dir: Path | None = None,
                  workers: int = 1):
    """Prepared cases of ``split``; with a cache and ``workers > 1`` the uncached cases
    are resampled in that many processes first (each writes its cache files; ~5 s and
    ~3 GB per full-size case), then all are read from the cache."""
    cases = dataset.split(split)
    if cache_dir is not None and workers > 1:
        missing = [c for c in cases if not all(f.exists() for f in _cache_files(dataset, c, spacing_mm, cache_dir))]
        if len(missing) > 1:
            import multiprocessing

            with multiprocessing.get_context("spawn").Pool(min(workers, len(missing))) as pool:
                pool.starmap(prepare_case, [(dataset, c, tuple(spacing_mm), cache_dir) for c in missing],
                             chunksize=1)
    return [prepare_case(dataset, c, spacing_mm, cache_dir) for c in cases]


class WindowDataset(torch.utils.data.Dataset):
    """Random augmented windows; item ``(epoch, i)`` takes case ``i mod n_cases``."""

    def __init__(self, cases, config, seed: int) -> None:
        if not cases:
            from appliance.errors import DatasetError
            raise DatasetError("no training cases in the dataset")
        self.cases = cases
        self.data_cfg = config.data
        self.aug_cfg = config.augment
        self.synth_cfg = config.synth
        self.seed = seed
        self.spacing_xy_mm = float(config.data.working_spacing_mm[0])
        self.epoch_size = len(cases) * config.data.windows_per_case

    def __len__(self) -> int:
        return self.epoch_size

    def __getitem__(self, item):
        epoch, index = item
        rng = np.random.default_rng([self.seed, epoch, index])
        case = self.cases[index % len(self.cases)]
        img, lab = sample_window(case.image, case.labels, rng, self.data_cfg, self.aug_cfg,
                                 self.spacing_xy_mm, case.foreground, case.tissues, self.synth_cfg)
        return torch.from_numpy(img[None]), torch.from_numpy(lab), torch.from_numpy(case.annotated)


class EpochSampler(torch.utils.data.Sampler):
    """Yields ``(epoch, index)`` for this rank's share of the epoch (equal on every rank)."""

    def __init__(self, epoch_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.per_rank = max(1, epoch_size // world_size)
        self.rank, self.world_size, self.epoch = rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        for k in range(self.per_rank):
            yield (self.epoch, self.rank + k * self.world_size)

    def __len__(self) -> int:
        return self.per_rank


def make_loader(window_dataset: WindowDataset, sampler: EpochSampler, batch_size: int,
                num_workers: int, prefetch_factor: int, pin_memory: bool = False):
    kwargs = {}
    if num_workers > 0:
        kwargs = {"prefetch_factor": prefetch_factor, "persistent_workers": True}
    return torch.utils.data.DataLoader(window_dataset, batch_size=batch_size, sampler=sampler,
                                       num_workers=num_workers, pin_memory=pin_memory,
                                       drop_last=False, **kwargs)
