"""The real-scan figures go into the bundle's model card, replacing the last ones and
keeping the appliance-validation tail; the bundle stays verifiable (issue 17)."""

from __future__ import annotations

import shutil

import pytest

from appliance.bundle import DEFAULT_BUNDLE_DIR, load_bundle
from appliance.errors import ExportError
from export.real_scans import HEADING, record, replace_section
from export.validate import RECORD_HEADING


def test_the_section_goes_before_the_validation_tail_and_is_replaced_next_time():
    card = f"# Model card\n\nintro\n\n{RECORD_HEADING} (test split)\n\n| a |\n"
    once = replace_section(card, f"{HEADING}\n\nfirst table\n")
    assert once.index(HEADING) < once.index(RECORD_HEADING) and "intro" in once
    twice = replace_section(once, f"{HEADING}\n\nsecond table\n")
    assert "first table" not in twice and twice.count(HEADING) == 1
    assert twice.index("second table") < twice.index(RECORD_HEADING)
    assert twice.endswith("| a |\n")


def test_a_section_in_the_middle_is_replaced_up_to_the_next_heading():
    card = f"# Card\n\n{HEADING}\n\nold\n\n## Trainable weights\n\nw\n"
    out = replace_section(card, f"{HEADING}\n\nnew\n")
    assert "old" not in out and "new" in out and out.index("new") < out.index("## Trainable weights")


def test_record_rehashes_and_the_bundle_still_loads(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE_DIR, bundle)
    before = load_bundle(bundle).manifest.file("model_card").sha256
    record(bundle, f"{HEADING}\n\n| chest-ct | real | not in training | 0.396 |\n")
    loaded = load_bundle(bundle)  # full verification of every hash
    assert loaded.manifest.file("model_card").sha256 != before
    assert "0.396" in (bundle / "MODEL_CARD.md").read_text()
    with pytest.raises(ExportError, match="must start with"):
        record(bundle, "## something else\n")
