package dev.vcmm.pagetable;

/**
 * Receives the dirty ranges {@link PageTable#readDirty} finds.
 *
 * <p><b>Thread-safety:</b> called on the scanning thread only, in address order.
 */
@FunctionalInterface
public interface DirtyVisitor {

    /**
     * A dirty leaf, or the part of it inside the scanned range: a block or a contiguous run is reported whole
     * (clipped to the range) when any of its entries is dirty.
     *
     * @param va     the first input address of the dirty range
     * @param length its bytes, a positive multiple of the table's smallest leaf
     */
    void dirty(long va, long length);
}
