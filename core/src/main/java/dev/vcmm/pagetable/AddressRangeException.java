package dev.vcmm.pagetable;

/**
 * An address or range lies outside what the format can translate or encode (the kernel's {@code -ERANGE}):
 * a virtual address beyond the input width or not canonical, a physical address beyond the output width.
 * Nothing was changed.
 *
 * <p><b>Thread-safety:</b> an exception; not shared.
 */
public class AddressRangeException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates the exception.
     *
     * @param message names the address, the length and the format's limit
     */
    public AddressRangeException(String message) {
        super(message);
    }
}
