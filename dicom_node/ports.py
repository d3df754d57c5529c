"""Listening ports for local peers (the demo, tests, benchmarks) that nothing else takes.

Asking the kernel for port 0 and closing the socket hands back a port from the
*ephemeral* range (``/proc/sys/net/ipv4/ip_local_port_range``, 32768–60999 on Linux).
Until the listener that is told that port binds it, every outgoing connection on the
machine (an HTTP upload to Orthanc, a C-STORE) may get the same port as its local end,
and the bind then fails with EADDRINUSE — seen in CI after 40 uploads to Orthanc.
:func:`free_port` therefore picks below the ephemeral range, checks that the port binds,
and never hands the same port out twice in one process.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
#: Lowest port handed out: above the registered services most hosts run.
LOW_PORT = 20000
_given: set[int] = set()
_lock = threading.Lock()


def ephemeral_range(path: Path = _RANGE_FILE) -> tuple[int, int]:
    """The kernel's ephemeral port range; IANA's 49152–65535 where it cannot be read."""
    try:
        low, high = (int(v) for v in path.read_text().split())
        return low, high
    except (OSError, ValueError):
        return 49152, 65535


def _binds(port: int, host: str) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", attempts: int = 200) -> int:
    """A TCP port on ``host`` that binds now, outside the ephemeral range, not handed out
    before by this process. Falls back to a kernel-chosen port when none is found."""
    low, _ = ephemeral_range()
    high = low - 1 if low - 1 > LOW_PORT + 1000 else 32767
    rng = random.SystemRandom()
    with _lock:
        for _ in range(attempts):
            port = rng.randint(LOW_PORT, high)
            if port not in _given and _binds(port, host):
                _given.add(port)
                return port
        with socket.socket() as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        _given.add(port)
        return port
