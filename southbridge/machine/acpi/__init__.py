"""ACPI tables for the pc machine: an AML encoder, the tables, and QEMU's linker/loader."""
