"""PCI: config space model, buses and bridges, host bridge access, platform functions.

One job per module:

* `config`       config space bytes with writable / write-1-to-clear / device-owned masks
* `bar`          BAR types and sizing masks; `BarMapper` keeps a bus equal to the BARs
* `capabilities` PM, MSI, MSI-X (table + PBA in a BAR), PCI Express, extended capabilities
* `function`     `PciFunction`: a function's config model, BAR decoding, INTx/MSI, state;
                 the base of emulated devices and (issue 7) assigned host functions
* `bus`          `PciBus` / `PciRoot`: functions by devfn, config routing, INTx routing
* `bridge`       PCI-to-PCI bridge (type 1 header, windows, secondary bus reset)
* `host`         mechanism #1 (0xCF8/0xCFC) and the ECAM window
* `i440fx`       host bridge 8086:1237 (PAM, SMRAM); `piix3` ISA bridge 8086:7000 (PIRQs)
* `demo`         the demo device, the worked example of writing a device
* `msi`, `dma`   the MSI sink interface and the bus-master DMA interface
* `lspci`        `lspci -nn` listings and `-xxx`/`-xxxx` dumps
"""
