package dev.vcmm;

/**
 * A snapshot of a device's IOTLB: its geometry and counters (from {@link Device#iotlb()} and
 * {@link DeviceStats#iotlb()}). The IOTLB itself stays inside its device: nothing outside can fill or change it.
 *
 * <p><b>Thread-safety:</b> immutable.
 *
 * @param entries            capacity in entries ({@code sets x ways}); 0 for a device without an IOTLB
 * @param ways               associativity
 * @param valid              entries holding a translation now
 * @param hits               lookups that found an entry
 * @param misses             lookups that found none (one per lookup, however many sizes were probed)
 * @param fills              entries inserted
 * @param staleFillsRefused  inserts refused because an invalidation raced with their walk
 * @param flushes            whole-IOTLB invalidations (crash, reset, {@link Device#flushIotlb()}, a batch of more
 *                           ranges than {@link InvalidationBatch#MAX_RANGES})
 * @param rangeInvalidations range invalidations (one per unback per affected device; a batch merges them)
 * @param invalidatedEntries valid entries dropped by flushes, range and PASID invalidations
 * @param pasidInvalidations invalidations of every entry of one PASID (deactivating an association)
 */
public record IotlbStats(int entries, int ways, int valid, long hits, long misses, long fills, long staleFillsRefused,
                         long flushes, long rangeInvalidations, long invalidatedEntries, long pasidInvalidations) {

    /** The stats of a device that has no IOTLB (one-to-one). */
    public static final IotlbStats NONE = new IotlbStats(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);

    @Override
    public String toString() {
        return String.format("iotlb %d entries %d-way: %d valid, %d hits, %d misses, %d fills (%d stale refused), "
            + "%d flushes, %d range invalidations, %d PASID invalidations, %d entries invalidated", entries, ways, valid,
            hits, misses, fills, staleFillsRefused, flushes, rangeInvalidations, pasidInvalidations, invalidatedEntries);
    }
}
