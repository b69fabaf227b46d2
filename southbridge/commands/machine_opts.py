"""Platform switches shared by `run` and `qtest`, spelled as QEMU spells them: `--no-acpi`
(QEMU's `-no-acpi`), `--no-hpet` (QEMU's old `-no-hpet`) and `--machine pc,hpet=off,acpi=off`
(QEMU's `-machine` properties of the pc machine; the single-dash spellings work too)."""

from __future__ import annotations

import argparse

from southbridge.errors import UserError

MACHINE_TYPES = ("pc",)
SWITCHES = ("acpi", "hpet")
_ON = {"on": True, "yes": True, "true": True, "off": False, "no": False, "false": False}


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-acpi",
        "-no-acpi",
        action="store_true",
        help="no PIIX4 power-management function and no ACPI tables (QEMU's -no-acpi)",
    )
    p.add_argument(
        "--no-hpet",
        "-no-hpet",
        action="store_true",
        help="no HPET at 0xFED00000 (QEMU's -machine hpet=off)",
    )
    p.add_argument(
        "--machine",
        "-machine",
        metavar="[pc][,hpet=on|off][,acpi=on|off]",
        help="QEMU-style machine options; the type is pc",
    )


def switches(args: argparse.Namespace) -> dict[str, bool]:
    """The PcConfig fields the options set: {"acpi": ..., "hpet": ...}. A `--no-*` switch
    wins over `--machine ...=on`, as the later and more specific spelling would in QEMU."""
    out = dict.fromkeys(SWITCHES, True)
    spec = getattr(args, "machine", None)
    if spec is not None:
        for i, item in enumerate(str(spec).split(",")):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq:
                if i == 0 and key in MACHINE_TYPES:
                    continue
                if i == 0 and key:
                    raise UserError(f"--machine {spec}: unknown machine type {key!r} (only pc)")
                raise UserError(f"--machine {spec}: {item!r} is not KEY=VALUE")
            if key == "type" and value in MACHINE_TYPES:
                continue
            if key not in SWITCHES:
                raise UserError(
                    f"--machine {spec}: unknown property {key!r} (have {', '.join(SWITCHES)})"
                )
            if value.strip().lower() not in _ON:
                raise UserError(f"--machine {spec}: {key}={value!r} must be on or off")
            out[key] = _ON[value.strip().lower()]
    if getattr(args, "no_acpi", False):
        out["acpi"] = False
    if getattr(args, "no_hpet", False):
        out["hpet"] = False
    return out
