package dev.vcmm.pagetable;

/**
 * Why a walk failed, in the classes the Arm, x86 and RISC-V architectures share.
 *
 * <p><b>Thread-safety:</b> an enum, immutable.
 */
public enum FaultReason {
    /** No valid entry maps the address (an invalid or reserved descriptor at some level). */
    TRANSLATION,
    /** A valid mapping exists but does not allow the access (write to read-only, user to privileged, fetch from no-execute). */
    PERMISSION,
    /**
     * The address lies outside the format's input address space (not canonical, or above its width), or a
     * descriptor holds an output address wider than the configured output size (Arm ARM D8 "Address size
     * fault": an OA above the PS/IPS limit).
     */
    ADDRESS_SIZE,
    /**
     * An Arm block or page descriptor with AF (bit 10) clear, and no hardware update of the access flag
     * (Arm ARM D8 "The Access flag": without FEAT_HAFDBS the access raises an Access flag fault, reported
     * with the level, distinct from a translation fault).
     */
    ACCESS_FLAG,
    /**
     * The translation reaches secure memory but the device is not secure: raised by the system's security
     * controller (a TrustZone address space controller) after the walk, not by the page tables.
     */
    SECURE
}
