package dev.vcmm;

/**
 * How a device reaches memory.
 *
 * <p><b>Thread-safety:</b> an enum, immutable.
 */
public enum DeviceKind {
    /** Through an IOMMU (SMMU) walking page tables of the device's format. */
    IOMMU,
    /** Without translation: device addresses are physical addresses (one-to-one VCMs only). */
    ONE_TO_ONE,
    /** A CPU, through its own MMU and page-table format (the original VCMM's VMM VCMs). */
    CPU
}
