/* IDE sequential read benchmark by bus-master DMA (see _bench_ide.S). */
        .equ    USE_DMA, 1
        .include "_bench_ide.S"
