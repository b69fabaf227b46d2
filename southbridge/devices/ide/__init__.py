"""The ATA/ATAPI side of the PIIX3 IDE function: channels with a master and a slave, ATA
disks, an ATAPI CD-ROM and the SFF-8038i bus-master DMA engine. Pure state machines: block
I/O goes through `devices.blockdev`, DMA through the PCI function's `Dma`."""
