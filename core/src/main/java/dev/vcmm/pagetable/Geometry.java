package dev.vcmm.pagetable;

import java.util.Arrays;

/**
 * The shape of one format's tables, as the mapper needs it: derived from a {@link PageTableFormat} once, when
 * a {@link PageTable} is created, so that the mapper's loops read fields of one final class instead of asking
 * the format through its interface for every entry.
 *
 * <p><b>Thread-safety:</b> immutable: the arrays are copied in and out and never written after construction;
 * shared freely.
 *
 * <p>Levels count from 0 at the root, as in {@link PageTableFormat}. Per level {@code l}:
 * <pre>
 *   va:  ... | index at level l  | index at level l + 1 | ... | offset |
 *            ^ shifts[l] + bits[l] ^ shifts[l]
 *   entries(l) = 1 &lt;&lt; bits[l]     entrySpan(l) = 1 &lt;&lt; shifts[l]
 *   index(va, l) = (va &gt;&gt;&gt; shifts[l]) &amp; (entries(l) - 1)
 * </pre>
 * The per-level values are arrays, not lists, because {@link #index} runs for every level of every walk the
 * mapper makes: one bounds-checked load each. They never leave this class: the accessors return copies, and
 * {@link #equals}, {@link #hashCode} and {@link #toString} compare and print their contents.
 *
 * @param name         the format's name, for messages
 * @param levels       the number of levels of tables
 * @param entryBytes   the size of one entry: 4 or 8 bytes
 * @param shifts       per level, the lowest virtual-address bit that indexes its tables
 * @param bits         per level, the number of virtual-address bits that index its tables
 * @param tableBytes   per level, the bytes to allocate for one table ({@link PageTableFormat#tableBytes})
 * @param leaves       the leaf sizes, largest first; the last is the smallest, the page
 * @param lastLevelRun the run leaf of the last level (arm64's 64 KiB contiguous run, armv7's large page), or
 *                     null if the last level has none
 * @param onePageFast  whether the one-page fast paths apply: the smallest leaf is one entry of a last-level
 *                     table (true of every format here)
 */
