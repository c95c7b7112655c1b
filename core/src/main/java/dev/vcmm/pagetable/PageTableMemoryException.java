package dev.vcmm.pagetable;

/**
 * The page-table memory has no block left for a new table. The operation that needed it changed nothing
 * (a map) or stopped with what it had done consistent (an unmap that needed a split).
 *
 * <p><b>Thread-safety:</b> an exception; not shared.
 */
public class PageTableMemoryException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates the exception.
     *
     * @param message names the table size asked for and the allocator
     */
    public PageTableMemoryException(String message) {
        super(message);
    }
}
