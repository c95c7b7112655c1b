package dev.vcmm.pagetable;

/**
 * A length or an alignment the format cannot map (the kernel's {@code -EINVAL} for a bad page size): not a
 * multiple of the smallest leaf, or addresses not aligned to it. Nothing was changed.
 *
 * <p><b>Thread-safety:</b> an exception; not shared.
 */
public class UnsupportedSizeException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates the exception.
     *
     * @param message names the value and the format's smallest leaf
     */
    public UnsupportedSizeException(String message) {
        super(message);
    }
}
