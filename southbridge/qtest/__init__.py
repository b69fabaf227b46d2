"""QEMU qtest text protocol: drive a CPU-less machine from a script or a test."""