record Geometry(String name, int levels, int entryBytes, int[] shifts, int[] bits, long[] tableBytes,
                LeafSize[] leaves, LeafSize lastLevelRun, boolean onePageFast) {

    /** Copies the arrays: a geometry does not change under its users. */
    Geometry {
        shifts = shifts.clone();
        bits = bits.clone();
        tableBytes = tableBytes.clone();
        leaves = leaves.clone();
        if (shifts.length != levels || bits.length != levels || tableBytes.length != levels || leaves.length == 0) {
            throw new IllegalArgumentException(name + ": per-level arrays must have levels=" + levels
                + " entries and there must be a leaf");
        }
    }

    /**
     * Derives the geometry of {@code format}.
     *
     * @param format the format
     * @return its geometry
     * @throws IllegalArgumentException if the format has more than one run size at its last level (the mapper
     *                                  splits a last-level run by one size)
     */
    static Geometry of(PageTableFormat format) {
        int levels = format.levels();
        int[] shifts = new int[levels];
        int[] bits = new int[levels];
        long[] tableBytes = new long[levels];
        for (int level = 0; level < levels; level++) {
            shifts[level] = format.levelShift(level);
            bits[level] = format.levelBits(level);
            tableBytes[level] = format.tableBytes(level);
        }
        LeafSize[] leaves = format.leafSizes().toArray(new LeafSize[0]);
        LeafSize page = leaves[leaves.length - 1];
        LeafSize[] runs = Arrays.stream(leaves).filter(l -> l.isRun() && l.level() == levels - 1).toArray(LeafSize[]::new);
        if (runs.length > 1) {
            throw new IllegalArgumentException(format.name() + ": more than one run size at the last level");
        }
        return new Geometry(format.name(), levels, format.entryBytes(), shifts, bits, tableBytes, leaves,
            runs.length == 0 ? null : runs[0], page.level() == levels - 1 && page.entries() == 1);
    }

    /** {@return a copy of the per-level shifts} */
    @Override
    public int[] shifts() {
        return shifts.clone();
    }

    /** {@return a copy of the per-level index widths} */
    @Override
    public int[] bits() {
        return bits.clone();
    }

    /** {@return a copy of the per-level table sizes} */
    @Override
    public long[] tableBytes() {
        return tableBytes.clone();
    }

    /** {@return a copy of the leaf sizes, largest first} */
    @Override
    public LeafSize[] leaves() {
        return leaves.clone();
    }

    /** {@return the smallest leaf} */
    LeafSize page() {
        return leaves[leaves.length - 1];
    }

    /** {@return the level of the last-level tables, {@code levels - 1}} */
    int lastLevel() {
        return levels - 1;
    }

    /** {@return the first virtual-address bit above a last-level table's span: its span is {@code 2^lastTableShift}} */
    int lastTableShift() {
        return shifts[levels - 1] + bits[levels - 1];
    }

    /** {@return the index of {@code va}'s entry in a table of {@code level}} */
    int index(long va, int level) {
        return (int) ((va >>> shifts[level]) & ((1L << bits[level]) - 1));
    }

    /** {@return the bytes one entry of {@code level} spans} */
    long entrySpan(int level) {
        return 1L << shifts[level];
    }

    /** {@return the entries a walk may index in a table of {@code level}} */
    int entries(int level) {
        return 1 << bits[level];
    }

    /** {@return the bytes to allocate for a table of {@code level}} */
    long tableBytes(int level) {
        return tableBytes[level];
    }

    /** {@return the number of leaf sizes} */
    int leafCount() {
        return leaves.length;
    }

    /** {@return the {@code i}-th leaf size, largest first} */
    LeafSize leaf(int i) {
        return leaves[i];
    }

    /** {@return the largest leaf that the alignment of {@code v} and {@code p} and the remaining {@code rem} allow} */
    LeafSize pick(long v, long p, long rem) {
        for (LeafSize l : leaves) {
            if (((v | p) & (l.size() - 1)) == 0 && rem >= l.size()) {
                return l;
            }
        }
        throw new AssertionError("no leaf fits; checked alignment to the smallest leaf before");
    }

    /** {@return the single-entry leaf of {@code size} bytes at {@code level}: what one entry of a run there maps} */
    LeafSize single(int level, long size) {
        for (LeafSize l : leaves) {
            if (l.level() == level && l.size() == size && !l.isRun()) {
                return l;
            }
        }
        throw new AssertionError(name + ": no single-entry leaf of " + size + " bytes at level " + level);
    }

    /** {@return the largest leaf at {@code level} no larger than {@code block}: what a block one level up splits into} */
    LeafSize splitInto(int level, LeafSize block) {
        for (LeafSize l : leaves) {
            if (l.level() == level && l.size() <= block.size()) {
                return l;
            }
        }
        throw new AssertionError(name + ": no leaf at level " + level + " to split " + block + " into");
    }

    /** {@return whether {@code o} is a geometry with the same name, values and contents of every array} */
    @Override
    public boolean equals(Object o) {
        return o instanceof Geometry g && name.equals(g.name) && levels == g.levels && entryBytes == g.entryBytes
            && Arrays.equals(shifts, g.shifts) && Arrays.equals(bits, g.bits) && Arrays.equals(tableBytes, g.tableBytes)
            && Arrays.equals(leaves, g.leaves) && java.util.Objects.equals(lastLevelRun, g.lastLevelRun)
            && onePageFast == g.onePageFast;
    }

    /** {@return a hash of the contents, consistent with {@link #equals}} */
    @Override
    public int hashCode() {
        return java.util.Objects.hash(name, levels, entryBytes, Arrays.hashCode(shifts), Arrays.hashCode(bits),
            Arrays.hashCode(tableBytes), Arrays.hashCode(leaves), lastLevelRun, onePageFast);
    }

    /** {@return the values and the arrays' contents} */
    @Override
    public String toString() {
        return "Geometry[" + name + ", levels=" + levels + ", entryBytes=" + entryBytes + ", shifts="
            + Arrays.toString(shifts) + ", bits=" + Arrays.toString(bits) + ", tableBytes=" + Arrays.toString(tableBytes)
            + ", leaves=" + Arrays.toString(leaves) + ", lastLevelRun=" + lastLevelRun + ", onePageFast=" + onePageFast + ']';
    }
}
