package dev.vcmm.pagetable;

/**
 * A format cannot express the permissions or memory type asked for (e.g. write-only on Arm, write-through
 * on RISC-V Svpbmt). Nothing was mapped.
 *
 * <p><b>Thread-safety:</b> an exception; not shared.
 */
public class UnsupportedAttributeException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates the exception.
     *
     * @param message names the format and the attribute it cannot express
     */
    public UnsupportedAttributeException(String message) {
        super(message);
    }
}
