package dev.vcmm.pagetable;

/**
 * One size of leaf a format can map: a page, a block (section), or a run of identical-kind entries that
 * the hardware treats as one translation (Arm's contiguous hint, Armv7 large pages and supersections).
 *
 * <p><b>Thread-safety:</b> immutable.
 *
 * @param size    bytes mapped by the leaf
 * @param level   the table level whose entries describe it (0 = root)
 * @param entries how many consecutive entries describe one leaf: 1, or 16 for a contiguous run
 */
public record LeafSize(long size, int level, int entries) {

    /** Validates the shape. */
    public LeafSize {
        if (Long.bitCount(size) != 1 || size < 4096) {
            throw new IllegalArgumentException("size=" + size + " must be a power of two >= 4096");
        }
        if (entries < 1 || Integer.bitCount(entries) != 1) {
            throw new IllegalArgumentException("entries=" + entries + " must be a power of two >= 1");
        }
    }

    /** {@return the bytes one entry of the run spans, {@code size / entries}} */
    public long entrySpan() {
        return size / entries;
    }

    /** {@return whether this leaf is a run of several entries} */
    public boolean isRun() {
        return entries > 1;
    }

    /**
     * {@return a short name like {@code 4K}, {@code 2M}, {@code 1G}}
     *
     * @param bytes a size in bytes
     */
    public static String humanSize(long bytes) {
        if (bytes >= (1L << 30) && bytes % (1L << 30) == 0) {
            return (bytes >> 30) + "G";
        }
        if (bytes >= (1L << 20) && bytes % (1L << 20) == 0) {
            return (bytes >> 20) + "M";
        }
        if (bytes >= 1024 && bytes % 1024 == 0) {
            return (bytes >> 10) + "K";
        }
        return Long.toString(bytes);
    }

    @Override
    public String toString() {
        return humanSize(size) + "@L" + level + (entries > 1 ? "x" + entries : "");
    }
}
