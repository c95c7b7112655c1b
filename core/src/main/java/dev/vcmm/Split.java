package dev.vcmm;

import dev.vcmm.pagetable.PageTableFormat;

/**
 * Where a device's input addresses divide between its low table (TTBR0) and its high table (TTBR1): the original
 * VCMM's {@code VCM_SPLIT} association attribute, set as the hardware sets it, per device
 * ({@link Device#setSplit(Split)}), because the split is one register of the translation context that both tables
 * share.
 *
 * <ul>
 *   <li>{@link #TOP_BIT}, the default: the top bit of the format's input address selects the high table (the sign for
 *   formats whose upper half is sign-extended).</li>
 *   <li>{@link #ttbcr(int)}: Armv7's TTBCR.N (ARM DDI 0406C B3.5.4): addresses whose top {@code N} bits of 32 are zero
 *   go to TTBR0, the rest to TTBR1; {@code N = 0} sends everything to TTBR0. This is also the RFC's reading of
 *   {@code VCM_SPLIT}: "the number of 0's left-filled into the split register".</li>
 *   <li>{@link #tcr(int, int)}: Arm64's TCR_ELx.T0SZ and T1SZ (Arm ARM D8.2): TTBR0 translates
 *   {@code [0, 2^(64-T0SZ))}, TTBR1 {@code [2^64 - 2^(64-T1SZ), 2^64)}; an address between the two faults.</li>
 * </ul>
 * Addresses are compared unsigned, in the numbering of the device's format (64-bit, sign-extended upper halves as
 * the format spells them).
 *
 * <p><b>Thread-safety:</b> immutable.
 */
public final class Split {

    /** The default: the top bit of the format's input address selects the high table. */
    public static final Split TOP_BIT = new Split(0, 0, false, "top bit");

    static final int NONE = -1;

    /** Low table for addresses below this (unsigned); 0 with {@link #topBit}: see {@link #TOP_BIT}. */
    private final long lowLimit;
    /** High table from this address up (unsigned), if {@link #hasHigh}. */
    private final long highBase;
    private final boolean hasHigh;
    private final String name;

    private Split(long lowLimit, long highBase, boolean hasHigh, String name) {
        this.lowLimit = lowLimit;
        this.highBase = highBase;
        this.hasHigh = hasHigh;
        this.name = name;
    }

    /**
     * {@return Armv7's TTBCR.N split of a 32-bit space: TTBR0 below {@code 2^(32-n)}, TTBR1 from there (none if
     * {@code n = 0})}
     *
     * @param n TTBCR.N, 0 to 7
     * @throws IllegalArgumentException if {@code n} is outside [0, 7]
     */
    public static Split ttbcr(int n) {
        if (n < 0 || n > 7) {
            throw new IllegalArgumentException("TTBCR.N=" + n + " must be in [0, 7]");
        }
        long boundary = 1L << (32 - n);
        return new Split(boundary, boundary, n > 0, "TTBCR.N=" + n);
    }

    /**
     * {@return Arm64's TCR split: TTBR0 translates {@code [0, 2^(64-t0sz))}, TTBR1 {@code [2^64 - 2^(64-t1sz), 2^64)},
     * and an address between them belongs to neither (it faults)}
     *
     * @param t0sz TCR.T0SZ, 1 to 63
     * @param t1sz TCR.T1SZ, 1 to 63
     * @throws IllegalArgumentException if either is outside [1, 63]
     */
    public static Split tcr(int t0sz, int t1sz) {
        if (t0sz < 1 || t0sz > 63 || t1sz < 1 || t1sz > 63) {
            throw new IllegalArgumentException("T0SZ=" + t0sz + " T1SZ=" + t1sz + " must be in [1, 63]");
        }
        return new Split(1L << (64 - t0sz), -(1L << (64 - t1sz)), true, "T0SZ=" + t0sz + " T1SZ=" + t1sz);
    }

    /**
     * {@return the slot ({@link Device#LOW} or {@link Device#HIGH}) {@code address} goes through on a device of
     *         {@code format}, or {@link #NONE} if it lies in neither half}
     */
    int slot(PageTableFormat format, long address) {
        if (this == TOP_BIT) {
            boolean high = format.isValidVa(-1L) ? address < 0 : ((address >>> (format.vaBits() - 1)) & 1) != 0;
            return high ? Device.HIGH : Device.LOW;
        }
        if (Long.compareUnsigned(address, lowLimit) < 0) {
            return Device.LOW;
        }
        return hasHigh && Long.compareUnsigned(address, highBase) >= 0 ? Device.HIGH : NONE;
    }

    @Override
    public String toString() {
        return "Split{" + name + '}';
    }
}
