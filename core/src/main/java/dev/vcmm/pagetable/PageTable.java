package dev.vcmm.pagetable;

import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.PhysicalMemory;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.Objects;

/**
 * A page table of one {@link PageTableFormat}, living in simulated physical memory: the generic mapper.
 * Tables are allocated from a page-table memory through a {@link BlockAllocator}; descriptors are encoded
 * by the format, so the memory holds exactly what hardware would walk from {@link #root()}.
 *
 * <p><b>Thread-safety:</b> {@link #walk} and {@link #translate} are lock-free and may run from any
 * threads at any time, including while the table is mapped, unmapped or closed. {@link #map} and
 * {@link #unmap} of <em>disjoint</em> ranges may run in parallel from any threads; they are lock-free and
 * never wait for walks: a new table is zeroed, then installed with one compare-and-set (the thread that
 * loses the race frees its table at once: no one else ever saw it); a block being split is replaced by a
 * fully built table with one compare-and-set; a table whose span is unmapped is unlinked with one
 * compare-and-set and <em>retired</em>, and its memory goes back to the allocator only after every walk
 * that could have read the pointer to it has ended (an epoch grace period, see "Table reclamation" in
 * {@code docs/architecture.md}). Leaf entries of a range belong to the one caller mapping it and are
 * written with plain stores followed by one release fence. The walk cache (the last-level tables of recent
 * spans) is shared by all threads without a lock: its entries are immutable and checked against a
 * generation that every retire bumps first. Calls on <em>overlapping</em> ranges at the same time are a
 * caller error with no defined outcome beyond this: every entry is written whole (no torn descriptor) and
 * no table is freed twice.
 *
 * <p>What is <em>not</em> lock-free, exactly: {@link #close()} must not race with {@code map} or
 * {@code unmap} (it may race with walks, which then fault); the table allocator's slab of sub-page tables
 * (Armv7's 1 KiB tables) locks one {@link java.util.concurrent.ConcurrentHashMap} bin when it takes a new
 * slab page; and the {@link BlockAllocator} underneath is whatever the memory type provides (lock-free for
 * the FFM backend's buddy). Nothing in this class spins or blocks on another thread.
 *
 * <p><b>Walk after close:</b> a walk that starts after {@link #close()}, or overlaps it, returns a
 * {@link WalkResult.PageFault} with reason {@link FaultReason#TRANSLATION} whose detail says the table is
 * closed; it never reads freed table memory, so it never answers another table's mapping, even when a new
 * table has been made from the same page-table memory. A walk that ended before close began answered from
 * the live table.
 *
 * <p><b>Retired memory:</b> retired tables wait on a lock-free list until the walks that could see them have
 * ended; whoever comes next reclaims them (a later map, unmap or close, or the walk that leaves last), with
 * one scan of the walk announcements and no waiting. The list is bounded: past {@link #RETIRED_LIMIT}
 * bytes an unmap leaves the tables of spans it empties linked and empty (reused by later maps, freed by a
 * later unmap or by close) instead of retiring them, so a walk stalled for ever holds back at most that
 * much, plus what one map of a block over empty tables retires.
 *
 * <p><b>Speed:</b> a one-page map or unmap whose table is in the walk cache reads and writes its one entry
 * and nothing else (about 8 ns for map + unmap on the benchmark machine); longer ranges cost about a
 * load and a store per entry. See {@code docs/architecture.md}.
 *
 * <p>Semantics follow Linux io-pgtable: {@code map} uses the largest leaf (block, page, or contiguous run)
 * that the alignment of {@code va} and {@code pa} and the remaining length allow, and fails with
 * {@link AlreadyMappedException} over a live entry; {@code unmap} returns the bytes it unmapped, splits a
 * partially unmapped block <em>hitlessly</em> (the replacement table is filled first and swapped in with one
 * atomic store, so the part that stays mapped never disappears) and frees a table whose whole span it
 * unmaps.
 */
public final class PageTable implements AutoCloseable {

    // The parts, each in its own package-private class: Geometry (the format's shape, derived once),
    // TableMemory (descriptor words by access mode), TableLifetime (allocation, walk announcements, retire and
    // reclaim), WalkCache (last-level tables of recent spans), Mapper and Unmapper (the two halves of the
    // generic mapper). This class checks the arguments, runs the one-page fast paths (kept here, small, so
    // that the JIT inlines them into the caller) and hands the rest over.

