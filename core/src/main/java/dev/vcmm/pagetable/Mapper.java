package dev.vcmm.pagetable;

/**
 * The map half of {@link PageTable}'s generic mapper: writes the leaves of a checked range one batch at a
 * time, creating the tables on the way.
 *
 * <pre>
 * mapBatch   pick the largest leaf that (va | pa) alignment and the remaining length allow, and how many of
 *            them fit in one table before a larger leaf becomes possible
 * walk       the walk cache, or descend from the root; a missing table is allocated, zeroed, and installed
 *            with compare-and-set (release); the loser frees its table
 * write      one bulk check that the entries are empty (skipped in a table this call created), then one
 *            bulk run of plain stores; an empty subtree of tables left by partial unmaps is replaced by
 *            the leaf (compare-and-set) and retired
 * </pre>
 *
 * <p><b>Thread-safety:</b> as {@link PageTable#map}: calls on disjoint ranges may run in parallel from any
 * threads, lock-free. Leaves are written with plain stores; the caller publishes them with one release fence.
 */
final class Mapper {

    /** Tag of {@link #walkCreate}'s result: the table was created by this walk (tables are 1 KiB aligned). */
    static final long FRESH = 1;

    private final PageTableFormat format;
    private final Geometry geometry;
    private final TableMemory entries;
    private final TableLifetime lifetime;
    private final WalkCache cache;
    private final long root;

    Mapper(PageTableFormat format, Geometry geometry, TableMemory entries, TableLifetime lifetime, WalkCache cache,
           long root) {
        this.format = format;
        this.geometry = geometry;
        this.entries = entries;
        this.lifetime = lifetime;
        this.cache = cache;
        this.root = root;
    }

    /**
     * Maps as many leaves of one size as fit in one table without passing a point where a larger leaf fits.
     *
     * @return the bytes mapped, at least the smallest leaf
     */
    long mapBatch(long v, long p, long rem, Attributes attributes) {
        LeafSize leaf = geometry.pick(v, p, rem);
        int level = leaf.level();
        long size = leaf.size();
        int idx = geometry.index(v, level);
        int tableEntries = geometry.entries(level);
        int sizeShift = Long.numberOfTrailingZeros(size); // sizes are powers of two: shift, never divide
        long count = Math.min(rem >>> sizeShift, (tableEntries - idx) >>> Integer.numberOfTrailingZeros(leaf.entries()));
        for (int i = 0, leaves = geometry.leafCount(); i < leaves; i++) {
            long b = geometry.leaf(i).size();
            if (b <= size) {
                break;
            }
            long toBoundary = (-v) & (b - 1);
            if (((v ^ p) & (b - 1)) == 0 && toBoundary != 0 && rem - toBoundary >= b) {
                count = Math.min(count, toBoundary >>> sizeShift);
            }
        }
        // encode the batch's ends before creating tables: a leaf the format refuses (armv7-short: a pa at or
        // above 4 GiB in anything but a supersection) then leaves no empty table behind
        long first = format.leafEntry(leaf, p, 0, attributes);
        long last = count == 1 ? first : format.leafEntry(leaf, p + (count - 1) * size, 0, attributes);
        long tagged = level == geometry.lastLevel() ? lastLevelTable(v) : walkCreate(v, level);
        writeLeaves(tagged & ~FRESH, level, idx, leaf, v, p, (int) count, attributes, (tagged & FRESH) != 0, first, last);
        return count * size;
    }

    /**
     * {@return the last-level table holding {@code v}, from the walk cache or by walking (and creating), with
     * {@link #FRESH} set if this call created it}
     */
    private long lastLevelTable(long v) {
        long table = cache.table(v);
        if (table != WalkCache.NONE) {
            return table;
        }
        long gen = lifetime.generation(); // read before the walk: a retire during it makes the new entry stale at once
        long tagged = walkCreate(v, geometry.lastLevel());
        cache.put(v, tagged & ~FRESH, gen);
        return tagged;
    }

    /**
     * {@return the table at {@code targetLevel} that holds {@code v}, creating the tables on the way, with
     * {@link #FRESH} set if this call created the table it returns}
     */
    long walkCreate(long v, int targetLevel) {
        // the rare branches (install a table, decode what is not a table) are methods of their own: this loop
        // stays small enough for the JIT to inline into mapBatch
        final int entryBytes = geometry.entryBytes();
        long table = root;
        for (int level = 0; level < targetLevel; level++) {
            long address = table + (long) geometry.index(v, level) * entryBytes;
            long raw = entries.la(address);
            if (raw == 0) {
                long fresh = install(address, level);
                if (fresh != 0) {
                    table = fresh;
                    if (level + 1 == targetLevel) {
                        return fresh | FRESH;
                    }
                    continue;
                }
                raw = entries.la(address); // lost the race: use the winner's table
            }
            table = format.isTable(level, raw) ? format.tableAddress(level, raw) : nextTable(level, raw, v);
        }
        return table;
    }

    /**
     * Installs a new zeroed table of {@code level + 1} in the empty entry at {@code address}, by compare-and-set.
     *
     * @return the new table, or 0 if another thread installed one first (this one is freed: no one saw it)
     */
    private long install(long address, int level) {
        long fresh = lifetime.alloc(level + 1);
        if (entries.cas(address, 0, lifetime.tableEntryOrFree(level, fresh))) { // release: the zeroed table is visible first
            return fresh;
        }
        lifetime.freeUnpublished(fresh, level + 1);
        return 0;
    }

