"""Record a bundle's real-scan figures in its model card (issue 17, item 5).

``tests/benchmarks/bench_real.py --record`` measures a bundle on the real CTs of
``../shared/data`` (TotalSegmentator pseudo-labels as reference), on those scans through
cone-beam degradations and on phantoms of an unseen appearance; :func:`record` writes
that table into the card as the section :data:`HEADING` (replacing an earlier one, and
kept before the appliance-validation tail that ``export.validate --record`` owns), then
rehashes the bundle and loads it back with full verification.
"""

from __future__ import annotations

from pathlib import Path

from appliance.bundle import load_bundle
from appliance.errors import ExportError
from export.bundle_writer import rewrite_manifest
from export.validate import RECORD_HEADING

HEADING = "## Real scans (tests/benchmarks/bench_real.py)"


def replace_section(text: str, markdown: str) -> str:
    """``text`` with the section :data:`HEADING` set to ``markdown`` (which starts with it)."""
    start = text.find(HEADING)
    if start >= 0:  # runs to the next heading of level 1 or 2
        ends = [i for i in (text.find("\n# ", start + 1), text.find("\n## ", start + 1)) if i >= 0]
        end = min(ends) + 1 if ends else len(text)
        return text[:start] + markdown.rstrip("\n") + "\n\n" + text[end:].lstrip("\n")
    cut = text.find("\n" + RECORD_HEADING)
    head, tail = (text, "") if cut < 0 else (text[:cut + 1], text[cut + 1:])
    return head.rstrip("\n") + "\n\n" + markdown.rstrip("\n") + "\n" + ("\n" + tail if tail else "")


def record(bundle_dir: str | Path, markdown: str) -> Path:
    """Write ``markdown`` (a section starting with :data:`HEADING`) into the bundle's card."""
    if not markdown.startswith(HEADING):
        raise ExportError(f"a real-scan record must start with {HEADING!r}")
    root = Path(bundle_dir)
    bundle = load_bundle(root)
    card = bundle.path("model_card")
    if card is None:
        raise ExportError(f"{root} has no model card to record the real-scan figures in")
    card.write_text(replace_section(card.read_text(), markdown))
    return rewrite_manifest(root, bundle.manifest)
