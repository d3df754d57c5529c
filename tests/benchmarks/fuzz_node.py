"""Bounded-time fuzz of the DICOM intake (bytes → data set → spool → index) and of the
model bundle manifest parser, with the targets and strategies of tests/faults/fuzz_targets.py.

Run: ``python tests/benchmarks/fuzz_node.py [SECONDS_PER_TARGET]`` (default 60). Prints one
JSON object (examples run per target, accepted inputs, seconds). A crash prints the
falsifying input and exits 1: add it as an ``@example`` in tests/faults/test_fuzz.py.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for tests.*

from dicom_node.index import Index  # noqa: E402
from dicom_node.spool import Spool  # noqa: E402
from tests.faults.fuzz_targets import intake_inputs, intake_target, manifest_inputs, manifest_target  # noqa: E402

ROUND = settings(max_examples=500, deadline=None, database=None, derandomize=False,
                 suppress_health_check=list(HealthCheck))


def run(name: str, seconds: float, body) -> dict:
    counts = {"examples": 0, "accepted": 0}

    @ROUND
    @given(case=intake_inputs if name == "intake" else manifest_inputs)
    def one(case) -> None:
        counts["examples"] += 1
        counts["accepted"] += bool(body(case))

    started = time.monotonic()
    while time.monotonic() - started < seconds:
        one()  # a crash raises with hypothesis's falsifying-example report
    return {**counts, "seconds": round(time.monotonic() - started, 1)}


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    root = Path(tempfile.mkdtemp(prefix="wbspine-fuzz-"))
    spool = Spool(root / "spool", fsync=False)
    index = Index(spool.index_path)
    result = {"intake": run("intake", seconds, lambda c: intake_target(c[0], c[1], spool, index)),
              "manifest": run("manifest", seconds, manifest_target)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
