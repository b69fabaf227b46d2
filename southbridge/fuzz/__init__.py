"""`southbridge fuzz`: generated input driving the CPU-less pc machine and the hypervisor's
domains, like QEMU's generic-fuzz. `ops` decodes bytes into accesses, `world` builds what
they run on, `detect` turns misbehaviour into findings, `minimize` and `script` make each
finding a short qtest script, `engine` runs campaigns (atheris when importable, else a
seeded byte mutator)."""
