package dev.vcmm;

/**
 * A DMA access that faulted and was not retried: no handler, the handler said {@link FaultAction#TERMINATE},
 * or the retries ran out. The bytes before the faulting address were transferred (a buffer's position says how
 * many); none at or after it.
 *
 * <p><b>Thread-safety:</b> immutable once thrown.
 */
public final class DeviceFaultException extends RuntimeException {

    private static final long serialVersionUID = 1L;

    private final transient DeviceFault fault;

    /**
     * Makes the exception for a fault that was not retried.
     *
     * @param fault what faulted
     * @param why   why it was not retried, e.g. {@code no fault handler}
     */
    public DeviceFaultException(DeviceFault fault, String why) {
        super(fault + ": " + why);
        this.fault = fault;
    }

    /** {@return what faulted} */
    public DeviceFault fault() {
        return fault;
    }
}
