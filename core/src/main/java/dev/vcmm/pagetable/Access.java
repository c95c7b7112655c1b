package dev.vcmm.pagetable;

/**
 * The kind of access a walk is asked to check against a mapping's permissions.
 *
 * <p><b>Thread-safety:</b> an enum, immutable.
 */
public enum Access {
    /** A data read. */
    READ,
    /** A data write. */
    WRITE,
    /** An instruction fetch. */
    EXECUTE
}
