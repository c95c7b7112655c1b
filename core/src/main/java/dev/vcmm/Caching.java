package dev.vcmm;

import dev.vcmm.pagetable.CachePolicy;

/**
 * The cache policy of a reservation, as the original VCMM spelled its attributes. Each maps onto what the
 * page-table formats can encode ({@link #toCachePolicy()}); a format that cannot express it refuses it.
 *
 * <p><b>Thread-safety:</b> an enum, immutable.
 */
public enum Caching {
    /** Non-cached (normal non-cacheable memory). */
    NON_CACHED(CachePolicy.NON_CACHEABLE),
    /** Write-back, write-allocate: ordinary RAM, the default. */
    WRITE_BACK_WRITE_ALLOCATE(CachePolicy.WRITE_BACK),
    /** Write-back, no write-allocate; encoded as write-back by formats without the distinction. */
    WRITE_BACK_NO_WRITE_ALLOCATE(CachePolicy.WRITE_BACK),
    /** Write-through. */
    WRITE_THROUGH(CachePolicy.WRITE_THROUGH),
    /** Device (I/O) memory. */
    DEVICE(CachePolicy.DEVICE);

    private final CachePolicy policy;

    Caching(CachePolicy policy) {
        this.policy = policy;
    }

    /** {@return the page-table memory type this policy is encoded as.} */
    public CachePolicy toCachePolicy() {
        return policy;
    }
}