    private static final VarHandle CLOSED;

    static {
        try {
            CLOSED = MethodHandles.lookup().findVarHandle(PageTable.class, "closed", boolean.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    /**
     * Bytes of retired tables past which an unmap stops unlinking the tables of spans it empties (it clears
     * their entries and leaves them linked): the bound on memory a stalled walk can hold back.
     */
    public static final long RETIRED_LIMIT = 1L << 20;

    private final PageTableFormat format;
    private final PhysicalMemory memory;
    private final Geometry geometry;
    private final TableMemory entries;
    private final TableLifetime lifetime;
    private final WalkCache cache;
    private final Mapper mapper;
    private final Unmapper unmapper;
    private final Remapper remapper;
    private final DirtyScanner dirty;
    private final long root;
    // the geometry's values the one-page fast paths read, copied: a field of this class is one load, the
    // geometry's is two
    /** The smallest leaf's size, the one-page fast paths' length. */
    private final long minLeaf;
    private final int pageShift;
    private final int lastLevel;
    private final boolean onePageFast;
    /** The run leaf of the last level, or null: see {@link Geometry#lastLevelRun()}. */
    private final LeafSize lastLevelRun;
    /** The last attributes a one-page map encoded; see {@link PageEncoding}. */
    private PageEncoding pageEncoding;
    private volatile boolean closed;

    private PageTable(PageTableFormat format, PhysicalMemory memory, BlockAllocator allocator) {
        this.format = format;
        this.memory = memory;
        this.geometry = Geometry.of(format);
        this.entries = new TableMemory(memory, geometry.entryBytes());
        this.lifetime = new TableLifetime(format, geometry, entries, memory, allocator);
        this.cache = new WalkCache(lifetime, geometry);
        this.minLeaf = geometry.page().size();
        this.pageShift = Long.numberOfTrailingZeros(minLeaf);
        this.lastLevel = geometry.lastLevel();
        this.onePageFast = geometry.onePageFast();
        this.lastLevelRun = geometry.lastLevelRun();
        this.root = lifetime.alloc(0);
        this.mapper = new Mapper(format, geometry, entries, lifetime, cache, root);
        this.unmapper = new Unmapper(format, geometry, entries, lifetime, cache, root);
        this.remapper = new Remapper(format, geometry, entries, mapper, unmapper, root);
        this.dirty = new DirtyScanner(format, geometry, entries);
    }

    /**
     * Creates an empty table: allocates and zeroes the root.
     *
     * @param format    the hardware format
     * @param memory    the physical memory the tables live in
     * @param allocator the allocator of that memory's blocks (page-table pages)
     * @return the new table, owning its root
     * @throws PageTableMemoryException if the root cannot be allocated
     */
    public static PageTable create(PageTableFormat format, PhysicalMemory memory, BlockAllocator allocator) {
        return new PageTable(Objects.requireNonNull(format, "format"), Objects.requireNonNull(memory, "memory"),
            Objects.requireNonNull(allocator, "allocator"));
    }

    /** {@return the physical address of the root table: what a TTBR, CR3 or satp would hold} */
    public long root() {
        return root;
    }

    /** {@return the format} */
    public PageTableFormat format() {
        return format;
    }

    /** {@return the physical memory the tables live in} */
    public PhysicalMemory memory() {
        return memory;
    }

    /** {@return the number of tables linked in the table, the root included (retired tables are not counted)} */
    public long tableCount() {
        return lifetime.tableCount();
    }

    /**
     * {@return the bytes of table memory in use (sum of the linked tables' sizes), the root included; retired
     * tables waiting for their grace period are in {@link #retiredBytes()} instead}
     */
    public long tableBytes() {
        return lifetime.tableBytes();
    }

    /**
     * {@return the bytes of table memory held from the block allocator: {@link #tableBytes()} plus, for
     * formats whose tables are smaller than a page, the free slots of the pages they are carved from and at
     * most one empty page kept for reuse, plus {@link #retiredBytes()}. {@link #close()} gives all of it back,
     * at once or when the last walk that could see the table leaves}
     */
    public long heldBytes() {
        return lifetime.heldBytes();
    }

    /** {@return the bytes of retired tables waiting for walks that could see them to end (at most about {@link #RETIRED_LIMIT})} */
    public long retiredBytes() {
        return lifetime.retiredBytes();
    }

    /**
     * Receives the tables of a page table, see {@link #forEachTable}.
     *
     * <p><b>Thread-safety:</b> called on the thread that called {@link #forEachTable}.
     */
    @FunctionalInterface
    public interface TableVisitor {
        /**
         * Receives one table.
         *
         * @param level the table's level (0 = root)
         * @param pa    its physical address
         * @param bytes its size
         */
        void table(int level, long pa, long bytes);
    }

    /**
     * Visits every table reachable from the root, the root first, in depth-first order, as a walker would
     * find them by reading the memory. Must not race with map or unmap.
     *
     * @param visitor receives each table
     * @throws IllegalStateException if the table is closed
     */
    public void forEachTable(TableVisitor visitor) {
        checkOpen();
        visit(0, root, visitor);
    }

    private void visit(int level, long table, TableVisitor visitor) {
        visitor.table(level, table, geometry.tableBytes(level));
        if (level < geometry.lastLevel()) {
            int n = geometry.entries(level);
            for (int i = 0; i < n; i++) {
                long raw = entries.lp(table + (long) i * geometry.entryBytes());
                if (raw != 0 && format.decode(level, raw, 0) instanceof Descriptor.Table t) {
                    visit(level + 1, t.tablePa(), visitor);
                }
            }
        }
    }

    /**
     * A hardware walk of {@code va} that this table knows is in flight: a table is not given back to the
     * allocator while a walk that may have read its pointer is running (the grace period an IOMMU driver
     * gets from its TLB and walk-cache synchronisation), so a concurrent walk never reads a reused table.
     * Lock-free: the walk announces itself in a slot of its own (one compare-and-set and one fence), reads
     * the tables, and clears the slot; it never waits for a mapper, and a mapper never waits for it.
     *
     * <p>It is the walk of a device with hardware dirty-state update ({@link Walker#translateUpdatingDirty}): a write
     * through a writable-clean leaf makes it dirty with one compare-and-set.
     *
     * <p>A walk that starts after {@link #close()} or overlaps it returns a {@link WalkResult.PageFault}
     * (reason {@link FaultReason#TRANSLATION}, detail "... is closed") and never reads freed table memory.
     *
     * @param va       the input address to translate
     * @param access   the access to check, or {@code null} for none
     * @param fromUser whether the access is unprivileged
     * @return the walk's result, as {@link Walker} gives it, or the closed fault
     */
    public WalkResult walk(long va, Access access, boolean fromUser) {
        int slot = lifetime.enter();
        try {
            if (closed) { // volatile read after the announcement: close() sets closed, then scans (Dekker)
                return closedFault(va);
            }
            WalkResult r = access == null
                ? Walker.translate(format, memory, root, va)
                : Walker.translateUpdatingDirty(format, memory, root, va, access, fromUser);
            // a close that overlapped the walk may have cleared entries under it: answer as closed
            return closed ? closedFault(va) : r;
        } finally {
            lifetime.leave(slot);
        }
    }

    /**
     * The hardware walk of {@code va} in this table, with no permission check; as {@link #walk}.
     *
     * @param va the input address to translate
     * @return the walk's result, or the closed fault
     */
    public WalkResult translate(long va) {
        return walk(va, null, false);
    }

    private WalkResult.PageFault closedFault(long va) {
        return new WalkResult.PageFault(va, 0, FaultReason.TRANSLATION,
            format.name() + " page table at root 0x" + Long.toHexString(root) + " is closed");
    }

    /**
     * Maps {@code [va, va + length)} to {@code [pa, pa + length)} with the largest leaves alignment allows.
     *
     * @param va         the first input address, aligned to the smallest leaf
     * @param pa         the first output address, aligned to the smallest leaf
     * @param length     the bytes to map, a positive multiple of the smallest leaf
     * @param attributes the permissions and cache policy of every leaf
     * @return {@code length}, the bytes mapped
     * @throws UnsupportedSizeException      if va, pa or length is not a multiple of the smallest leaf
     * @throws AddressRangeException         if the virtual or physical range is outside the format's reach
     * @throws UnsupportedAttributeException if the format cannot express {@code attributes}
     * @throws AlreadyMappedException        if part of the range is mapped; nothing is left changed
     * @throws PageTableMemoryException      if a table cannot be allocated; nothing is left changed
     * @throws IllegalStateException         if the table is closed
     */
    public long map(long va, long pa, long length, Attributes attributes) {
        if (length == minLeaf && mapOneCached(va, pa, attributes)) {
            return length;
        }
        return mapChecked(va, pa, length, attributes);
    }

    private long mapChecked(long va, long pa, long length, Attributes attributes) {
        checkOpen();
        checkRange(va, length);
        if ((pa & (minLeaf - 1)) != 0) {
            throw new UnsupportedSizeException(format.name() + ": pa=0x" + Long.toHexString(pa)
                + " is not aligned to the smallest leaf (" + LeafSize.humanSize(minLeaf) + ")");
        }
        if (pa < 0 || (format.paBits() < 63 && pa + length > (1L << format.paBits())) || pa + length < pa) {
            throw new AddressRangeException(format.name() + ": physical range pa=0x" + Long.toHexString(pa) + " length=0x"
                + Long.toHexString(length) + " exceeds the " + format.paBits() + "-bit output address space");
        }
        format.checkAttributes(Objects.requireNonNull(attributes, "attributes"));
        long done = 0;
        try {
            while (done < length) {
                done += mapper.mapBatch(va + done, pa + done, length - done, attributes);
            }
        } catch (RuntimeException e) {
            if (done > 0) {
                unmapper.unmap(va, done);
            }
            throw e;
        }
        VarHandle.releaseFence(); // publish the plainly written leaves as a whole
        if (lifetime.hasRetired()) {
            lifetime.reclaim(); // empty tables this map replaced, and what earlier walks held back
        }
        return length;
    }

    /**
     * Points every page of {@code [va, va + length)} at {@code [pa, pa + length)}, whatever was mapped there, with
     * no moment at which a page is unmapped: each page's entry goes from the old translation to the new one in one
     * store, a block or run that holds part of the range is first split hitlessly (its other pages keep their
     * translation throughout), and a page that was not mapped is mapped. The range is mapped with the smallest
     * pages. The caller invalidates the TLBs afterwards, as after an unmap.
     *
     * @param va         the first input address, aligned to the smallest leaf
     * @param pa         the first output address, aligned to the smallest leaf
     * @param length     the bytes to replace, a positive multiple of the smallest leaf
     * @param attributes the permissions and cache policy of every new leaf
     * @return {@code length}
     * @throws UnsupportedSizeException      if va, pa or length is not a multiple of the smallest leaf
     * @throws AddressRangeException         if the virtual or physical range is outside the format's reach
     * @throws UnsupportedAttributeException if the format cannot express {@code attributes}
     * @throws PageTableMemoryException      if a table cannot be allocated; the pages before it are replaced,
     *                                       the rest keep their old translation
     * @throws IllegalStateException         if the table is closed
     */
    public long remap(long va, long pa, long length, Attributes attributes) {
        checkOpen();
        checkRange(va, length);
        if ((pa & (minLeaf - 1)) != 0) {
            throw new UnsupportedSizeException(format.name() + ": pa=0x" + Long.toHexString(pa)
                + " is not aligned to the smallest leaf (" + LeafSize.humanSize(minLeaf) + ")");
        }
        if (pa < 0 || (format.paBits() < 63 && pa + length > (1L << format.paBits())) || pa + length < pa) {
            throw new AddressRangeException(format.name() + ": physical range pa=0x" + Long.toHexString(pa) + " length=0x"
                + Long.toHexString(length) + " exceeds the " + format.paBits() + "-bit output address space");
        }
        format.checkAttributes(Objects.requireNonNull(attributes, "attributes"));
        remapper.remap(va, pa, length, attributes);
        VarHandle.releaseFence();
        return length;
    }

    /**
     * Unmaps whatever is mapped in {@code [va, va + length)}, splitting blocks that stick out of the range
     * hitlessly and freeing tables whose whole span is unmapped.
     *
     * @param va     the first input address, aligned to the smallest leaf
     * @param length the bytes to unmap, a positive multiple of the smallest leaf
     * @return the bytes that were mapped in the range and no longer are
     * @throws UnsupportedSizeException if va or length is not a multiple of the smallest leaf
     * @throws AddressRangeException    if the range is outside the format's input space
     * @throws PageTableMemoryException if a split needs a table that cannot be allocated; what was unmapped
     *                                  before stays unmapped, the rest stays mapped
     * @throws IllegalStateException    if the table is closed
     */
    public long unmap(long va, long length) {
        if (length == minLeaf) {
            long n = unmapOneCached(va);
            if (n >= 0) {
                return n;
            }
        }
        checkOpen();
        checkRange(va, length);
        return unmapper.unmap(va, length);
    }

    /**
     * Changes the attributes of every leaf mapped in {@code [va, va + length)} in place, keeping each leaf's output
     * address and size (an {@code mprotect}): each entry is rewritten with one compare-and-set, so a concurrent walk
     * sees it before or after the change and the range never goes unmapped in between. Unmapped parts are skipped.
     * The caller invalidates TLBs afterwards. The caller owns the range, as for {@link #map}.
     *
     * @param va         the first input address, aligned to the smallest leaf
     * @param length     the bytes, a positive multiple of the smallest leaf
     * @param attributes the new permissions and cache policy
     * @return the bytes of leaves rewritten (mapped bytes in the range)
     * @throws UnsupportedSizeException      if va or length is not a multiple of the smallest leaf
     * @throws AddressRangeException         if the range is outside the format's input space
     * @throws UnsupportedAttributeException if the format cannot express {@code attributes}; nothing changed
     * @throws IllegalArgumentException      if a leaf sticks out of the range (unmap to split it first); nothing changed
     * @throws IllegalStateException         if the table is closed
     */
    public long protect(long va, long length, Attributes attributes) {
        checkOpen();
        checkRange(va, length);
        format.checkAttributes(Objects.requireNonNull(attributes, "attributes"));
        return Protector.protect(format, entries, root, va, length, attributes);
    }

    /**
     * The encoding of the smallest leaf for one set of attributes, affine in the physical address (see
     * {@link PageTableFormat#leafEntry}): a one-entry cache, replaced whole (a racy read sees an old or a new
     * record, both correct for their own attributes).
     */
    private record PageEncoding(Attributes attributes, long e0, long step, long paLimit) {
    }

    /**
     * The fast path of a one-page map, small enough for the JIT to inline: when the walk cache names the
     * page's last-level table and the attributes are those last encoded, one read and one plain store.
     * Every check of the general path holds here or the general path runs: the table is open; va is
     * valid, being in the span of a cached table that a checked walk reached; va and pa are aligned; pa is
     * below what the leaf reaches. Returns false, having changed nothing, on a miss, a live entry or bad
     * input, so that the general path does the work or names the error.
     */
    private boolean mapOneCached(long va, long pa, Attributes attributes) {
        long address = cache.entry(va);
        PageEncoding enc = pageEncoding;
        if (address == WalkCache.NONE || closed || ((va | pa) & (minLeaf - 1)) != 0) {
            return false;
        }
        if (enc == null || enc.attributes() != attributes) {
            enc = encoding(attributes);
            if (enc == null) {
                return false;
            }
        }
        if (pa < 0 || pa >= enc.paLimit()) {
            return false;
        }
        if (entries.lpDirect(address) != 0) {
            return false;
        }
        entries.spDirect(address, enc.e0() + (pa >>> pageShift) * enc.step());
        VarHandle.releaseFence();
        return true;
    }

    /** {@return the page encoding of {@code attributes}, cached; null if the one-page fast path does not apply} */
    private PageEncoding encoding(Attributes attributes) {
        if (!onePageFast || attributes == null) {
            return null;
        }
        PageEncoding enc = pageEncoding;
        if (enc != null && enc.attributes().equals(attributes)) {
            return enc;
        }
        LeafSize page = geometry.page();
        try {
            format.checkAttributes(attributes);
            long e0 = format.leafEntry(page, 0, 0, attributes);
            enc = new PageEncoding(attributes, e0, format.leafEntry(page, minLeaf, 0, attributes) - e0,
                format.leafPaLimit(page));
        } catch (UnsupportedAttributeException e) {
            return null; // the general path checks the range first, then names this error
        }
        pageEncoding = enc;
        return enc;
    }

    /**
     * The fast path of a one-page unmap: when the walk cache names the page's last-level table and the
     * entry is not part of a contiguous run (which must be split first), one read and one plain store.
     *
     * @return the bytes unmapped, or -1 to take the general path (nothing changed)
     */
    private long unmapOneCached(long va) {
        long address = cache.entry(va);
        if (address == WalkCache.NONE || closed || (va & (minLeaf - 1)) != 0 || !onePageFast) {
            return -1;
        }
        long raw = entries.lpDirect(address);
        if (raw == 0) {
            return 0;
        }
        if (lastLevelRun != null && format.isRunEntry(lastLevel, raw)) {
            return -1;
        }
        entries.spDirect(address, 0);
        VarHandle.releaseFence();
        return minLeaf;
    }

    /**
     * Closes the table: walks fault from now on, every table is unlinked from its parent (each entry
     * cleared before its child is retired, so no freed table points at another) and retired, the root last.
     * Returns at once, without waiting for walks in flight: the memory goes back to the allocator as soon as
     * the walks that could see it have ended (by this call if none is running, else by the last of them to
     * leave), and then {@link #heldBytes()} is 0. Idempotent. The mappings are gone with it; the physical
     * memory they pointed at is not touched. May race with walks; must not race with map or unmap.
     */
    @Override
    public void close() {
        if (!CLOSED.compareAndSet(this, false, true)) {
            return;
        }
        lifetime.close(root);
    }

    /** {@return whether {@link #close()} was called} */
    public boolean isClosed() {
        return closed;
    }

    @Override
    public String toString() {
        return "PageTable{" + format.name() + ", root=0x" + Long.toHexString(root) + ", tables=" + lifetime.tableCount() + '}';
    }

    /**
     * Reads the hardware dirty state of the leaves in {@code [va, va + length)} ({@link DirtyBits}) and, if
     * {@code clear}, makes every dirty leaf that lies wholly in the range writable-clean (one compare-and-set per
     * entry). A block or a contiguous run is dirty if any of its entries is, and is reported whole, clipped to the
     * range; one that sticks out of the range is reported but not cleaned, so the state of its pages outside the
     * range is kept. The caller must invalidate the cached translations of the range afterwards (an IOTLB entry
     * that allows writes lets a device write without updating the entry): the graph's dirty tracking does.
     *
     * <p>Lock-free, an announced walk: it may run alongside walks, maps and unmaps of any range; an entry that
     * changes under it is read again.
     *
     * @param va      the first input address, aligned to the smallest leaf
     * @param length  the bytes, a positive multiple of the smallest leaf
     * @param clear   whether to make the dirty leaves clean
     * @param visitor receives each dirty range, in address order
     * @return the number of entries this call made clean
     * @throws UnsupportedOperationException if the format has no dirty bits
     * @throws UnsupportedSizeException      if va or length is not a multiple of the smallest leaf
     * @throws AddressRangeException         if the range is outside the format's input address space
     * @throws IllegalStateException         if the table is closed
     */
    public long readDirty(long va, long length, boolean clear, DirtyVisitor visitor) {
        Objects.requireNonNull(visitor, "visitor");
        if (!dirty.supported()) {
            throw new UnsupportedOperationException(format.name() + " has no hardware dirty state");
        }
        checkOpen();
        checkRange(va, length);
        int slot = lifetime.enter();
        try {
            checkOpen(); // after the announcement, as a walk: close() sets closed, then scans
            return dirty.scan(root, va, va + length - 1, clear, visitor);
        } finally {
            lifetime.leave(slot);
        }
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException(format.name() + " page table at root 0x" + Long.toHexString(root) + " is closed");
        }
    }

    private void checkRange(long va, long length) {
        if (length <= 0 || ((va | length) & (minLeaf - 1)) != 0) {
            throw new UnsupportedSizeException(format.name() + ": va=0x" + Long.toHexString(va) + " length=0x"
                + Long.toHexString(length) + " must be positive multiples of the smallest leaf (" + LeafSize.humanSize(minLeaf) + ")");
        }
        long last = va + length - 1;
        if (!format.isValidVa(va) || !format.isValidVa(last) || Long.compareUnsigned(last, va) < 0 || (va < 0) != (last < 0)) {
            throw new AddressRangeException(format.name() + ": range va=0x" + Long.toHexString(va) + " length=0x"
                + Long.toHexString(length) + " is outside the " + format.vaBits() + "-bit input address space");
        }
    }
}
