package dev.vcmm.spi;

import java.util.Objects;

/**
 * What a {@link MemoryBackend} needs to open the memory and the allocator of one memory type.
 *
 * <p><b>Thread-safety:</b> immutable.
 *
 * @param name                a short name for messages, e.g. {@code ddr}
 * @param base                physical address of the first byte, a multiple of 4 KiB
 * @param size                bytes, a positive multiple of 4 KiB
 * @param secure              whether the memory is secure (only secure reservations may use it)
 * @param maxOrder            the largest block order the allocator should hand out (it may lower it to fit
 *                            the pool)
 * @param threadCacheCapacity blocks per small order kept in each thread's cache; 0 turns caching off
 */
public record MemorySpec(String name, long base, long size, boolean secure, int maxOrder, int threadCacheCapacity) {

    /** The default {@link #maxOrder}: 1 GiB blocks. */
    public static final int DEFAULT_MAX_ORDER = 18;

    /** The largest {@link #maxOrder} accepted: 64 GiB blocks. */
    public static final int MAX_MAX_ORDER = 24;

    /** Validates every field; a bad one gets an {@link IllegalArgumentException} naming it. */
    public MemorySpec {
        Objects.requireNonNull(name, "name");
        if (name.isBlank()) {
            throw new IllegalArgumentException("name must not be blank");
        }
        if (base < 0 || (base & (BlockAllocator.PAGE_SIZE - 1)) != 0) {
            throw new IllegalArgumentException("base=0x" + Long.toHexString(base) + " must be a non-negative multiple of 4096");
        }
        if (size <= 0 || (size & (BlockAllocator.PAGE_SIZE - 1)) != 0) {
            throw new IllegalArgumentException("size=" + size + " must be a positive multiple of 4096");
        }
        if (base + size < 0 || base + size > (1L << 52)) {
            throw new IllegalArgumentException("base=0x" + Long.toHexString(base) + " size=0x" + Long.toHexString(size)
                + " exceeds the 52-bit physical address space");
        }
        if (maxOrder < 0 || maxOrder > MAX_MAX_ORDER) {
            throw new IllegalArgumentException("maxOrder=" + maxOrder + " must be in [0, " + MAX_MAX_ORDER + "]");
        }
        if (threadCacheCapacity < 0 || threadCacheCapacity > 4096) {
            throw new IllegalArgumentException("threadCacheCapacity=" + threadCacheCapacity + " must be in [0, 4096]");
        }
    }
}
