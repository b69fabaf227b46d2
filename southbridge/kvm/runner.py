"""`southbridge run`: a pc machine on the host clock, a BIOS image, KVM, and exit statuses.

Exit status: the guest's isa-debug-exit status ((value << 1) | 1, low 8 bits); 0 when the
guest powers off, or resets (or triple-faults) with --no-reboot; 124 when --timeout expires;
1 when KVM reports an error (one message and a register dump on stderr); 2 for bad input
(missing or unreadable image, image too big, no /dev/kvm or no permission), one line.
With --kernel a Multiboot kernel boots without a BIOS (southbridge/kvm/multiboot.py).
Without --no-reboot a reset rebuilds the machine and runs the image again, like a PC's
hard reset. With no --bios the bundled tour guest runs; it resets when done, and
--no-reboot is implied so that ends the run.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import TextIO

from southbridge.core.clock import HostClock
from southbridge.core.trace import QtestTracer
from southbridge.kvm import multiboot
from southbridge.kvm.loader import LoadError, map_bios, read_image
from southbridge.kvm.session import KvmSession
from southbridge.kvm.system import DEFAULT_DEVICE, KvmError
from southbridge.kvm.vcpu import RunEnd
from southbridge.machine.pam import PamShadow
from southbridge.machine.pc import MiB, PcConfig, PcMachine

logger = logging.getLogger("southbridge.run")

DEFAULT_GUEST = "tour"
KVM_DEVICE_ENV = "SOUTHBRIDGE_KVM_DEVICE"
MIN_MEMORY_MB = 2
# RAM is one region from 1 MiB up; keep it below the PCI/firmware hole at 3.5 GiB.
MAX_MEMORY_MB = 3584
# xAPIC IDs 0..N-1 with 0xFF the broadcast ID; beyond that guests need x2APIC-only setups.
MAX_SMP = 254


def prepare_firmware(machine: PcMachine, image: bytes) -> PamShadow:
    """Map the BIOS image and give the PAM registers their effect on 0xC0000-0xFFFFF
    (firmware shadows itself there; the pc machine already filled CMOS). Point the returned
    shadow's `on_change` at the KVM session's `sync_memory`."""
    map_bios(machine, image)
    shadow = PamShadow(machine.memory)
    machine.i440fx.on_pam.append(shadow.set_pam)
    return shadow


def close_machine(machine: PcMachine) -> None:
    """Close the machine's host-side backends (serial, debugcon)."""
    for uart in getattr(machine, "serial", []):
        uart.backend.close()
    stream = getattr(machine, "debugcon_stream", None)
    if stream is not None:
        stream.close()


def run(args: argparse.Namespace) -> int:
    from southbridge.cli import UserError

    kvm_device = args.kvm_device or os.environ.get(KVM_DEVICE_ENV) or DEFAULT_DEVICE
    if not 1 <= args.smp <= MAX_SMP:
        raise UserError(f"--smp {args.smp}: the number of vCPUs must be 1-{MAX_SMP}")
    if not MIN_MEMORY_MB <= args.memory <= MAX_MEMORY_MB:
        raise UserError(f"-m {args.memory}: memory must be {MIN_MEMORY_MB}-{MAX_MEMORY_MB} MiB")
    if args.timeout is not None and not args.timeout > 0:
        raise UserError(f"--timeout {args.timeout:g}: must be a positive number of seconds")
    no_reboot = bool(args.no_reboot)
    kernel = _read_kernel(args)
    bios_path: str | None = None
    if kernel is not None:
        pass  # no BIOS: the vCPU starts at the kernel's entry point
    elif args.bios is None:
        # The tour resets the machine when it is done: that ends the run (status 0).
        no_reboot = True
        from southbridge.kvm.guestbuild import GuestBuildError, build

        try:
            bios_path = str(build(DEFAULT_GUEST))
        except GuestBuildError as e:
            raise UserError(str(e)) from None
    else:
        bios_path = args.bios
    try:
        image = b"" if bios_path is None else read_image(bios_path)
    except LoadError as e:
        raise UserError(str(e)) from None

    trace_file: TextIO | None = None
    if args.trace:
        try:
            trace_file = open(args.trace, "w")  # noqa: SIM115 - closed below
        except OSError as e:
            raise UserError(f"--trace {args.trace!r}: {e.strerror}") from None
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    reboots = 0
    try:
        while True:
            result = _run_once(args, image, kvm_device, trace_file, deadline, kernel)
            if result.reason in ("reset", "triple-fault") and not no_reboot:
                reboots += 1
                if result.reason == "triple-fault" and reboots == 1:
                    # Only the first dump: a guest that triple-faults at once would flood.
                    print(f"southbridge: {result.message}\nsouthbridge: rebooting", file=sys.stderr)
                if deadline is not None and time.monotonic() >= deadline:
                    result = RunEnd("timeout", 124, f"timeout after {args.timeout:g} s")
                    break
                continue
            break
    finally:
        if trace_file is not None:
            trace_file.close()
    if reboots > 1:
        print(f"southbridge: the guest was rebooted {reboots} times", file=sys.stderr)
    if result.reason in ("error", "timeout", "triple-fault", "stopped"):
        print(f"southbridge: {result.message}", file=sys.stderr)
    return result.status & 0xFF


def _read_kernel(args: argparse.Namespace) -> multiboot.KernelFiles | None:
    """The --kernel/--append/--initrd files, read and checked once (None: no --kernel)."""
    from southbridge.cli import UserError

    kernel, append, initrd = args.kernel, args.append, args.initrd
    if kernel is None:
        if append is not None or initrd is not None:
            raise UserError("--append and --initrd need --kernel")
        return None
    if args.bios is not None:
        raise UserError("--kernel and --bios cannot be used together (a kernel boots without BIOS)")
    try:
        return multiboot.read_kernel(kernel, append, initrd, args.memory * MiB)
    except LoadError as e:
        raise UserError(str(e)) from None


def _run_once(
    args: argparse.Namespace,
    image: bytes,
    kvm_device: str,
    trace_file: TextIO | None,
    deadline: float | None,
    kernel: multiboot.KernelFiles | None = None,
) -> RunEnd:
    from southbridge.cli import UserError

    config = PcConfig(
        memory_mb=args.memory, smp=args.smp, serial=args.serial, debugcon=args.debugcon
    )
    try:
        machine = PcMachine(config, clock=HostClock())
    except (ValueError, OSError) as e:
        raise UserError(str(e)) from None
    try:
        shadow: PamShadow | None = None
        plan: multiboot.BootPlan | None = None
        try:
            if kernel is None:
                shadow = prepare_firmware(machine, image)
            else:
                plan = kernel.load(machine)
        except LoadError as e:
            raise UserError(str(e)) from None
        if trace_file is not None:
            tracer = QtestTracer(trace_file, machine.clock)
            machine.ports.set_tracer(tracer.port)
            machine.mmio.set_tracer(tracer.mmio)
        try:
            session = KvmSession(machine, cpus=args.smp, device=kvm_device)
        except KvmError as e:
            raise UserError(str(e)) from None
        if shadow is not None:
            shadow.on_change = session.sync_memory
        with session:
            if plan is not None:
                multiboot.enter(session.vcpus[0], plan)
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            return session.run(timeout)
    finally:
        close_machine(machine)
        if trace_file is not None:
            trace_file.flush()
