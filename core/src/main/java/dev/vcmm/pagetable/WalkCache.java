package dev.vcmm.pagetable;

/**
 * The mapper's walk cache: the last-level tables of up to {@link #HINTS} recently walked spans (a span is what
 * one last-level table maps), direct-mapped by span, the entry used last probed first. A hit spares the walk
 * from the root: a one-page map or unmap then touches its one entry and nothing else.
 *
 * <p><b>Thread-safety:</b> shared by all threads without a lock. An entry is an immutable {@link Hint} written
 * and read with plain accesses, so a reader sees an old or a new one, both whole (the race is benign because
 * either answer is checked). An entry is valid while its generation equals {@link TableLifetime#generation()},
 * which every retire bumps before the memory goes back: tables disappear only by being retired, and callers on
 * disjoint ranges cannot retire a table another caller uses (its span would overlap their range), so a valid
 * entry names a live table.
 */
final class WalkCache {

    /** What {@link #table} answers on a miss: no table is at physical address -1. */
    static final long NONE = -1;

    /** Entries, a power of two: consecutive last-level spans take different entries. */
    private static final int HINTS = 8;

    /** The last-level table of span {@code key} ({@code va >>> lastTableShift}), valid in {@code generation}. */
    private record Hint(long key, long table, long generation) {
    }

    private final TableLifetime lifetime;
    private final int lastTableShift;
    // the last level's index field and the entry size, copied from the geometry: entry() is on the one-page fast
    // paths, where a chain of loads through the geometry's arrays was measurable
    private final int lastShift;
    private final long lastIndexMask;
    private final int entryBytes;
    private final Hint[] hints = new Hint[HINTS];
    /** The entry of {@link #hints} used last: probed first, one load less than the array. */
    private Hint last;

    WalkCache(TableLifetime lifetime, Geometry geometry) {
        this.lifetime = lifetime;
        this.lastTableShift = geometry.lastTableShift();
        this.lastShift = geometry.shifts()[geometry.lastLevel()];
        this.lastIndexMask = geometry.entries(geometry.lastLevel()) - 1L;
        this.entryBytes = geometry.entryBytes();
    }

    /**
     * The one-page fast paths' lookup: {@link #table} plus the offset of {@code va}'s entry.
     *
     * @return the physical address of {@code va}'s entry in the last-level table of its span, or {@link #NONE}
     */
    long entry(long va) {
        long table = table(va);
        return table == NONE ? NONE : table + ((va >>> lastShift) & lastIndexMask) * entryBytes;
    }

    /** {@return the physical address of the last-level table of {@code va}'s span, or {@link #NONE} on a miss} */
    long table(long va) {
        long key = va >>> lastTableShift;
        Hint h = last;
        if (h == null || h.key() != key) {
            h = hints[(int) key & (HINTS - 1)];
            if (h == null || h.key() != key) {
                return NONE;
            }
            last = h; // made the last used, its generation unchecked
        }
        return h.generation() == lifetime.generation() ? h.table() : NONE;
    }

    /**
     * Remembers {@code table} as the last-level table of {@code va}'s span.
     *
     * @param generation {@link TableLifetime#generation()} as read before the walk that found the table: a
     *                   retire during the walk makes the entry stale at once
     */
    void put(long va, long table, long generation) {
        long key = va >>> lastTableShift;
        Hint h = new Hint(key, table, generation);
        hints[(int) key & (HINTS - 1)] = h; // racy writes of an immutable record: readers see the old or the new
        last = h;
    }
}
