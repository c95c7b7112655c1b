package dev.vcmm.pagetable;

/**
 * The replace half of {@link PageTable}'s generic mapper: points every page of a checked range at a new output
 * address, <em>hitlessly</em>, whatever was mapped there (a page, part of a block or run, or nothing).
 *
 * <pre>
 * per page   walk from the root: a missing table is created (the map's walkCreate); a block or a run holding
 *            the page is split first (the unmap's hitless split: a fully built table swapped in with one
 *            compare-and-set, a run rewritten one entry at a time with the same translation); then the page's
 *            entry is written with one release store, old translation to new in one step
 * </pre>
 * The replaced range is mapped with the smallest pages (a remap never builds blocks); the rest of a split block keeps
 * its translation throughout, in smaller leaves. Overwriting a live entry with a new output address is what x86-64
 * and VT-d allow; Arm requires break-before-make for it, so this models an IOMMU that translates each transaction
 * through either the old or the new entry.
 *
 * <p><b>Thread-safety:</b> as {@link PageTable#map}: calls on disjoint ranges may run in parallel from any threads,
 * lock-free; walks may run at any time and see each page's entry old or new, never empty.
 */
final class Remapper {

    private final PageTableFormat format;
    private final Geometry geometry;
    private final TableMemory entries;
    private final Mapper mapper;
    private final Unmapper unmapper;
    private final long root;

    Remapper(PageTableFormat format, Geometry geometry, TableMemory entries, Mapper mapper, Unmapper unmapper, long root) {
        this.format = format;
        this.geometry = geometry;
        this.entries = entries;
        this.mapper = mapper;
        this.unmapper = unmapper;
        this.root = root;
    }

    /** Points the pages of a checked range {@code [va, va + length)} at {@code [pa, pa + length)}. */
    void remap(long va, long pa, long length, Attributes attributes) {
        LeafSize page = geometry.page();
        long size = page.size();
        for (long off = 0; off < length; off += size) {
            remapPage(va + off, format.leafEntry(page, pa + off, 0, attributes));
        }
    }

    private void remapPage(long v, long entry) {
        final int lastLevel = geometry.lastLevel();
        final int entryBytes = geometry.entryBytes();
        restart:
        for (;;) {
            long table = root;
            for (int level = 0; ; level++) {
                long address = table + (long) geometry.index(v, level) * entryBytes;
                long raw = entries.la(address);
                if (level == lastLevel) {
                    if (raw != 0 && geometry.lastLevelRun() != null && format.isRunEntry(level, raw)
                        && format.decode(level, raw, v) instanceof Descriptor.Leaf leaf && leaf.leaf().isRun()) {
                        unmapper.split(level, table, address, raw, v, leaf); // the run's pages keep their translation
                        continue restart;
                    }
                    entries.so(address, entry); // release: the new translation replaces the old in one store
                    return;
                }
                if (raw == 0) {
                    mapper.walkCreate(v, lastLevel); // nothing mapped on the way down: create the tables
                    continue restart;
                }
                if (format.isTable(level, raw)) {
                    table = format.tableAddress(level, raw);
                    continue;
                }
                switch (format.decode(level, raw, v)) {
                    case Descriptor.Table t -> table = t.tablePa();
                    case Descriptor.Leaf leaf -> {
                        unmapper.split(level, table, address, raw, v, leaf); // hitless: the block's other pages stay
                        continue restart;
                    }
                    case Descriptor.Invalid invalid -> throw new IllegalStateException(format.name()
                        + ": corrupt entry 0x" + Long.toHexString(raw) + " at level " + level + ": " + invalid.why());
                }
            }
        }
    }
}
