package dev.vcmm;

/**
 * What a {@link FaultHandler} tells the device to do about a fault.
 *
 * <p><b>Thread-safety:</b> an enum, immutable.
 */
public enum FaultAction {
    /** Walk again (the handler fixed the cause, e.g. backed the page on demand); bounded per access. */
    RETRY,
    /** Give up: the access fails with a {@link DeviceFaultException}. */
    TERMINATE
}
