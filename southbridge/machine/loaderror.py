"""The error every image loader raises (BIOS, Multiboot, bzImage): one line for the user.

It lives on the machine floor because the memory layouts loaders build (machine/bzimage.py)
are machine code; kvm/loader.py re-exports it for the loaders that enter a vCPU.
"""

from __future__ import annotations


class LoadError(Exception):
    """The image cannot be loaded: one line naming the file and the reason."""
