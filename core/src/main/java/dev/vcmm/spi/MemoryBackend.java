package dev.vcmm.spi;

/**
 * A provider of physical memory and block allocators, found by the core with
 * {@link java.util.ServiceLoader}: the one with the highest {@link #priority()} wins, so adding
 * {@code vcmm-ffm-backend} to the class path is all a user does to get the off-heap engine.
 *
 * <p><b>Thread-safety:</b> implementations are thread-safe and stateless apart from what they open.
 */
public interface MemoryBackend {

    /** {@return a short name, e.g. {@code ffm} or {@code heap}} */
    String name();

    /** {@return the preference of this backend; the highest available wins} */
    int priority();

    /**
     * Opens the simulated physical memory for {@code spec}; the caller owns it and closes it.
     *
     * @param spec the memory type's range, name and options
     * @return the memory, all zero
     * @throws IllegalArgumentException if the backend cannot hold a memory of that size
     */
    PhysicalMemory openMemory(MemorySpec spec);

    /**
     * Opens a block allocator managing {@code [spec.base(), spec.base() + spec.size())}; the caller closes it.
     *
     * @param spec the memory type's range, name and options
     * @return the allocator, with every block free
     */
    BlockAllocator openAllocator(MemorySpec spec);
}
