import CDNNL

/// Buffer reuse between runs through the C allocator.
///
/// A run frees each value after its last use; keeping large blocks on the
/// heap (instead of glibc's per-block mmap/munmap) lets the next allocations of
/// similar size reuse that memory without page faults, and coalescing keeps
/// the resident size close to the largest set of values alive at once.
enum MemoryReuse {
    private static let configured: Void = {
        // 32 MiB is glibc's ceiling for the mmap threshold on 64-bit.
        mallopt(M_MMAP_THRESHOLD, 32 << 20)
        mallopt(M_TRIM_THRESHOLD, 128 << 20)
    }()

    static func configureAllocator() { _ = configured }
}
