"""Coronal and sagittal key views (numpy + PIL): thick-slab MIP through the spine,
masks overlaid, end-vertebra endplate lines and angle values drawn.

Views follow the radiological convention for a standing patient: superior up;
coronal seen from the front (patient right on the viewer's left, +x to the right);
sagittal seen from the patient's left (anterior on the left, +y to the right).
Array axes are assumed close to LPS (the appliance's canonical volumes are).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from appliance.outputs.source import SourceSeries
from appliance.outputs.summary import parameter_lines
from appliance.volume import Volume

SLAB_HALF_MM = 25.0
WINDOW = (-200.0, 1500.0)
COLOURS = {1: (255, 200, 0), 2: (0, 170, 255), 3: (255, 60, 170)}
ALPHA = 0.35
TARGET_HEIGHT_PX = 1000
LINE_COLOUR, TEXT_COLOUR = (0, 255, 0), (255, 255, 255)


@dataclass(frozen=True)
class View:
    """One rendered view: RGB pixels, the mm size of a pixel, and DICOM orientation."""

    name: str
    rgb: np.ndarray
    pixel_mm: float
    orientation: tuple[str, str]


def _centres(mask: np.ndarray, axis: int) -> np.ndarray:
    """Per-slice centre index of ``mask`` along ``axis`` (1 = y, 2 = x), interpolated."""
    other = 2 if axis == 1 else 1
    prof = mask.any(axis=other)  # (z, n_axis)
    counts = prof.sum(axis=1)
    idx = np.arange(prof.shape[1])
    have = counts > 0
    if not have.any():
        return np.full(mask.shape[0], prof.shape[1] / 2.0)
    c = (prof * idx).sum(axis=1)[have] / counts[have]
    return np.interp(np.arange(mask.shape[0]), np.flatnonzero(have), c)


def slab_mips(labels: Volume, source: SourceSeries) -> tuple[np.ndarray, np.ndarray]:
    """Grey thick-slab MIPs (z, x) coronal and (z, y) sagittal, streamed slice by slice."""
    spine = labels.array == 1
    if not spine.any():
        spine = labels.array > 0
    nz, ny, nx = labels.shape_zyx
    sx, sy, _ = labels.spacing_mm
    cy, cx = _centres(spine, 1), _centres(spine, 2)
    hy, hx = max(1, int(SLAB_HALF_MM / sy)), max(1, int(SLAB_HALF_MM / sx))
    coronal = np.empty((nz, nx), np.float32)
    sagittal = np.empty((nz, ny), np.float32)
    for k in range(nz):
        px = source.read_pixels(k)
        y0, x0 = int(round(cy[k])), int(round(cx[k]))
        coronal[k] = px[max(0, y0 - hy): y0 + hy + 1].max(axis=0)
        sagittal[k] = px[:, max(0, x0 - hx): x0 + hx + 1].max(axis=1)
    return coronal, sagittal


def _compose(grey: np.ndarray, labels2d: np.ndarray, spacing_col_mm: float, spacing_z_mm: float,
             pixel_mm: float) -> Image.Image:
    g = np.clip((grey - WINDOW[0]) / (WINDOW[1] - WINDOW[0]), 0, 1) * 255
    rgb = np.repeat(g[..., None], 3, axis=2)
    for value, colour in COLOURS.items():
        m = labels2d == value
        rgb[m] = (1 - ALPHA) * rgb[m] + ALPHA * np.asarray(colour, float)
    img = Image.fromarray(np.flipud(rgb).astype(np.uint8), "RGB")  # superior up
    size = (max(1, round(img.width * spacing_col_mm / pixel_mm)), max(1, round(img.height * spacing_z_mm / pixel_mm)))
    return img.resize(size, Image.BILINEAR)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _endplate_extent_mm(points: np.ndarray, centre: np.ndarray, normal: np.ndarray, sign: float,
                        bin_mm: float) -> float:
    """Distance from the body centroid to its endplate along ``normal``: walk outwards in
    ``bin_mm`` steps (≥ the voxel size, so no bin is empty inside bone) to the disc gap."""
    d = points - centre
    t = d @ normal
    r = np.linalg.norm(d - t[:, None] * normal, axis=1)
    t = sign * t[(r < 15.0) & (np.abs(t) < 40.0)]
    t = t[t >= 0]
    if t.size == 0:
        return 10.0
    hist = np.bincount(np.floor(t / bin_mm).astype(int))
    gaps = np.flatnonzero(hist == 0)
    return bin_mm * float(gaps[0] if gaps.size else hist.size)


class _Painter:
    def __init__(self, img: Image.Image, labels: Volume, pixel_mm: float, plane: str) -> None:
        self.img, self.labels, self.pixel_mm, self.plane = img, labels, pixel_mm, plane
        self.draw = ImageDraw.Draw(img)
        self.nz = labels.shape_zyx[0]
        self.label_rows: list[float] = []

    def to_px(self, p_mm: np.ndarray) -> tuple[float, float]:
        ix, iy, iz = self.labels.lps_to_index(np.asarray(p_mm, float)[None])[0]
        sx, sy, sz = self.labels.spacing_mm
        col = (ix * sx if self.plane == "coronal" else iy * sy) / self.pixel_mm
        row = (self.nz - 1 - iz) * sz / self.pixel_mm
        return col, row

    def plate_line(self, centre: np.ndarray, normal: np.ndarray, half_mm: float = 30.0) -> None:
        n = np.asarray(normal, float).copy()
        n[1 if self.plane == "coronal" else 0] = 0.0  # project on the view plane
        if np.linalg.norm(n) < 1e-6:
            return
        n /= np.linalg.norm(n)
        axis = 0 if self.plane == "coronal" else 1
        u = np.zeros(3)
        u[axis], u[2] = n[2], -n[axis]
        a, b = self.to_px(centre - half_mm * u), self.to_px(centre + half_mm * u)
        self.draw.line([a, b], fill=LINE_COLOUR, width=2)

    def label(self, xy: tuple[float, float], text: str, size: int = 12) -> None:
        """Small text next to a line, moved down past labels it would overlap."""
        row = xy[1]
        while any(abs(row - r) < size + 2 for r in self.label_rows):
            row += size + 2
        self.label_rows.append(row)
        self.text((xy[0], row), text, size)

    def text(self, xy: tuple[float, float], text: str, size: int = 14) -> None:
        self.draw.text(xy, text, fill=TEXT_COLOUR, font=_font(size), stroke_width=2, stroke_fill=(0, 0, 0))


def _vertebra_plates(m: dict, labels: Volume) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """(name, 'superior'|'inferior') → (point on the endplate, normal) for every vertebra."""
    verts = {v["name"]: v for v in m.get("vertebrae") or [] if v.get("centroid_mm") is not None}
    if not verts:
        return {}
    bin_mm = max(1.0, max(labels.spacing_mm))
    idx = np.argwhere(labels.array == 1)[:, ::-1]  # (x, y, z)
    points = labels.index_to_lps(idx)
    out = {}
    for name, v in verts.items():
        c = np.asarray(v["centroid_mm"], float)
        near = points[np.linalg.norm(points - c, axis=1) < 45.0]
        for side, sign in (("superior", 1.0), ("inferior", -1.0)):
            n = v.get(f"{side}_normal")
            if n is None:
                continue
            n = np.asarray(n, float) / np.linalg.norm(n)
            out[(name, side)] = (c + sign * _endplate_extent_mm(near, c, n, sign, bin_mm) * n, n)
    return out


def render_views(labels: Volume, source: SourceSeries, m: dict) -> list[View]:
    """Coronal and sagittal key views of the study with masks, lines and values."""
    coronal, sagittal = slab_mips(labels, source)
    sx, sy, sz = labels.spacing_mm
    pixel_mm = labels.shape_zyx[0] * sz / TARGET_HEIGHT_PX
    plates = _vertebra_plates(m, labels)
    views = []
    for plane, grey, lab2d, col_mm, orient in (
        ("coronal", coronal, labels.array.max(axis=1), sx, ("L", "F")),
        ("sagittal", sagittal, labels.array.max(axis=2), sy, ("P", "F")),
    ):
        img = _compose(grey, lab2d, col_mm, sz, pixel_mm)
        p = _Painter(img, labels, pixel_mm, plane)
        for key, label_text in _lines_for(plane, m):
            if key in plates:
                p.plate_line(*plates[key])
                col, row = p.to_px(plates[key][0])
                p.label((col + 32.0 / pixel_mm, row - 8), label_text)
            elif key == ("S1", "plate") and m.get("s1_plate"):
                p.plate_line(np.asarray(m["s1_plate"]["center_mm"]), np.asarray(m["s1_plate"]["normal"]), 20.0)
        for i, line in enumerate([plane.upper()] + parameter_lines(m)):
            p.text((6, 6 + 16 * i), line)
        views.append(View(plane, np.asarray(img), pixel_mm, orient))
    return views


def _lines_for(plane: str, m: dict) -> list[tuple[tuple[str, str], str]]:
    """Endplates to draw in ``plane``, each with a short label."""
    if plane == "coronal":
        out = []
        for c in [c for c in (m.get("curves") or []) if c and c.get("angle_deg") is not None]:
            out.append(((c["upper_end_vertebra"], "superior"), f"{c['upper_end_vertebra']} {c['angle_deg']:.1f} deg"))
            out.append(((c["lower_end_vertebra"], "inferior"), c["lower_end_vertebra"]))
        return out
    def value(key: str, tag: str) -> str:
        return f" {tag} {m[key]:.1f} deg" if m.get(key) is not None else ""

    return [(("T1", "superior"), "T1"), (("T12", "inferior"), "T12" + value("thoracic_kyphosis_deg", "TK")),
            (("L1", "superior"), "L1"), (("L5", "inferior"), "L5" + value("lumbar_lordosis_deg", "LL")),
            (("S1", "plate"), "S1")]
