"""Plain-text views of a measurements dict: a readable summary, the reasons values are
missing, and short labels for the key images."""

from __future__ import annotations

from pydicom.sr.coding import Code

from appliance.outputs import codes

_LABELS = {
    "thoracic_kyphosis_deg": "Thoracic kyphosis T1-T12",
    "thoracic_kyphosis_t4_t12_deg": "Thoracic kyphosis T4-T12",
    "lumbar_lordosis_deg": "Lumbar lordosis L1-L5",
    "lumbar_lordosis_l1_s1_deg": "Lumbar lordosis L1-S1",
    "sacral_slope_deg": "Sacral slope",
    "pelvic_tilt_deg": "Pelvic tilt",
    "pelvic_incidence_deg": "Pelvic incidence",
}

#: Words that tie a warning to a parameter (used to give the reason for a null value).
_KEYWORDS = {
    "thoracic_kyphosis_deg": ("kyphosis", "T1", "T12"),
    "thoracic_kyphosis_t4_t12_deg": ("kyphosis", "T4", "T12"),
    "lumbar_lordosis_deg": ("lordosis", "L1", "L5"),
    "lumbar_lordosis_l1_s1_deg": ("lordosis", "L1", "S1"),
    "sacral_slope_deg": ("sacral", "S1", "pelvis", "sacrum"),
    "pelvic_tilt_deg": ("pelvic", "femoral", "head", "hip", "S1"),
    "pelvic_incidence_deg": ("pelvic", "femoral", "head", "hip", "S1"),
    "cobb": ("cobb", "curve", "coronal"),
}


def parameter_lines(m: dict) -> list[str]:
    """One line per measured parameter, e.g. ``"Pelvic tilt: 12.0 deg"``."""
    lines = []
    cobb = m.get("cobb")
    for k, c in enumerate([c for c in (m.get("curves") or []) if c] or ([cobb] if cobb else [])):
        if c.get("angle_deg") is None:
            continue
        tag = "Cobb (major)" if k == 0 else f"Cobb curve {k + 1}"
        apex = f", apex {c['apex_vertebra']}" if c.get("apex_vertebra") else ""
        lines.append(f"{tag} {c['upper_end_vertebra']}-{c['lower_end_vertebra']}: {c['angle_deg']:.1f} deg{apex}")
    for key, label in _LABELS.items():
        if m.get(key) is not None:
            lines.append(f"{label}: {m[key]:.1f} deg")
    rot = {k: v for k, v in (m.get("vertebral_rotation_deg") or {}).items() if v is not None}
    if rot:
        name = max(rot, key=lambda k: abs(rot[k]))
        lines.append(f"Largest axial rotation: {name} {rot[name]:+.1f} deg")
    return lines


def _reason(key: str, warnings: list[str]) -> str:
    words = _KEYWORDS.get(key, ())
    hits = [w for w in warnings if any(word.lower() in str(w).lower() for word in words)]
    return "; ".join(hits) if hits else "no value was produced (see the measurement warnings)"


def not_measured_reasons(m: dict) -> list[tuple[Code, str]]:
    """(parameter concept, reason) for every parameter whose value is null."""
    warnings = [str(w) for w in m.get("warnings") or []]
    out: list[tuple[Code, str]] = []
    cobb = m.get("cobb")
    if not cobb or cobb.get("angle_deg") is None:
        out.append((codes.COBB_ANGLE, _reason("cobb", warnings)))
    for key, (name, _) in codes.SCALAR_PARAMETERS.items():
        if m.get(key) is None:
            out.append((name, _reason(key, warnings)))
    for level, v in (m.get("vertebral_rotation_deg") or {}).items():
        if v is None:
            out.append((codes.VERTEBRAL_ROTATION, f"{level}: " + _reason(level, warnings)))
    return out


def summary_text(m: dict) -> str:
    """Readable multi-line summary of the measurements (≤ 1024 characters, TEXT VR)."""
    lines = parameter_lines(m) or ["No parameter could be measured."]
    missing = not_measured_reasons(m)
    if missing:
        lines.append(f"Not measured: {', '.join(sorted({c.meaning for c, _ in missing}))}")
    if m.get("warnings"):
        lines.append(f"Warnings: {len(m['warnings'])}")
    return "\n".join(lines)[:1024]