    /**
     * Decodes a non-zero entry that {@link PageTableFormat#isTable} refused: a leaf (the range is already mapped)
     * or a corrupt entry, both thrown; a table descriptor the fast test missed is followed.
     *
     * @return the next-level table
     */
    private long nextTable(int level, long raw, long v) {
        return switch (format.decode(level, raw, v)) {
            case Descriptor.Table t -> t.tablePa();
            case Descriptor.Leaf leaf -> throw alreadyMapped(v, "a " + leaf.leaf() + " leaf maps it");
            case Descriptor.Invalid invalid -> throw new IllegalStateException(format.name()
                + ": corrupt entry 0x" + Long.toHexString(raw) + " at level " + level + ": " + invalid.why());
        };
    }

    /** Writes a batch of leaves into {@code table}; {@code fresh}: this call created the table, so the batch's entries are zero. */
    private void writeLeaves(long table, int level, int idx, LeafSize leaf, long v, long p, int count, Attributes a,
                             boolean fresh, long e0, long eLast) {
        final int entryBytes = geometry.entryBytes();
        final boolean wide = entries.wide();
        final int perLeaf = leaf.entries();
        final int n = count * perLeaf;
        final long span = geometry.entrySpan(level);
        final long size = leaf.size();
        boolean emptyTables = false;
        final long firstAddress = table + (long) idx * entryBytes;
        final long leafStep = count > 1 ? format.leafEntry(leaf, p + size, 0, a) - e0 : 0;
        final long entryStep = perLeaf > 1 ? format.leafEntry(leaf, p, 1, a) - e0 : 0;
        final boolean linear = (count <= 2 || eLast == e0 + (count - 1) * leafStep)
            && (perLeaf <= 2 || format.leafEntry(leaf, p, perLeaf - 1, a) == e0 + (perLeaf - 1) * entryStep);
        // one arithmetic sequence over the whole batch: pages, or runs that continue one another (arm64's
        // contiguous runs; not armv7's large pages, whose 16 entries repeat one address)
        final boolean oneSequence = linear && (perLeaf == 1 || count == 1 || leafStep == perLeaf * entryStep);
        final long step = perLeaf == 1 ? leafStep : entryStep;
        if (wide && n > 1 && !fresh && oneSequence) { // check and store in one pass
            int stopped = entries.spLongRunIfZero(firstAddress, n, e0, step);
            if (stopped < 0) {
                return;
            }
            if (stopped > 0) {
                entries.clear(firstAddress, stopped); // they were zero: put them back before the careful path
            }
        }
        int k0 = fresh ? -1 : entries.findNonZero(firstAddress, n);
        for (int k = Math.max(k0, 0); k0 >= 0 && k < n; k++) { // conflicts are found before anything is written
            long raw = entries.lp(table + (long) (idx + k) * entryBytes);
            if (raw != 0) {
                if (level < geometry.lastLevel() && format.decode(level, raw, v + k * span) instanceof Descriptor.Table t
                    && isEmpty(t.tablePa(), level + 1)) {
                    emptyTables = true; // an empty table left by partial unmaps: the leaf replaces it
                } else {
                    throw alreadyMapped(v + k * span, "entry 0x" + Long.toHexString(raw) + " at level " + level);
                }
            }
        }
        if (linear && !emptyTables) {
            if (oneSequence) {
                entries.spRun(firstAddress, n, e0, step);
            } else {
                for (int i = 0; i < count; i++) {
                    entries.spRun(firstAddress + (long) i * perLeaf * entryBytes, perLeaf, e0 + i * leafStep, entryStep);
                }
            }
            return;
        }
        long address = firstAddress;
        for (int i = 0; i < count; i++) {
            long base = e0 + i * leafStep;
            for (int j = 0; j < perLeaf; j++, address += entryBytes) {
                long value = linear ? base + j * entryStep : format.leafEntry(leaf, p + i * size, j, a);
                if (emptyTables) {
                    long raw = entries.lp(address);
                    if (raw != 0 && format.decode(level, raw, v) instanceof Descriptor.Table t) {
                        if (entries.cas(address, raw, value)) {
                            lifetime.retireSubtree(level + 1, t.tablePa()); // unlinked by the CAS: walks may still be in it
                        }
                        continue;
                    }
                }
                entries.sp(address, value);
            }
        }
    }

    /** {@return whether the table maps nothing: every entry is zero or points at a table that maps nothing} */
    private boolean isEmpty(long table, int level) {
        int n = geometry.entries(level);
        int entryBytes = geometry.entryBytes();
        for (int i = 0; i < n; i++) {
            long raw = entries.lp(table + (long) i * entryBytes);
            if (raw != 0 && !(level < geometry.lastLevel() && format.isTable(level, raw)
                && isEmpty(format.tableAddress(level, raw), level + 1))) {
                return false;
            }
        }
        return true;
    }

    private AlreadyMappedException alreadyMapped(long v, String what) {
        return new AlreadyMappedException(v, format.name() + ": va=0x" + Long.toHexString(v) + " is already mapped (" + what + ")");
    }
}
