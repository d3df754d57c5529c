"""Run the fault suite and print the catalogue table: case | fault | expected | result.

Run: ``python tests/faults/table.py`` (or ``make faults-table``); extra arguments go to pytest.
Runs tests/faults plus the tests elsewhere that the catalogue references; a case passes
when every test marked with it passed. Exit status 1 when any case failed or has no test.
"""

from __future__ import annotations

import sys
import textwrap
import time
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from tests.faults.catalogue import CASES, REFERENCED  # noqa: E402


class Collector:
    """pytest plugin: outcome and duration of every test, keyed by catalogue case."""

    def __init__(self) -> None:
        self.cases: dict[int, list[tuple[str, str, float]]] = defaultdict(list)
        self._marks: dict[str, tuple[int, ...]] = {}

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            marks = [m.args for m in item.iter_markers("fault")]
            self._marks[item.nodeid] = tuple(c for args in marks for c in args)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            for case in self._marks.get(report.nodeid, ()):
                self.cases[case].append((report.nodeid, report.outcome, report.duration))


def table(collector: Collector) -> tuple[str, bool]:
    rows, ok = [], True
    for n, (fault, expected) in CASES.items():
        results = collector.cases.get(n, [])
        if not results:
            verdict, ok = "NO TEST", False
        elif all(outcome == "passed" for _, outcome, _ in results):
            verdict = f"PASS ({len(results)} test{'s' * (len(results) > 1)}, {sum(d for *_, d in results):.1f} s)"
        else:
            failed = [nodeid.split("::")[-1] for nodeid, outcome, _ in results if outcome != "passed"]
            verdict, ok = f"FAIL: {', '.join(failed)}", False
        rows.append((str(n), fault, expected, verdict))
    widths = (4, 46, 46, 26)
    lines = [" | ".join(h.ljust(w) for h, w in zip(("case", "fault", "expected", "result"), widths, strict=True)),
             "-+-".join("-" * w for w in widths)]
    for row in rows:
        cells = [textwrap.wrap(c, w) or [""] for c, w in zip(row, widths, strict=True)]
        for k in range(max(map(len, cells))):
            lines.append(" | ".join((c[k] if k < len(c) else "").ljust(w) for c, w in zip(cells, widths, strict=True)))
    return "\n".join(lines), ok


def main(argv: list[str]) -> int:
    collector = Collector()
    started = time.monotonic()
    code = pytest.main(["-q", "-p", "no:cacheprovider", "-W", "ignore", str(REPO / "tests/faults"),
                        *(str(REPO / r) for r in REFERENCED), *argv], plugins=[collector])
    text, ok = table(collector)
    print(f"\nFault catalogue (issue #9), {time.monotonic() - started:.0f} s\n{text}")
    return 0 if ok and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
