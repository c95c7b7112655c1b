package dev.vcmm;

/**
 * A device's fault handler (the SMMU's stall model: the transaction waits while software fixes the cause),
 * installed with {@link Device#hook(FaultHandler)}.
 *
 * <p><b>Thread-safety:</b> called in the thread doing the DMA, possibly from several threads at once when several
 * threads DMA through one device; implementations must be thread-safe. The handler runs with no lock of the
 * device, its IOTLB or the {@link Vcmm} held, so it may reserve, back, unback, activate, even crash the device.
 */
@FunctionalInterface
public interface FaultHandler {

    /**
     * {@return {@link FaultAction#RETRY} to walk again, {@link FaultAction#TERMINATE} to fail the access}
     *
     * @param fault what faulted
     */
    FaultAction onFault(DeviceFault fault);
}
