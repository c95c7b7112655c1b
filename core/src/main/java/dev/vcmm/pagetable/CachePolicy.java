package dev.vcmm.pagetable;

/**
 * The memory type a mapping gives its bytes, in the terms every page-table format can be asked for;
 * each format maps these onto its own encoding (MAIR index, TEX/C/B, PWT/PCD, Svpbmt) or rejects the
 * ones it cannot express with an {@link UnsupportedAttributeException}.
 *
 * <p><b>Thread-safety:</b> an enum, immutable.
 */
public enum CachePolicy {
    /** Normal memory, write-back, read- and write-allocate: ordinary RAM. */
    WRITE_BACK,
    /** Normal memory, write-through. */
    WRITE_THROUGH,
    /** Normal memory, non-cacheable. */
    NON_CACHEABLE,
    /** Device (I/O) memory: uncached, no speculation, no gathering or reordering. */
    DEVICE
}
