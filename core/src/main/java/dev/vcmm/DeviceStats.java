package dev.vcmm;

/**
 * A snapshot of a device's DMA counters ({@link Device#stats()}).
 *
 * <p><b>Thread-safety:</b> immutable. The counters are read one after the other while DMA may go on, so they
 * are each exact but not necessarily from one instant.
 *
 * @param device       the device's name
 * @param iotlb        its IOTLB's counters ({@link IotlbStats#NONE} for a one-to-one device)
 * @param faults       faults taken (each retried walk that faults again counts again)
 * @param retries      faults a handler answered with {@link FaultAction#RETRY}
 * @param failed       accesses that failed with a {@link DeviceFaultException}
 * @param bytesRead    bytes moved from memory into buffers
 * @param bytesWritten bytes moved from buffers into memory
 * @param crashes      calls of {@link Device#crash()}
 * @param crashed      whether the device is crashed now
 * @param syncs        invalidation syncs: waits for the DMA bursts in flight (one per unback, deactivate, crash or
 *                     reset that reached this device)
 * @param syncWaits    syncs that found a burst in flight and waited for it to finish
 */
public record DeviceStats(String device, IotlbStats iotlb, long faults, long retries, long failed, long bytesRead,
                          long bytesWritten, long crashes, boolean crashed, long syncs, long syncWaits) {
}
