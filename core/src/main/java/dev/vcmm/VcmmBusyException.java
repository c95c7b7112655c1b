package dev.vcmm;

/**
 * A state change refused because something still depends on the object (the original VCMM's
 * {@code -EBUSY}): freeing a VCM with reservations or associations, unreserving a backed reservation,
 * deassociating an active association, freeing a physical allocation that backs a reservation. Nothing
 * was changed.
 *
 * <p><b>Thread-safety:</b> an exception; not shared.
 */
public class VcmmBusyException extends IllegalStateException {
    private static final long serialVersionUID = 1L;

    /**
     * Makes the exception.
     *
     * @param message what was refused and what still depends on it
     */
    public VcmmBusyException(String message) {
        super(message);
    }
}
