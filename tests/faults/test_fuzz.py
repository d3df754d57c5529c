"""A short hypothesis fuzz of the DICOM intake and of the bundle manifest parser (case 23).

Fixed, small example budgets and a derandomized seed so CI time is stable; the long,
time-bounded runs are ``tests/benchmarks/fuzz_node.py``. Every crash found becomes an
``@example`` below.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings

from dicom_node.index import Index
from dicom_node.spool import Spool
from tests.faults.fuzz_targets import (intake_inputs, intake_target, manifest_inputs, manifest_target,
                                       seed_dataset, seed_manifest)

FAST = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def store() -> tuple[Spool, Index]:
    root = Path(tempfile.mkdtemp(prefix="wbspine-fuzz-"))
    spool = Spool(root / "spool", fsync=False)
    return spool, Index(spool.index_path)


@pytest.mark.fault(23)
def test_seeds_are_valid(store) -> None:
    """The fuzzers start from inputs the targets accept (else they fuzz only the error path)."""
    assert intake_target(seed_dataset(False), "1.2.840.10008.1.2.1", *store)
    assert intake_target(seed_dataset(True), "1.2.840.10008.1.2", *store)
    import json
    assert manifest_target(json.dumps(seed_manifest()).encode())


@pytest.mark.fault(23)
@FAST
@given(case=intake_inputs)
def test_fuzz_intake_only_raises_dicom_status_errors(store, case: tuple[bytes, str]) -> None:
    intake_target(case[0], case[1], *store)


@pytest.mark.fault(23)
@FAST
@given(raw=manifest_inputs)
@example(raw=b'{"schema_version": "wbspine.bundle/1", "files": [{"path": "../x"}]}')
def test_fuzz_manifest_only_raises_bundle_errors(raw: bytes) -> None:
    manifest_target(raw)
