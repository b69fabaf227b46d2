"""`--drive` and `--cdrom` in QEMU's words: parsing the option and opening its image.

`--drive file=PATH[,if=virtio|ide][,format=raw][,readonly=on|off][,index=N]
[,media=disk|cdrom][,serial=S]`; a comma inside a value is written `,,` as in QEMU. `--cdrom
PATH` is `file=PATH,if=ide,index=2,media=cdrom` (QEMU puts it on the secondary master).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from southbridge.host.block import ImageError, RawImage

Interface = Literal["virtio", "ide"]
Media = Literal["disk", "cdrom"]

_KEYS = ("file", "if", "format", "readonly", "index", "media", "serial", "id")
# Two IDE channels with two devices each (QEMU's index = 2 * bus + unit).
IDE_INDEXES = 4
_SERIAL_MAX = 20  # the ATA IDENTIFY serial field and virtio-blk's GET_ID are 20 bytes


class DriveError(ValueError):
    """A malformed --drive: one line for the user."""


@dataclass(frozen=True)
class DriveSpec:
    file: str
    interface: Interface = "virtio"
    read_only: bool = False
    index: int | None = None
    media: Media = "disk"
    serial: str | None = None

    def open(self) -> RawImage:
        """Open the image (CD-ROMs are always read-only); ImageError has the one line."""
        return RawImage(self.file, read_only=self.read_only or self.media == "cdrom")


def split_options(text: str) -> list[tuple[str, str]]:
    """QEMU's key=value,key=value with ',,' for a literal comma."""
    items: list[tuple[str, str]] = []
    part: list[str] = []
    i = 0
    parts: list[str] = []
    while i < len(text):
        c = text[i]
        if c == ",":
            if text[i + 1 : i + 2] == ",":
                part.append(",")
                i += 2
                continue
            parts.append("".join(part))
            part = []
        else:
            part.append(c)
        i += 1
    parts.append("".join(part))
    for p in parts:
        key, eq, value = p.partition("=")
        if not eq or not key:
            raise DriveError(f"'{p}': expected key=value")
        items.append((key, value))
    return items


def _on_off(key: str, value: str) -> bool:
    if value in ("on", "yes", "true"):
        return True
    if value in ("off", "no", "false"):
        return False
    raise DriveError(f"{key}={value}: expected on or off")


def parse_drive(text: str) -> DriveSpec:
    values: dict[str, str] = {}
    for key, value in split_options(text):
        if key not in _KEYS:
            raise DriveError(f"unknown drive option '{key}' (known: {', '.join(_KEYS)})")
        if key in values:
            raise DriveError(f"drive option '{key}' given twice")
        values[key] = value
    if not values.get("file"):
        raise DriveError("file=PATH is required")
    interface = values.get("if", "virtio")
    if interface not in ("virtio", "ide"):
        raise DriveError(f"if={interface}: supported interfaces are virtio and ide")
    fmt = values.get("format", "raw")
    if fmt != "raw":
        raise DriveError(f"format={fmt}: only raw images are supported")
    media = values.get("media", "disk")
    if media not in ("disk", "cdrom"):
        raise DriveError(f"media={media}: expected disk or cdrom")
    if media == "cdrom" and interface != "ide":
        raise DriveError("media=cdrom needs if=ide")
    index: int | None = None
    if "index" in values:
        raw = values["index"]
        if not raw.isdigit() or len(raw) > 3:
            raise DriveError(f"index={raw}: expected a small non-negative integer")
        index = int(raw)
        if interface == "ide" and index >= IDE_INDEXES:
            raise DriveError(f"index={index}: IDE has indexes 0-{IDE_INDEXES - 1}")
    serial = values.get("serial")
    if serial is not None and (len(serial) > _SERIAL_MAX or not serial.isprintable()):
        raise DriveError(f"serial: at most {_SERIAL_MAX} printable characters")
    return DriveSpec(
        file=values["file"],
        interface=interface,  # type: ignore[arg-type]
        read_only=_on_off("readonly", values.get("readonly", "off")),
        index=index,
        media=media,  # type: ignore[arg-type]
        serial=serial,
    )


def cdrom_drive(path: str) -> DriveSpec:
    return DriveSpec(file=path, interface="ide", read_only=True, index=2, media="cdrom")


__all__ = ["DriveError", "DriveSpec", "ImageError", "cdrom_drive", "parse_drive"]
