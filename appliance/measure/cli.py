"""``wbspine measure LABELS.nii.gz [--json OUT] [--lowest-level L5] [--highest-level T10]``: print a table of
the spinal and pelvic parameters and write the measurements JSON.

Wire it into the main parser with ``appliance.measure.cli.register(subparsers)``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from appliance.labels import LEVELS

_ANGLES = (
    ("Cobb angle (major curve)", None),
    ("Thoracic kyphosis T1–T12", "thoracic_kyphosis_deg"),
    ("Thoracic kyphosis T4–T12", "thoracic_kyphosis_t4_t12_deg"),
    ("Lumbar lordosis L1–L5", "lumbar_lordosis_deg"),
    ("Lumbar lordosis L1–S1", "lumbar_lordosis_l1_s1_deg"),
    ("Sacral slope", "sacral_slope_deg"),
    ("Pelvic tilt", "pelvic_tilt_deg"),
    ("Pelvic incidence", "pelvic_incidence_deg"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``measure`` subcommand to ``subparsers``; its handler is ``args.handler``."""
    p = subparsers.add_parser("measure", help="spinal and pelvic parameters from a label map",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("labels", type=Path, help="label map (NIfTI): 1 vertebral bodies, 2 pelvis, 3 femoral heads")
    p.add_argument("--json", type=Path, default=None, help="write the measurements JSON here")
    p.add_argument("--lowest-level", choices=LEVELS, default=None,
                   help="name of the lowest vertebral body when there is no pelvis label (e.g. L5)")
    p.add_argument("--highest-level", choices=LEVELS, default=None,
                   help="name of the top vertebral body when the field of view does not reach C2 (e.g. T10)")
    p.set_defaults(handler=run)


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.1f}°"


def render(result: dict, console=None) -> None:
    """Print the measurements as rich tables (angles, curves, rotation, warnings)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title="Spinal and pelvic parameters")
    table.add_column("Parameter")
    table.add_column("Value", justify="right")
    table.add_column("Detail")
    for label, key in _ANGLES:
        if key is None:
            cobb = result.get("cobb")
            detail = "" if not cobb else (f"{cobb['upper_end_vertebra']}–{cobb['lower_end_vertebra']}, "
                                          f"apex {cobb['apex_vertebra']}")
            table.add_row(label, _fmt(cobb and cobb["angle_deg"]), detail)
        else:
            table.add_row(label, _fmt(result.get(key)), "")
    console.print(table)
    if len(result.get("curves", [])) > 1:
        curves = Table(title="Coronal curves")
        for col in ("Angle", "Upper end", "Apex", "Lower end"):
            curves.add_column(col)
        for c in result["curves"]:
            curves.add_row(_fmt(c["angle_deg"]), c["upper_end_vertebra"], c["apex_vertebra"], c["lower_end_vertebra"])
        console.print(curves)
    rot = result.get("vertebral_rotation_deg") or {}
    if rot:
        rt = Table(title="Axial rotation relative to the hip axis (+: anterior body toward the left)")
        rt.add_column("Level")
        rt.add_column("Rotation", justify="right")
        for name, value in rot.items():
            rt.add_row(name, _fmt(value))
        console.print(rt)
    for w in result.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {w}")


def run(args: argparse.Namespace) -> int:
    """Measure, print the tables, write the JSON; WbspineError propagates to the caller
    (the main CLI prints it and exits with 2)."""
    from appliance.measure.api import measure
    from appliance.volume import read_nifti

    vol = read_nifti(args.labels)
    result = measure(vol.array, vol.affine, lowest_level=args.lowest_level,
                     highest_level=args.highest_level)
    render(result)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


