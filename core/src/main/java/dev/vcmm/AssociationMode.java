package dev.vcmm;

/**
 * Which of a device's translation tables an association programs. Devices with split address spaces
 * (Arm's TTBR0/TTBR1) select the table by the top bit of the input address; the original VCMM's
 * "split" attribute is a device using one VCM {@link #USE_LOW} and another {@link #USE_HIGH}.
 *
 * <p><b>Thread-safety:</b> an enum, immutable.
 */
public enum AssociationMode {
    /** The VCM serves every device address: both tables. The default. */
    WHOLE,
    /** The VCM serves device addresses whose top bit is 0 (TTBR0, the low table). */
    USE_LOW,
    /** The VCM serves device addresses whose top bit is 1 (TTBR1, the high table). */
    USE_HIGH
}
