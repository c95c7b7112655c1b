package dev.vcmm.pagetable;

/**
 * A map request overlaps a live mapping (the kernel's {@code -EEXIST}). Nothing was changed: whatever the
 * call had mapped before it met the live entry was unmapped again.
 *
 * <p><b>Thread-safety:</b> an exception; not shared.
 */
public class AlreadyMappedException extends IllegalStateException {
    private static final long serialVersionUID = 1L;

    /** The first virtual address found mapped. */
    private final long va;

    /**
     * Creates the exception.
     *
     * @param va      the first virtual address found mapped
     * @param message what was asked
     */
    public AlreadyMappedException(long va, String message) {
        super(message);
        this.va = va;
    }

    /** {@return the first virtual address found mapped} */
    public long va() {
        return va;
    }
}
