"""southbridge: the PC chipset and PCI device layer of a VMM, in Python, on Linux KVM."""

__version__ = "0.1.0"
