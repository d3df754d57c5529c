"""Ports for local peers come from below the kernel's ephemeral range (CI saw EADDRINUSE)."""

from __future__ import annotations

import socket
from pathlib import Path

from dicom_node import ports


def test_ports_bind_lie_below_the_ephemeral_range_and_are_never_repeated() -> None:
    low, _ = ports.ephemeral_range()
    handed = [ports.free_port() for _ in range(50)]
    assert len(set(handed)) == len(handed)
    assert all(ports.LOW_PORT <= p < max(low, 32768) for p in handed)
    with socket.socket() as s:
        s.bind(("127.0.0.1", handed[0]))
        s.listen()


def test_unreadable_range_falls_back_to_iana(tmp_path: Path) -> None:
    assert ports.ephemeral_range(tmp_path / "missing") == (49152, 65535)
    (tmp_path / "garbled").write_text("x y\n")
    assert ports.ephemeral_range(tmp_path / "garbled") == (49152, 65535)
    (tmp_path / "range").write_text("40000\t60999\n")
    assert ports.ephemeral_range(tmp_path / "range") == (40000, 60999)


def test_a_held_port_is_not_handed_out(monkeypatch) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        picks = iter([taken, taken, 25001])
        monkeypatch.setattr(ports.random.SystemRandom, "randint", lambda self, a, b: next(picks))
        monkeypatch.setattr(ports, "_given", set())
        assert ports.free_port() == 25001
