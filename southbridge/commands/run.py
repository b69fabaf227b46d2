"""`southbridge run`: a pc machine on the host clock, a BIOS image, KVM, and exit statuses.

Exit status: the guest's isa-debug-exit status ((value << 1) | 1, low 8 bits); 0 when the
guest powers off, or resets (or triple-faults) with --no-reboot; 124 when --timeout expires;
1 when KVM reports an error (one message and a register dump on stderr); 2 for bad input
(missing or unreadable image, image too big, no /dev/kvm or no permission), one line.
With --kernel a Linux bzImage or a Multiboot kernel boots without a BIOS (kvm/kernel.py);
with --bios too, SeaBIOS loads the bzImage through fw_cfg (machine/linuxfw.py).
Without --no-reboot a reset rebuilds the machine and runs the image again, like a PC's
hard reset. With no --bios the bundled tour guest runs; it resets when done, and
--no-reboot is implied so that ends the run. With --config or --hide several domains run
in one process (`southbridge.commands.domains`). `--qmp` serves QEMU's QMP; SIGTERM presses
the ACPI power button (`southbridge.commands.control`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING, TextIO

from southbridge.commands import machine_opts, virtio_opts
from southbridge.commands.common import Subparsers, check_timeout
from southbridge.errors import UserError

if TYPE_CHECKING:  # the KVM modules load only when a run starts
    from southbridge.commands.control import RunControl
    from southbridge.kvm.kernel import BootKernel, FirmwareKernel
    from southbridge.kvm.runend import RunEnd
    from southbridge.kvm.session import KvmSession
    from southbridge.machine.pc import PcMachine

KVM_DEVICE_ENV = "SOUTHBRIDGE_KVM_DEVICE"
MIN_MEMORY_MB = 2
# RAM is one region from 1 MiB up; keep it below the PCI/firmware hole at 3.5 GiB.
MAX_MEMORY_MB = 3584
# xAPIC IDs 0..N-1 with 0xFF the broadcast ID; beyond that guests need x2APIC-only setups.
MAX_SMP = 254


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    r = sub.add_parser("run", help="run a guest under KVM on the pc machine's devices")
    _add_boot_options(r)
    _add_machine_options(r)
    _add_run_options(r)
    _add_domain_options(r)
    virtio_opts.add_options(r)
    r.set_defaults(func=run)
    return r


def _add_boot_options(r: argparse.ArgumentParser) -> None:
    r.add_argument(
        "--bios",
        metavar="FILE",
        help="firmware image mapped below 4 GiB (default: the bundled tour guest)",
    )
    r.add_argument(
        "--kernel",
        metavar="FILE",
        help="boot a kernel without BIOS: a Linux bzImage, or Multiboot (v1) ELF or a.out kludge",
    )
    r.add_argument("--append", metavar="STRING", help="the kernel's command line (with --kernel)")
    r.add_argument(
        "--initrd",
        metavar="FILE",
        help="with --kernel: Linux's initramfs FILE, or Multiboot modules FILE[ ARGS][,FILE...]",
    )


def _add_machine_options(r: argparse.ArgumentParser) -> None:
    r.add_argument(
        "-m", "--memory", metavar="MB", type=int, default=128, help="guest RAM in MiB (default 128)"
    )
    r.add_argument(
        "--serial",
        metavar="SPEC",
        default="stdio",
        help="COM1 backend: stdio, file:PATH or none (default stdio)",
    )
    r.add_argument(
        "--debugcon", metavar="SPEC", help="debug console on port 0x402: stdio or file:PATH"
    )
    r.add_argument("--smp", metavar="N", type=int, default=1, help="number of vCPUs")
    machine_opts.add_options(r)


def _add_run_options(r: argparse.ArgumentParser) -> None:
    r.add_argument(
        "--trace", metavar="FILE", help="record every port and MMIO access as qtest commands"
    )
    r.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        help="end the run after this much host time (exit status 124)",
    )
    r.add_argument(
        "--no-reboot",
        action="store_true",
        help="exit with status 0 when the guest resets instead of rebooting",
    )
    r.add_argument(
        "--qmp",
        metavar="unix:PATH,server",
        help="serve QEMU's QMP on a unix socket (QEMU's spelling; ,wait=off is implied)",
    )
    r.add_argument(
        "--snapshot",
        metavar="FILE",
        help="on SIGUSR1 (or QMP x-southbridge-snapshot-save) save the whole VM to FILE",
    )
    r.add_argument(
        "--restore",
        metavar="FILE",
        help="resume the VM saved in FILE (same memory, vCPUs and firmware or kernel)",
    )
    r.add_argument(
        "--term-grace",
        metavar="SECONDS",
        type=float,
        default=10.0,
        help="after SIGTERM pressed the power button, stop a guest still running after "
        "this long (default 10)",
    )
    r.add_argument(
        "--kvm-device",
        metavar="PATH",
        help="KVM device node (default $SOUTHBRIDGE_KVM_DEVICE or /dev/kvm)",
    )


def _add_domain_options(r: argparse.ArgumentParser) -> None:
    r.add_argument(
        "--config",
        metavar="FILE",
        help="run the domains of a hypervisor configuration (TOML) in one process",
    )
    r.add_argument(
        "--hide",
        action="append",
        metavar="SPEC",
        help="hide host PCI devices from the privileged domain: hide=02:01.0 or "
        "(02:01.0)(0000:03:00.1); repeatable",
    )


def run(args: argparse.Namespace) -> int:
    if args.config or args.hide:
        from southbridge.commands.domains import run_hypervisor

        return run_hypervisor(args)
    return run_machine(args)


def run_machine(args: argparse.Namespace) -> int:
    """One pc machine under KVM, rebuilt on every guest reset unless --no-reboot."""
    from southbridge.commands.control import RunControl
    from southbridge.host.userfile import open_output_text
    from southbridge.kvm.loader import LoadError, read_image
    from southbridge.kvm.runend import RunEnd
    from southbridge.kvm.system import DEFAULT_DEVICE

    kvm_device = args.kvm_device or os.environ.get(KVM_DEVICE_ENV) or DEFAULT_DEVICE
    if not 1 <= args.smp <= MAX_SMP:
        raise UserError(f"--smp {args.smp}: the number of vCPUs must be 1-{MAX_SMP}")
    if not MIN_MEMORY_MB <= args.memory <= MAX_MEMORY_MB:
        raise UserError(f"-m {args.memory}: memory must be {MIN_MEMORY_MB}-{MAX_MEMORY_MB} MiB")
    check_timeout(args.timeout)
    if not 0 <= args.term_grace <= 3600:  # also refuses nan
        raise UserError(f"--term-grace {args.term_grace:g}: expected 0-3600 seconds")
    args.switches = machine_opts.switches(args)
    args.virtio = virtio_opts.check(args)
    _check_stdio(args)
    no_reboot = bool(args.no_reboot)
    kernel = _read_kernel(args)
    bios_path: str | None = None
    if kernel is not None and args.bios is None:
        pass  # no BIOS: the vCPU starts at the kernel's entry point
    elif args.bios is None:
        # The tour resets the machine when it is done: that ends the run (status 0).
        no_reboot = True
        from southbridge.kvm.firmware import DEFAULT_GUEST
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
            trace_file = open_output_text(args.trace)  # closed below
        except OSError as e:
            raise UserError(f"--trace {args.trace!r}: {e.strerror}") from None
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    reboots = 0
    try:
        control = RunControl(args.qmp, args.term_grace, args.snapshot)
    except UserError:
        if trace_file is not None:
            trace_file.close()
        raise
    control.start()
    try:
        while True:
            result = _run_once(args, image, kvm_device, trace_file, deadline, kernel, control)
            control.detach(result.reason)
            if control.terminated and result.reason != "stopped":
                break  # SIGTERM: the guest's own power-off (or reset) ends the run
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
        control.close()
        if trace_file is not None:
            trace_file.close()
    if reboots > 1:
        print(f"southbridge: the guest was rebooted {reboots} times", file=sys.stderr)
    if result.reason in ("error", "timeout", "triple-fault", "stopped"):
        print(f"southbridge: {result.message}", file=sys.stderr)
    return result.status & 0xFF


def _check_stdio(args: argparse.Namespace) -> None:
    """One terminal, one reader: stdio may back one character device (QEMU: "cannot use
    stdio by multiple character devices")."""
    users = [
        name
        for name, spec in (
            ("--serial", args.serial),
            ("--debugcon", args.debugcon),
            ("--device virtio-serial", args.virtio.console),
        )
        if spec == "stdio"
    ]
    if len(users) > 1:
        raise UserError(
            f"stdio is given to {' and '.join(users)}: it can back one of them "
            f"(--serial is stdio unless told otherwise)"
        )


def _restore(session: KvmSession, machine: PcMachine, path: str) -> None:
    from southbridge.kvm.snapshotfile import SnapshotError, machine_config

    try:
        session.load_snapshot(path, machine_config(machine.config))
    except SnapshotError as e:
        raise UserError(f"--restore: {e}") from None


def _read_kernel(args: argparse.Namespace) -> BootKernel | FirmwareKernel | None:
    """The --kernel/--append/--initrd files, read and checked once (None: no --kernel)."""
    from southbridge.kvm.kernel import read_firmware_kernel, read_kernel
    from southbridge.kvm.loader import LoadError
    from southbridge.machine.pc import MiB

    kernel, append, initrd = args.kernel, args.append, args.initrd
    if kernel is None:
        if append is not None or initrd is not None:
            raise UserError("--append and --initrd need --kernel")
        return None
    try:
        if args.bios is not None:
            return read_firmware_kernel(kernel, append, initrd, args.memory * MiB)
        return read_kernel(kernel, append, initrd, args.memory * MiB)
    except LoadError as e:
        raise UserError(str(e)) from None


def _run_once(
    args: argparse.Namespace,
    image: bytes,
    kvm_device: str,
    trace_file: TextIO | None,
    deadline: float | None,
    kernel: BootKernel | FirmwareKernel | None = None,
    control: RunControl | None = None,
) -> RunEnd:
    from southbridge.core.clock import HostClock
    from southbridge.core.trace import QtestTracer
    from southbridge.host.chardev import close_backends, open_backends
    from southbridge.kvm.firmware import prepare_firmware
    from southbridge.kvm.kernel import Entry, FirmwareKernel
    from southbridge.kvm.loader import LoadError
    from southbridge.kvm.session import KvmSession
    from southbridge.kvm.system import KvmError
    from southbridge.machine.pam import PamShadow
    from southbridge.machine.pc import PcConfig, PcMachine

    sw = args.switches
    config = PcConfig(memory_mb=args.memory, smp=args.smp, acpi=sw["acpi"], hpet=sw["hpet"])
    try:
        serial, debugcon = open_backends([args.serial], args.debugcon)
    except (ValueError, OSError) as e:
        raise UserError(str(e)) from None
    try:
        virtio = virtio_opts.open_setup(args.virtio)
    except BaseException:
        close_backends(serial, debugcon)
        raise
    try:
        machine = PcMachine(
            config, clock=HostClock(), serial=serial, debugcon=debugcon, virtio=virtio
        )
    except BaseException:
        close_backends(serial, debugcon)
        virtio_opts.close_setup(virtio)
        raise
    try:
        shadow: PamShadow | None = None
        entry: Entry | None = None
        try:
            if kernel is None or isinstance(kernel, FirmwareKernel):
                shadow = prepare_firmware(machine, image)
                if kernel is not None:
                    kernel.install(machine)
            else:
                entry = kernel.load(machine)
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
        if control is not None:
            control.attach(machine)
            control.attach_session(session)
        with session:
            restore = getattr(args, "restore", None)
            if restore is not None and not getattr(args, "restored", False):
                args.restored = True  # the first boot resumes; a reboot starts afresh
                _restore(session, machine, restore)
                entry = None  # the saved vCPUs' registers, not the kernel's entry
            if entry is not None:
                entry(session.vcpus[0])
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            return session.run(timeout)
    finally:
        machine.close()
        if trace_file is not None:
            trace_file.flush()
