"""virtio devices (virtio 1.2): the PCI transport, split virtqueues and the device types.

Pure state machines like every device here: guest memory is reached through the PCI
function's bus-master view, host I/O through protocols (block back-end, entropy source).
"""
