"""The host side: PCI inventory from sysfs or lspci dumps, and the hide= list."""
