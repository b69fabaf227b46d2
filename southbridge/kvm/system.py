"""/dev/kvm: open it, check the API version and the capabilities southbridge relies on."""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Any

from southbridge.kvm import abi

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_libc.ioctl.restype = ctypes.c_int

DEFAULT_DEVICE = "/dev/kvm"

# Capabilities without which the run loop cannot work, with why we need them.
REQUIRED_CAPS = {
    abi.KVM_CAP_USER_MEMORY: "KVM_CAP_USER_MEMORY (guest RAM from our mmap regions)",
    abi.KVM_CAP_SET_TSS_ADDR: "KVM_CAP_SET_TSS_ADDR (real mode on VMX)",
    abi.KVM_CAP_EXT_CPUID: "KVM_CAP_EXT_CPUID (KVM_GET_SUPPORTED_CPUID)",
    abi.KVM_CAP_IMMEDIATE_EXIT: "KVM_CAP_IMMEDIATE_EXIT (waking a vCPU without losing a kick)",
}


class KvmError(Exception):
    """KVM is missing, refused us, or lacks something we need: one clear line for the user."""


def ioctl(fd: int, request: int, arg: Any = None) -> int:
    """ioctl(2) through libc: `arg` is None, an int, or a ctypes object passed by reference.

    ctypes releases the GIL for the call, so a vCPU in KVM_RUN never blocks other threads,
    and EINTR is raised as InterruptedError instead of being retried (a kicked KVM_RUN must
    return to the run loop)."""
    ptr: int | None = arg if arg is None or isinstance(arg, int) else ctypes.addressof(arg)
    ret: int = _libc.ioctl(fd, request, ptr)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


class Kvm:
    """An open /dev/kvm whose API version and required capabilities were checked."""

    def __init__(self, path: str = DEFAULT_DEVICE) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise KvmError(
                f"{path} does not exist: KVM is not available on this host "
                "(load the kvm module or enable virtualization)"
            ) from None
        except PermissionError:
            raise KvmError(
                f"permission denied opening {path} (add your user to the 'kvm' group)"
            ) from None
        except OSError as e:
            raise KvmError(f"cannot open {path}: {e.strerror}") from None
        try:
            self._check()
        except BaseException:
            os.close(self.fd)
            raise

    def _check(self) -> None:
        try:
            version = ioctl(self.fd, abi.KVM_GET_API_VERSION)
        except OSError as e:
            raise KvmError(f"{self.path} is not a KVM device: {e.strerror}") from None
        if version != abi.API_VERSION:
            raise KvmError(
                f"{self.path}: KVM API version {version}, southbridge needs {abi.API_VERSION}"
            )
        missing = [why for cap, why in REQUIRED_CAPS.items() if not self.check_extension(cap)]
        if missing:
            raise KvmError(f"{self.path}: KVM lacks {', '.join(missing)}")

    def check_extension(self, cap: int) -> int:
        try:
            return ioctl(self.fd, abi.KVM_CHECK_EXTENSION, cap)
        except OSError:
            return 0

    def vcpu_mmap_size(self) -> int:
        return ioctl(self.fd, abi.KVM_GET_VCPU_MMAP_SIZE)

    def supported_cpuid(self) -> list[abi.kvm_cpuid_entry2]:
        """KVM_GET_SUPPORTED_CPUID, growing the buffer until the kernel's list fits."""
        nent = 64
        while True:
            buf = abi.cpuid2_type(nent)()
            buf.nent = nent
            try:
                ioctl(self.fd, abi.KVM_GET_SUPPORTED_CPUID, buf)
            except OSError as e:
                if e.errno == errno.E2BIG and nent < 4096:
                    nent *= 2
                    continue
                raise KvmError(f"KVM_GET_SUPPORTED_CPUID failed: {e.strerror}") from None
            return [buf.entries[i] for i in range(buf.nent)]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Kvm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
