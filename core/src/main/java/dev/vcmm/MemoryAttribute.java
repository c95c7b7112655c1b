package dev.vcmm;

/**
 * An attribute of a {@link MemoryType}: what the memory is, which decides who may use it.
 *
 * <p><b>Thread-safety:</b> an enum, immutable.
 *
 * <p>Only {@link #SECURE} exists so far, set through {@link MemoryType.Builder#secure(boolean)} and read through
 * {@link MemoryType#isSecure()}; attributes such as on-chip SRAM or non-cacheable memory will join it (and the
 * type may be published) when the mapping code needs them.
 */
enum MemoryAttribute {

    /** Secure memory: only secure reservations may be backed by it. */
    SECURE
}
