"""Sliding-window prediction on held-out cases and the paper's Table-3 report.

The sliding window here is the simple one training needs (16-slice windows along z
with overlap, whole slices in-plane, softmax averaged); the appliance has its own
optimised one. Metrics come from :mod:`appliance.metrics`, the code the appliance uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from appliance.labels import LABEL_NAMES, STRUCTURES
from appliance.metrics import structure_metrics
from appliance.preprocess import normalize, reorient
from appliance.volume import Volume, from_sitk, read_nifti, to_sitk
from training.torch_import import require_torch

torch = require_torch("Evaluation")
F = torch.nn.functional

#: JoVE 67781 Table 3, for side-by-side reading (train/test counts, Dice, VS, Recall).
PAPER_TABLE3 = {
    "vertebral_bodies": {"train": 100, "test": 20, "dice": 0.93, "volume_similarity": 0.954, "recall": 0.89},
    "pelvis": {"train": 57, "test": 6, "dice": 0.925, "volume_similarity": 0.965, "recall": 0.93},
    "femoral_heads": {"train": 47, "test": 5, "dice": 0.96, "volume_similarity": 0.971, "recall": 0.959},
}
METRICS = ("dice", "volume_similarity", "recall")


@torch.no_grad()
def predict_probabilities(model, image: np.ndarray, *, t: float, window_slices: int = 16,
                          multiple_xy: int = 8, overlap: int = 8, device="cpu",
                          pad_value: float = -1024.0) -> np.ndarray:
    """Softmax probabilities ``(K, z, y, x)`` of a whole prepared volume."""
    model.eval()
    d, h, w = image.shape
    ph, pw = (-h) % multiple_xy, (-w) % multiple_xy
    pz = max(0, window_slices - d)
    x = np.pad(image, ((0, pz), (0, ph), (0, pw)), constant_values=pad_value).astype(np.float32)
    x = normalize(x, t)
    depth = x.shape[0]
    step = max(1, window_slices - overlap)
    starts = list(range(0, depth - window_slices + 1, step))
    if starts[-1] != depth - window_slices:
        starts.append(depth - window_slices)
    acc = None
    weight = np.zeros(depth, dtype=np.float32)
    for z0 in starts:
        batch = torch.from_numpy(x[None, None, z0:z0 + window_slices]).to(device)
        prob = torch.softmax(model(batch).float(), dim=1)[0].cpu().numpy()
        if acc is None:
            acc = np.zeros((prob.shape[0], *x.shape), dtype=np.float32)
        acc[:, z0:z0 + window_slices] += prob
        weight[z0:z0 + window_slices] += 1.0
    acc /= weight[None, :, None, None]
    return acc[:, :d, :h, :w]


def predict_labels(model, image: np.ndarray, **kwargs) -> np.ndarray:
    return np.argmax(predict_probabilities(model, image, **kwargs), axis=0).astype(np.uint8)


def to_reference_grid(prediction: Volume, reference: Volume) -> np.ndarray:
    """Nearest-neighbour resampling of a label volume onto ``reference``'s grid."""
    out = sitk.Resample(to_sitk(prediction), to_sitk(reference), sitk.Transform(),
                        sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return from_sitk(out).array


def case_metrics(pred: np.ndarray, ref: np.ndarray, annotated: list[str]) -> dict:
    """Per-structure metrics; structures the case does not annotate are left out."""
    return {k: v for k, v in structure_metrics(pred, ref).items() if k in annotated}


def evaluate_cases(model, dataset, cases, prepared, config, *, native_grid: bool = True,
                   device="cpu") -> dict:
    """Predict each prepared case; metrics on the case's own grid (or the working grid)."""
    per_case = {}
    multiple = 1
    for s in config.model.strides:
        multiple *= s[1]
    for case, prep in zip(cases, prepared):
        pred = predict_labels(model, prep.image, t=config.data.inference_t,
                              window_slices=config.data.window_slices, multiple_xy=multiple,
                              overlap=config.data.inference_overlap_slices, device=device,
                              pad_value=config.data.pad_value)
        ref = prep.labels
        if native_grid:
            native = reorient(read_nifti(dataset.path(case.label)))
            pred, ref = to_reference_grid(prep.volume.with_array(pred), native), native.array
        per_case[case.id] = {"pseudo_labels": case.pseudo_labels,
                             "metrics": case_metrics(pred, ref, list(case.annotated))}
    return per_case


def summarise(per_case: dict, train_cases=()) -> dict:
    """Table 3: per structure the number of train/test cases and mean metrics."""
    table = {}
    for s in STRUCTURES:
        name = LABEL_NAMES[int(s)]
        rows = [c["metrics"][name] for c in per_case.values() if name in c["metrics"]]
        entry = {"train": sum(1 for c in train_cases if name in c.annotated), "test": len(rows)}
        for m in METRICS:
            vals = [r[m] for r in rows if r[m] is not None]
            entry[m] = float(np.mean(vals)) if vals else None
        table[name] = entry
    return table


def fmt(v: float | None) -> str:
    """A metric for humans: three decimals, or "–" where it is undefined (never 0 or 1)."""
    return "–" if v is None else f"{v:.3f}"


def report(per_case: dict, train_cases=(), title: str = "Held-out evaluation") -> tuple[dict, str]:
    """(JSON-able dict, markdown) in the form of the paper's Table 3, with per-case values."""
    table = summarise(per_case, train_cases)
    header = ("| Structure | Train cases | Test cases | Dice | VS | Recall | "
              "Paper Dice | Paper VS | Paper Recall |")
    lines = [f"# {title}", "", header, "|---|---|---|---|---|---|---|---|---|"]
    for name, e in table.items():
        p = PAPER_TABLE3[name]
        lines.append(f"| {name} | {e['train']} | {e['test']} | {fmt(e['dice'])} | "
                     f"{fmt(e['volume_similarity'])} | {fmt(e['recall'])} | {p['dice']} | "
                     f"{p['volume_similarity']} | {p['recall']} |")
    lines += ["", "## Per case", "", "| Case | Structure | Dice | VS | Recall |", "|---|---|---|---|---|"]
    for cid, c in per_case.items():
        tag = (" (pseudo-labels)" if c.get("pseudo_labels") else "") + \
            (" (seen in training)" if c.get("seen_in_training") else "")
        for name, m in c["metrics"].items():
            lines.append(f"| {cid}{tag} | {name} | {fmt(m['dice'])} | {fmt(m['volume_similarity'])} | "
                         f"{fmt(m['recall'])} |")
    if any(c.get("pseudo_labels") for c in per_case.values()):
        lines += ["", ("Cases marked pseudo-labels are scored against another model's output, "
                       "not manual annotation.")]
    return {"table3": table, "paper_table3": PAPER_TABLE3, "per_case": per_case}, "\n".join(lines) + "\n"


def write_report(out_dir: str | Path, per_case: dict, train_cases=(), title: str = "Held-out evaluation"):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data, md = report(per_case, train_cases, title)
    (out_dir / "report.json").write_text(json.dumps(data, indent=2) + "\n")
    (out_dir / "report.md").write_text(md)
    return data
