"""Readable summary of a phantom's truth (rich tables)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.1f}°"


def print_truth(truth: dict, paths: dict[str, Path], seconds: float, console: Console | None = None) -> None:
    console = console or Console()
    grid = truth["grid"]
    console.print(
        f"[bold]Phantom seed {truth['seed']}[/] ({truth['size']}): "
        f"{grid['shape_zyx'][2]}×{grid['shape_zyx'][1]}×{grid['shape_zyx'][0]} voxels, "
        f"spacing {'×'.join(f'{s:.3g}' for s in grid['spacing_mm'])} mm, made in {seconds:.1f} s"
    )
    table = Table(title="Planted truth (definitions: appliance.measure.definitions)")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    table.add_column("where")
    for i, c in enumerate(truth["curves"]):
        name = "Cobb angle (major)" if i == 0 else "Cobb angle (other curve)"
        table.add_row(name, _fmt(c["angle_deg"]),
                      f"{c['upper_end_vertebra']}–{c['lower_end_vertebra']}, apex {c['apex_vertebra']}")
    rows = [
        ("Thoracic kyphosis", "thoracic_kyphosis_deg", "T1–T12"),
        ("Thoracic kyphosis", "thoracic_kyphosis_t4_t12_deg", "T4–T12"),
        ("Lumbar lordosis", "lumbar_lordosis_deg", "L1–L5"),
        ("Lumbar lordosis", "lumbar_lordosis_l1_s1_deg", "L1–S1"),
        ("Sacral slope", "sacral_slope_deg", "S1 plate"),
        ("Pelvic tilt", "pelvic_tilt_deg", "S1 → hip axis"),
        ("Pelvic incidence", "pelvic_incidence_deg", "= PT + SS"),
    ]
    for label, key, where in rows:
        table.add_row(label, _fmt(truth[key]), where)
    rot = truth["vertebral_rotation_deg"]
    apex = truth["cobb"]["apex_vertebra"]
    table.add_row("Vertebral rotation", _fmt(rot[apex]), f"{apex} (apex) vs hip axis")
    console.print(table)
    for name, path in paths.items():
        console.print(f"  {name:7s} {path}")
