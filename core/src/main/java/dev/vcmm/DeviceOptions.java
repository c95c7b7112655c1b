package dev.vcmm;

/**
 * How a device is built: the geometry of its IOTLB model ({@link Iotlb}).
 *
 * <p><b>Thread-safety:</b> immutable.
 *
 * @param iotlbEntries total IOTLB entries; {@code iotlbEntries / iotlbWays} must be a power of two
 * @param iotlbWays    associativity ({@code iotlbWays == iotlbEntries} is fully associative)
 */
public record DeviceOptions(int iotlbEntries, int iotlbWays) {

    /** 64 entries, 4-way (16 sets): the size of a small SMMU TLB, and what {@link Vcmm#device(String, PageTableFormat)} uses. */
    public static final DeviceOptions DEFAULT = new DeviceOptions(64, 4);

    /** @throws IllegalArgumentException if the entries do not split into a power-of-two number of sets */
    public DeviceOptions {
        if (iotlbWays < 1 || iotlbEntries < iotlbWays || iotlbEntries % iotlbWays != 0
            || Integer.bitCount(iotlbEntries / iotlbWays) != 1) {
            throw new IllegalArgumentException("iotlbEntries=" + iotlbEntries + " iotlbWays=" + iotlbWays
                + " must give a power-of-two number of sets (entries a multiple of ways, ways >= 1)");
        }
    }

    /** @return options with an IOTLB of {@code entries} entries and {@code ways} ways */
    public static DeviceOptions iotlb(int entries, int ways) {
        return new DeviceOptions(entries, ways);
    }
}
