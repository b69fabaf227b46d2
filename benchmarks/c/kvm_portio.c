/* The physical floor for benchmarks/portio.py: the smallest KVM loop that runs a flat BIOS
 * image with southbridge's memory layout (RAM 0-640 KiB and 1 MiB up, the image read-only
 * below 4 GiB and its last 128 KiB at the top of the first megabyte) and handles
 * KVM_EXIT_IO by counting OUTs until a write to isa-debug-exit (0xF4) ends the run with
 * QEMU's status convention. No irqchip, no devices, no threads: only the exits themselves.
 *
 * Build: gcc -O2 -o kvm_portio kvm_portio.c      Run: kvm_portio IMAGE [MEMORY_MB]
 * Prints "outs=N" on stderr and exits with (value << 1) | 1. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void die(const char *what) {
    fprintf(stderr, "kvm_portio: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void *anon(size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap");
    return p;
}

static void slot(int vm, uint32_t n, uint64_t gpa, uint64_t size, void *host, uint32_t flags) {
    struct kvm_userspace_memory_region r = {
        .slot = n, .flags = flags, .guest_phys_addr = gpa, .memory_size = size,
        .userspace_addr = (uint64_t)(uintptr_t)host,
    };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) die("KVM_SET_USER_MEMORY_REGION");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: kvm_portio IMAGE [MEMORY_MB]\n");
        return 2;
    }
    uint64_t mem = (argc > 2 ? strtoull(argv[2], NULL, 0) : 16) << 20;
    int img = open(argv[1], O_RDONLY);
    if (img < 0) die(argv[1]);
    struct stat st;
    if (fstat(img, &st) < 0) die("fstat");
    size_t pad = (size_t)(-st.st_size) & 0xFFF, len = (size_t)st.st_size + pad;
    uint8_t *bios = anon(len);
    memset(bios, 0xFF, pad);
    if (read(img, bios + pad, (size_t)st.st_size) != st.st_size) die("read image");
    size_t alias_len = len < 0x20000 ? len : 0x20000;
    uint8_t *alias = anon(alias_len);
    memcpy(alias, bios + len - alias_len, alias_len);

    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) die("/dev/kvm");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) die("KVM_CREATE_VM");
    if (ioctl(vm, KVM_SET_TSS_ADDR, 0xFEFFD000UL) < 0) die("KVM_SET_TSS_ADDR");
    uint64_t ident = 0xFEFFC000;
    ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, &ident);
    slot(vm, 0, 0, 640 << 10, anon(640 << 10), 0);
    slot(vm, 1, 1 << 20, mem - (1 << 20), anon(mem - (1 << 20)), 0);
    slot(vm, 2, (1ULL << 32) - len, len, bios, KVM_MEM_READONLY);
    slot(vm, 3, (1 << 20) - alias_len, alias_len, alias, KVM_MEM_READONLY);

    int cpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (cpu < 0) die("KVM_CREATE_VCPU");
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, cpu, 0);
    if (run == MAP_FAILED) die("mmap kvm_run");

    unsigned long outs = 0;
    for (;;) {
        if (ioctl(cpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR) continue;
            die("KVM_RUN");
        }
        if (run->exit_reason != KVM_EXIT_IO) {
            fprintf(stderr, "kvm_portio: unexpected exit %u\n", run->exit_reason);
            return 3;
        }
        if (run->io.direction == KVM_EXIT_IO_OUT) {
            uint8_t *data = (uint8_t *)run + run->io.data_offset;
            if (run->io.port == 0xF4) {
                fprintf(stderr, "outs=%lu\n", outs);
                return ((data[0] << 1) | 1) & 0xFF;
            }
            outs += run->io.count;
        } else {
            memset((uint8_t *)run + run->io.data_offset, 0xFF, run->io.size * run->io.count);
        }
    }
}
