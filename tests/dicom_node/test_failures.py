"""The failure classification against the statuses PS3.4 B.2.3 / PS3.7 Annex C / PS3.8 name."""

from __future__ import annotations

import pytest

from dicom_node.failures import NO_CONTEXT, AssociationRejected, classify


@pytest.mark.parametrize("result", [NO_CONTEXT, 0xC000, 0xC123, 0xA900, 0xA9FF, 0x0122, 0x0124, 0x0110,
                                    "unreadable result file: OSError"])
def test_refusals_of_the_object_are_permanent(result) -> None:
    assert classify(result).kind == "permanent"


@pytest.mark.parametrize("result", [0xA700, 0xA7FF, 0x0213, "connection failed", "association aborted",
                                    "no response", "TimeoutError: timed out", AssociationRejected(2, 3, 1)])
def test_full_down_or_busy_destinations_are_transient(result) -> None:
    verdict = classify(result)
    assert verdict.kind == "transient" and not verdict.at_cap


def test_rejected_permanent_association_retries_at_the_cap_and_names_the_reason() -> None:
    verdict = classify(AssociationRejected(1, 1, 7))
    assert (verdict.kind, verdict.at_cap) == ("transient", True)
    assert verdict.reason == "association rejected permanently: called AE title not recognised"


def test_unknown_failure_status_is_a_bounded_refusal() -> None:
    assert classify(0x0210).kind == "refusal"
