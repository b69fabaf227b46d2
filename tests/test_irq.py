"""IRQ lines, edge detection, wired-OR sharing and GSI fan-out."""

from __future__ import annotations

import pytest

from southbridge.core.irq import EdgeDetector, GsiRouter, IrqLine


def test_line_notifies_only_on_change() -> None:
    seen: list[bool] = []
    line = IrqLine("x", seen.append)
    line.raise_()
    line.raise_()
    line.lower()
    line.pulse()
    assert seen == [True, False, True, False]
    assert not line.level


def test_edge_detector_counts_rising_edges_only() -> None:
    edges: list[int] = []
    det = EdgeDetector(lambda: edges.append(1))
    line = IrqLine("e", det)
    for _ in range(3):
        line.pulse()
    line.raise_()
    line.raise_()
    assert len(edges) == 4


def test_gsi_fans_out_to_pic_and_ioapic_pins() -> None:
    g = GsiRouter(24)
    pic: list[bool] = []
    ioapic: list[bool] = []
    g.connect(0, pic.append)
    g.connect(0, ioapic.append)
    pit = g.input(0, "pit")
    pit.pulse()
    assert pic == ioapic == [True, False]


def test_gsi_inputs_are_wired_or() -> None:
    g = GsiRouter(24)
    out: list[bool] = []
    g.connect(11, out.append)
    a, b = g.input(11, "dev-a"), g.input(11, "dev-b")
    a.raise_()
    b.raise_()
    a.lower()  # b still asserts: the shared level line stays high
    assert g.line(11).level
    b.lower()
    assert out == [True, False]


def test_gsi_range_checked() -> None:
    g = GsiRouter(24)
    with pytest.raises(ValueError):
        g.input(24)
    with pytest.raises(ValueError):
        g.line(-1)
