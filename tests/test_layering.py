"""The package's folders form floors, and imports only run down them (HACKING.md, "Layers").

Every import of a southbridge module counts, deferred and TYPE_CHECKING ones included: a
cycle hidden in a function body is still a cycle (issue 14: `UserError` in cli.py tied seven
files into one). Read with the stdlib `ast`, so the check needs nothing installed and runs in
milliseconds.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import southbridge

ROOT = Path(southbridge.__file__).parent

# Floor of every folder, highest first; a folder may import only folders on lower floors,
# plus the sideways edges in SIDEWAYS. A new folder must be placed here (the test says so).
FLOORS: dict[str, int] = {
    "(entry)": 8,  # cli.py, __main__.py: the console script
    "commands": 7,  # argument parsing, one error line per bad input
    "fuzz": 6,  # drives machines and domains with generated input
    "domains": 5,  # the hypervisor: inventory, hide list, domains, assignment
    "qmp": 5,  # the control socket of a running machine
    "kvm": 4,  # running a machine under KVM
    "qtest": 4,  # running a machine CPU-less on the manual clock
    "machine": 3,  # presets: devices wired into a platform
    "host": 2,  # host I/O: sysfs, lspci dumps, VFIO, chardev and block backends
    "devices": 2,  # pure state machines
    "pci": 2,  # pure state machines
    "virtio": 2,  # pure state machines: virtio-pci functions on the pci and devices layers
    "core": 1,  # buses, clock, IRQ lines, state protocol
    "(leaf)": 0,  # errors.py and the package's own attributes (__version__)
}
# Same-floor edges that are allowed: host-side code implements the device layer's backend
# protocols and reads PCI config-space layouts; a device never imports host code.
SIDEWAYS = {
    ("host", "devices"),
    ("host", "pci"),
    ("virtio", "pci"),
    ("virtio", "devices"),
    ("pci", "devices"),  # a PCI function wrapping device state machines (the IDE function)
}
ENTRY_MODULES = {"cli", "__main__"}


def _node(parts: list[str]) -> str:
    """The folder (or pseudo-folder) a dotted southbridge module path belongs to."""
    if len(parts) < 2:
        return "(leaf)"
    head = parts[1]
    if (ROOT / head).is_dir():
        return head
    return "(entry)" if head in ENTRY_MODULES else "(leaf)"


def _module_node(path: Path) -> str:
    rel = path.relative_to(ROOT).parts
    return (
        _node(["southbridge", *rel[:-1], path.stem])
        if len(rel) > 1
        else _node(["southbridge", path.stem])
    )


def import_edges() -> dict[tuple[str, str], set[str]]:
    """(from folder, to folder) -> the "file -> module" imports that make the edge."""
    edges: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path in sorted(ROOT.rglob("*.py")):
        src = _module_node(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] != "southbridge":
                    continue
                dst = _node(parts)
                if dst != src and dst != "(leaf)":
                    edges[(src, dst)].add(f"{path.relative_to(ROOT)} -> {name}")
    return edges


def folder_cycles(edges: dict[tuple[str, str], set[str]]) -> list[list[str]]:
    """Cycles in the folder graph (each as the folders on it), by depth-first search."""
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                cycles.append([*stack[stack.index(m) :], m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return cycles


def test_every_folder_has_a_floor() -> None:
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders - FLOORS.keys() == set(), "place the new folder in FLOORS and HACKING.md"


def wrong_way(edges: dict[tuple[str, str], set[str]]) -> list[str]:
    """The edges that run up a floor or sideways without being in SIDEWAYS."""
    return [
        f"{a} (floor {FLOORS[a]}) -> {b} (floor {FLOORS[b]}): {sorted(why)[0]}"
        for (a, b), why in sorted(edges.items())
        if FLOORS.get(a, -1) <= FLOORS.get(b, 99) and (a, b) not in SIDEWAYS
    ]


def test_no_import_runs_up_or_sideways() -> None:
    assert wrong_way(import_edges()) == []


def test_no_import_cycle_between_folders() -> None:
    assert folder_cycles(import_edges()) == []


def test_the_checks_refuse_the_old_shape() -> None:
    # The checks above pass on an empty graph too: show they catch what main had before
    # issue 14 (cli.py <-> kvm/runner.py through UserError) and a device importing host code.
    edges = import_edges()
    edges[("kvm", "(entry)")] = {"kvm/runner.py -> southbridge.cli.UserError"}
    edges[("devices", "host")] = {"devices/uart.py -> southbridge.host.chardev.StdioBackend"}
    assert wrong_way(edges) == [
        "devices (floor 2) -> host (floor 2): devices/uart.py -> southbridge.host.chardev."
        "StdioBackend",
        "kvm (floor 4) -> (entry) (floor 8): kvm/runner.py -> southbridge.cli.UserError",
    ]
    cycles = folder_cycles(edges)
    assert ["host", "devices", "host"] in cycles
    assert any({"kvm", "(entry)"} <= set(c) for c in cycles)
