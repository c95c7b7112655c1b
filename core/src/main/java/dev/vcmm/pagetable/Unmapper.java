package dev.vcmm.pagetable;

import java.lang.invoke.VarHandle;

/**
 * The unmap half of {@link PageTable}'s generic mapper: clears the leaves of a checked range, splits the
 * leaves that stick out of it <em>hitlessly</em>, and unlinks and retires the tables whose whole span it
 * unmaps.
 *
 * <pre>
 * ends       the parts of the range in its first and last last-level span, when partial, are cleared in
 *            tables the walk cache names
 * the rest   recursive over levels from the root: a leaf wholly inside is cleared; a leaf sticking out is
 *            split (run: single entries, one store at a time; block: a fully built next-level table swapped
 *            in with one compare-and-set) and the entry read again; a last-level table whose whole span is
 *            inside is unlinked with one compare-and-set, its live entries counted, and retired
 * </pre>
 *
 * <p><b>Thread-safety:</b> as {@link PageTable#unmap}: calls on disjoint ranges may run in parallel from any
 * threads, lock-free; walks may run at any time (they see each entry old or new, and retired tables stay
 * readable until they end).
 */
final class Unmapper {

    private final PageTableFormat format;
    private final Geometry geometry;
    private final TableMemory entries;
    private final TableLifetime lifetime;
    private final WalkCache cache;
    private final long root;

    Unmapper(PageTableFormat format, Geometry geometry, TableMemory entries, TableLifetime lifetime, WalkCache cache,
             long root) {
        this.format = format;
        this.geometry = geometry;
        this.entries = entries;
        this.lifetime = lifetime;
        this.cache = cache;
        this.root = root;
    }

    /**
     * Unmaps a checked range. The parts of the range in the first and the last last-level span, when they do
     * not cover the whole span (whose table would then be freed), are cleared in tables the walk cache names;
     * the rest is walked from the root. Ends with one release fence, then reclaims if something was retired.
     *
     * @return the bytes that were mapped in the range and no longer are
     */
    long unmap(long va, long length) {
        long last = va + length - 1;
        int lastLevel = geometry.lastLevel();
        long spanMask = (1L << geometry.lastTableShift()) - 1;
        long entrySpan = geometry.entrySpan(lastLevel);
        long n = 0;
        long v = va;
        long headLast = (va | spanMask) - va < length ? va | spanMask : last; // unsigned: va | spanMask >= va
        long table = cache.table(va);
        if (table != WalkCache.NONE && ((va & spanMask) != 0 || headLast != (va | spanMask))) { // a partial first span
            n += unmapLastLevel(table, va, headLast, entrySpan);
            v = headLast + 1;
        }
        long bodyLast = last;
        if (v != va && headLast == last) {
            VarHandle.releaseFence();
            return n;
        }
        long tailStart = last & ~spanMask;
        table = cache.table(last);
        if (table != WalkCache.NONE && Long.compareUnsigned(tailStart, v) >= 0 && (last & spanMask) != spanMask) { // a partial last span
            n += unmapLastLevel(table, tailStart, last, entrySpan);
            if (tailStart == v) {
                VarHandle.releaseFence();
                return n;
            }
            bodyLast = tailStart - 1;
        }
        n += unmapLevel(0, root, v, bodyLast);
        VarHandle.releaseFence();
        if (lifetime.hasRetired()) {
            lifetime.reclaim(); // what this call retired, and what earlier walks held back
        }
        return n;
    }

    /** Unmaps {@code [va, last]} (inclusive, unsigned) inside the span of {@code table} at {@code level}. */
    private long unmapLevel(int level, long table, long va, long last) {
        final long span = geometry.entrySpan(level);
        final int lastLevel = geometry.lastLevel();
        if (level == lastLevel) {
            return unmapLastLevel(table, va, last, span);
        }
        final int entryBytes = geometry.entryBytes();
        long total = 0;
        long v = va;
        for (;;) {
            long address = table + (long) geometry.index(v, level) * entryBytes;
            long entryStart = v & -span;
            long entryLast = entryStart + span - 1;
            long segLast = Long.compareUnsigned(last, entryLast) < 0 ? last : entryLast;
            long raw = entries.la(address);
            if (raw != 0) {
                if (format.isTable(level, raw)) {
                    long next = format.tableAddress(level, raw);
                    boolean whole = v == entryStart && segLast == entryLast;
                    if (whole && level + 1 == lastLevel && lifetime.mayRetire()) {
                        // a whole last-level table: out with one CAS (a walker sees all of it or none of it),
                        // then count what it mapped and retire it; no need to clear it, tables are zeroed when
                        // allocated, and a walk that read the pointer before the CAS may still read it
                        if (!entries.cas(address, raw, 0)) {
                            continue; // changed under us (an overlapping call): read it again
                        }
                        total += entries.countNonZero(next, geometry.entries(lastLevel)) * geometry.entrySpan(lastLevel);
                        lifetime.retire(next, level + 1);
                    } else {
                        total += unmapLevel(level + 1, next, v, segLast);
                        if (whole && lifetime.mayRetire() && entries.cas(address, raw, 0)) {
                            lifetime.retire(next, level + 1); // its whole span is unmapped: give the table back after the walks
                        }
                    }
                } else if (format.decode(level, raw, v) instanceof Descriptor.Leaf leaf) {
                    long leafSize = leaf.leaf().size();
                    long leafStart = v & -leafSize;
                    long leafLast = leafStart + leafSize - 1;
                    if (Long.compareUnsigned(leafStart, va) >= 0 && Long.compareUnsigned(leafLast, last) <= 0) {
                        long first = table + (long) geometry.index(leafStart, level) * entryBytes;
                        for (int j = 0; j < leaf.leaf().entries(); j++) {
                            entries.sp(first + (long) j * entryBytes, 0);
                        }
                        total += leafSize;
                        segLast = leafLast;
                    } else {
                        split(level, table, address, raw, v, leaf);
                        continue; // re-read the entry: now smaller leaves or a table
                    }
                }
            }
            if (segLast == last) {
                return total;
            }
            v = segLast + 1;
        }
    }

