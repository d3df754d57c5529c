"""Processor factory for crash tests: the test processor plus a planted SIGKILL.

Loaded inside a node subprocess (``--processor tests.faults.crashpoint:make_processor``).
``<control>/crash`` holds ``POINT N``:

- ``before-success N``: SIGKILL right after the N-th instance became durable (its journal
  record fdatasynced, or without the journal its index commit), before its C-STORE
  response is sent (durable but not acknowledged);
- ``after-success N``: SIGKILL when the (N+1)-th C-STORE arrives, i.e. just after the N-th
  Success reached the peer (storescu sends the next instance only after the response).

``<control>/slow-store`` (optional) holds seconds: every C-STORE waits that long before it is
handled (a long association that is still sending when SIGTERM comes).

``<control>/processor`` (optional) holds ``module:factory`` and a bundle folder on two
lines: that processor (e.g. the appliance pipeline) is used instead of the test processor.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from dicom_node.index import Index
from dicom_node.journal import Journal
from dicom_node.scp import StorageSCP
from tests.dicom_node.node_processor import make_processor as test_processor


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def make_processor(control_dir: Path | None):
    crash = Path(control_dir) / "crash" if control_dir else None
    if crash is not None and crash.exists():
        point, n = crash.read_text().split()
        count = [0]
        if point == "before-success":
            commit, append = Index.add_instance, Journal.append

            def add_instance(self, *args, **kwargs):  # type: ignore[no-untyped-def]
                commit(self, *args, **kwargs)
                count[0] += 1
                if count[0] == int(n):
                    _kill()

            def journal_append(self, *args, **kwargs):  # type: ignore[no-untyped-def]
                done = append(self, *args, **kwargs)
                count[0] += 1
                if count[0] == int(n):
                    _kill()
                return done

            Index.add_instance = add_instance  # type: ignore[method-assign]
            Journal.append = journal_append  # type: ignore[method-assign]
        elif point == "after-success":
            store = StorageSCP._on_store

            def on_store(self, event):  # type: ignore[no-untyped-def]
                count[0] += 1
                if count[0] == int(n) + 1:
                    _kill()
                return store(self, event)

            StorageSCP._on_store = on_store  # type: ignore[method-assign]
        else:
            raise ValueError(f"unknown crash point {point!r}")
    slow = Path(control_dir) / "slow-store" if control_dir else None
    if slow is not None and slow.exists():
        delay, handle = float(slow.read_text()), StorageSCP._on_store

        def slow_store(self, event):  # type: ignore[no-untyped-def]
            time.sleep(delay)
            return handle(self, event)

        StorageSCP._on_store = slow_store  # type: ignore[method-assign]
    chosen = Path(control_dir) / "processor" if control_dir else None
    if chosen is not None and chosen.exists():
        import importlib

        factory, bundle = chosen.read_text().split("\n")[:2]
        module, name = factory.split(":")
        return getattr(importlib.import_module(module), name)(Path(bundle))
    return test_processor(control_dir)
