"""Host entropy for virtio-rng: the kernel's CSPRNG."""

from __future__ import annotations

import os


class UrandomSource:
    """`os.urandom` never blocks once the kernel pool is initialised (getrandom(2))."""

    def read(self, n: int) -> bytes:
        return os.urandom(max(0, n))
