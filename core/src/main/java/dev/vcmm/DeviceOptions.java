package dev.vcmm;

/**
 * How a device is built: the geometry of its IOTLB model ({@link Iotlb}) and the size of its DMA bursts.
 *
 * <p><b>Thread-safety:</b> immutable.
 *
 * @param iotlbEntries total IOTLB entries; {@code iotlbEntries / iotlbWays} must be a power of two
 * @param iotlbWays    associativity ({@code iotlbWays == iotlbEntries} is fully associative)
 * @param burstBytes   the largest DMA burst (one bus transaction) in bytes: a power of two from 64 to 4096. A burst
 *                     never crosses a multiple of this size (AXI bursts never cross a 4 KiB boundary); each burst is
 *                     translated on its own, and an invalidation waits for at most one burst per thread in flight
 */
public record DeviceOptions(int iotlbEntries, int iotlbWays, int burstBytes) {

    /** The smallest burst: one 64-byte cache line. */
    public static final int MIN_BURST = 64;
    /** The largest burst: 4 KiB, the most an AXI burst may move, and the smallest page. */
    public static final int MAX_BURST = 4096;

    /**
     * 64 entries, 4-way (16 sets), 4 KiB bursts: the size of a small SMMU TLB, and what
     * {@link Vcmm#device(String, dev.vcmm.pagetable.PageTableFormat)} uses.
     */
    public static final DeviceOptions DEFAULT = new DeviceOptions(64, 4, MAX_BURST);

    /**
     * Checks the geometry.
     *
     * @throws IllegalArgumentException if the entries do not split into a power-of-two number of sets, or for a bad burst size
     */
    public DeviceOptions {
        if (iotlbWays < 1 || iotlbEntries < iotlbWays || iotlbEntries % iotlbWays != 0
            || Integer.bitCount(iotlbEntries / iotlbWays) != 1) {
            throw new IllegalArgumentException("iotlbEntries=" + iotlbEntries + " iotlbWays=" + iotlbWays
                + " must give a power-of-two number of sets (entries a multiple of ways, ways >= 1)");
        }
        if (burstBytes < MIN_BURST || burstBytes > MAX_BURST || Integer.bitCount(burstBytes) != 1) {
            throw new IllegalArgumentException("burstBytes=" + burstBytes + " must be a power of two from "
                + MIN_BURST + " to " + MAX_BURST);
        }
    }

    /**
     * Options with 4 KiB bursts.
     *
     * @param iotlbEntries the IOTLB entries
     * @param iotlbWays the IOTLB associativity
     * @throws IllegalArgumentException as the canonical constructor
     */
    public DeviceOptions(int iotlbEntries, int iotlbWays) {
        this(iotlbEntries, iotlbWays, MAX_BURST);
    }

    /**
     * {@return options with an IOTLB of {@code entries} entries and {@code ways} ways, and 4 KiB bursts}
     *
     * @param entries the number of entries
     * @param ways the associativity
     */
    public static DeviceOptions iotlb(int entries, int ways) {
        return new DeviceOptions(entries, ways);
    }

    /**
     * {@return these options with bursts of at most {@code bytes} bytes}
     *
     * @param bytes the number of bytes
     */
    public DeviceOptions withBurstBytes(int bytes) {
        return new DeviceOptions(iotlbEntries, iotlbWays, bytes);
    }
}
