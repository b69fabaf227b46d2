/* IDE sequential read benchmark by PIO (see _bench_ide.S). */
        .equ    USE_DMA, 0
        .include "_bench_ide.S"
