package dev.vcmm;

/**
 * An attribute of a {@link MemoryType}: what the memory is, which decides who may use it.
 *
 * <p><b>Thread-safety:</b> an enum, immutable.
 *
 * <p>Only {@link #SECURE} exists so far; attributes such as on-chip SRAM or non-cacheable memory will
 * join it when the mapping code needs them.
 */
public enum MemoryAttribute {

    /** Secure memory: only secure reservations may be backed by it. */
    SECURE
}
