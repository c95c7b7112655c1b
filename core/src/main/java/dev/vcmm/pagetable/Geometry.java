package dev.vcmm.pagetable;

import java.util.ArrayList;
import java.util.List;

/**
 * The shape of one format's tables, as the mapper needs it: derived from a {@link PageTableFormat} once, when
 * a {@link PageTable} is created, so that the mapper's loops read fields instead of asking the format
 * through its interface again for every entry.
 *
 * <p><b>Thread-safety:</b> immutable (its lists are unmodifiable); shared freely.
 *
 * <p>Levels count from 0 at the root, as in {@link PageTableFormat}. Per level:
 * <pre>
 *   va:  ... | index at level l (bits) | index at level l + 1 | ... | offset |
 *            ^ shift(l) + bits(l)      ^ shift(l)
 *   entries(l) = 1 &lt;&lt; bits(l)     span(l) = 1 &lt;&lt; shift(l)     index(va, l) = (va &gt;&gt;&gt; shift(l)) &amp; (entries(l) - 1)
 * </pre>
 *
 * @param name           the format's name, for messages
 * @param levels         the number of levels of tables
 * @param entryBytes     the size of one entry: 4 or 8 bytes
 * @param perLevel       the index field and table size of each level, root first
 * @param leaves         the leaf sizes, largest first
 * @param page           the smallest leaf (the last of {@code leaves})
 * @param lastLevelRun   the run leaf of the last level (arm64's 64 KiB contiguous run, armv7's large page), or
 *                       null if the last level has none
 * @param onePageFast    whether the one-page fast paths apply: the smallest leaf is one entry of a last-level
 *                       table (true of every format here)
 */
record Geometry(String name, int levels, int entryBytes, List<Level> perLevel, List<LeafSize> leaves,
                LeafSize page, LeafSize lastLevelRun, boolean onePageFast) {

    /**
     * The index field of one level and the memory its tables take.
     *
     * @param shift      the lowest virtual-address bit that indexes tables of this level
     * @param bits       the number of virtual-address bits that index them
     * @param tableBytes the bytes to allocate for one table ({@link PageTableFormat#tableBytes})
     */
    record Level(int shift, int bits, long tableBytes) {

        /** {@return the entries a walk may index: {@code 2^bits}} */
        int entries() {
            return 1 << bits;
        }

        /** {@return the bytes one entry spans: {@code 2^shift}} */
        long span() {
            return 1L << shift;
        }

        /** {@return the index of {@code va}'s entry in a table of this level} */
        int index(long va) {
            return (int) ((va >>> shift) & ((1L << bits) - 1));
        }
    }

    /** Copies the lists: a geometry does not change under its users. */
    Geometry {
        perLevel = List.copyOf(perLevel);
        leaves = List.copyOf(leaves);
    }

    /**
     * Derives the geometry of {@code format}.
     *
     * @throws IllegalArgumentException if the format has more than one run size at its last level (the mapper
     *                                  splits a last-level run by one size)
     */
    static Geometry of(PageTableFormat format) {
        int levels = format.levels();
        List<Level> perLevel = new ArrayList<>(levels);
        for (int level = 0; level < levels; level++) {
            perLevel.add(new Level(format.levelShift(level), format.levelBits(level), format.tableBytes(level)));
        }
        List<LeafSize> leaves = format.leafSizes();
        LeafSize page = leaves.getLast();
        List<LeafSize> runs = leaves.stream().filter(l -> l.isRun() && l.level() == levels - 1).toList();
        if (runs.size() > 1) {
            throw new IllegalArgumentException(format.name() + ": more than one run size at the last level");
        }
        return new Geometry(format.name(), levels, format.entryBytes(), perLevel, leaves, page,
            runs.isEmpty() ? null : runs.getFirst(), page.level() == levels - 1 && page.entries() == 1);
    }

    /** {@return whether entries are 64-bit words (else 32-bit)} */
    boolean wide() {
        return entryBytes == 8;
    }

    /** {@return the level of the last-level tables, {@code levels - 1}} */
    int lastLevel() {
        return levels - 1;
    }

    /** {@return the first virtual-address bit above a last-level table's span: its span is {@code 2^lastTableShift}} */
    int lastTableShift() {
        Level last = perLevel.get(levels - 1);
        return last.shift() + last.bits();
    }

    /** {@return the level's index field and table size} */
    Level level(int level) {
        return perLevel.get(level);
    }

    /** {@return the index of {@code va}'s entry in a table of {@code level}} */
    int index(long va, int level) {
        return perLevel.get(level).index(va);
    }

    /** {@return the bytes one entry of {@code level} spans} */
    long entrySpan(int level) {
        return perLevel.get(level).span();
    }

    /** {@return the entries a walk may index in a table of {@code level}} */
    int entries(int level) {
        return perLevel.get(level).entries();
    }

    /** {@return the bytes to allocate for a table of {@code level}} */
    long tableBytes(int level) {
        return perLevel.get(level).tableBytes();
    }

    /** {@return the largest leaf that the alignment of {@code v} and {@code p} and the remaining {@code rem} allow} */
    LeafSize pick(long v, long p, long rem) {
        for (int i = 0, n = leaves.size(); i < n; i++) {
            LeafSize l = leaves.get(i);
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
}