    /**
     * The last level, where every valid entry maps exactly one entry span: a run cut by either end of the
     * range is split first, then the entries are cleared in one pass that counts what was mapped.
     */
    private long unmapLastLevel(long table, long va, long last, long span) {
        splitRunAt(table, va, va, last);
        splitRunAt(table, last, va, last);
        int n = (int) ((last - va) >>> Long.numberOfTrailingZeros(span)) + 1;
        long address = table + (long) geometry.index(va, geometry.lastLevel()) * geometry.entryBytes();
        return entries.clear(address, n) * span;
    }

    /** Splits the last-level run holding {@code v}, if there is one and it sticks out of {@code [va, last]}. */
    private void splitRunAt(long table, long v, long va, long last) {
        LeafSize run = geometry.lastLevelRun();
        if (run == null) {
            return; // no runs of entries at this format's last level
        }
        int level = geometry.lastLevel();
        long address = table + (long) geometry.index(v, level) * geometry.entryBytes();
        long raw = entries.la(address);
        if (raw != 0 && format.isRunEntry(level, raw)) {
            long leafStart = v & -run.size();
            long leafLast = leafStart + run.size() - 1;
            if ((Long.compareUnsigned(leafStart, va) < 0 || Long.compareUnsigned(leafLast, last) > 0)
                && format.decode(level, raw, v) instanceof Descriptor.Leaf leaf && leaf.leaf().isRun()) {
                split(level, table, address, raw, v, leaf); // decoded only when it must be split
            }
        }
    }

    /**
     * Splits the leaf that maps {@code v} into smaller leaves with the same translation, hitlessly:
     * a run becomes single entries one store at a time (each store keeps its own span's translation); a
     * block is replaced by a fully built next-level table with one compare-and-set.
     */
    void split(int level, long table, long address, long raw, long v, Descriptor.Leaf leaf) {
        final int entryBytes = geometry.entryBytes();
        LeafSize ls = leaf.leaf();
        long leafStart = v & -ls.size();
        long leafPa = leaf.pa() - (v - leafStart);
        // a writable-clean leaf decodes without write on some formats: keep the permission it was mapped with (the
        // pieces are written dirty, so a tracker reports them once more and loses nothing)
        Attributes a = DirtyBits.mappedAttributes(format, raw, leaf.attributes());
        if (ls.isRun()) {
            LeafSize single = geometry.single(level, ls.entrySpan());
            long first = table + (long) geometry.index(leafStart, level) * entryBytes;
            for (int j = 0; j < ls.entries(); j++) {
                entries.so(first + (long) j * entryBytes, format.leafEntry(single, leafPa + j * single.size(), 0, a));
            }
            return;
        }
        int next = level + 1;
        LeafSize sub = geometry.splitInto(next, ls);
        long fresh = lifetime.alloc(next);
        int count = (int) (ls.size() / sub.size());
        long e0 = format.leafEntry(sub, leafPa, 0, a);
        long at = fresh;
        for (int i = 0; i < count; i++) {
            for (int j = 0; j < sub.entries(); j++, at += entryBytes) {
                entries.sp(at, i == 0 && j == 0 ? e0 : format.leafEntry(sub, leafPa + i * sub.size(), j, a));
            }
        }
        if (!entries.cas(address, raw, lifetime.tableEntryOrFree(level, fresh))) { // release: the filled table is visible first
            lifetime.freeUnpublished(fresh, next); // another thread split it first: no one saw ours
        }
    }
}
