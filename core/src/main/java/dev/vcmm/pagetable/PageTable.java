package dev.vcmm.pagetable;

import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.PhysicalMemory;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicLong;

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

    private static final VarHandle GENERATION;
    private static final VarHandle CLOSED;
    private static final VarHandle RETIRED;
    private static final VarHandle OVERFLOW_WALKS;
    private static final VarHandle FINISHED;
    private static final VarHandle RECLAIM_REQUESTS;
    private static final VarHandle ANNOUNCE = MethodHandles.arrayElementVarHandle(long[].class);

    static {
        try {
            MethodHandles.Lookup lookup = MethodHandles.lookup();
            GENERATION = lookup.findVarHandle(PageTable.class, "generation", long.class);
            CLOSED = lookup.findVarHandle(PageTable.class, "closed", boolean.class);
            RETIRED = lookup.findVarHandle(PageTable.class, "retired", Retired.class);
            OVERFLOW_WALKS = lookup.findVarHandle(PageTable.class, "overflowWalks", long.class);
            FINISHED = lookup.findVarHandle(PageTable.class, "finished", boolean.class);
            RECLAIM_REQUESTS = lookup.findVarHandle(PageTable.class, "reclaimRequests", int.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    /**
     * Bytes of retired tables past which an unmap stops unlinking the tables of spans it empties (it clears
     * their entries and leaves them linked): the bound on memory a stalled walk can hold back.
     */
    public static final long RETIRED_LIMIT = 1L << 20;

    /** Walk announcement slots: a power of two, a few per CPU so that concurrent walks rarely probe. */
    private static final int SLOTS = Math.min(64, Integer.highestOneBit(Math.max(8, 4 * Runtime.getRuntime().availableProcessors()) * 2 - 1));
    /** Longs between two slots: one cache line each, so walks of different threads do not share a line. */
    private static final int SLOT_STRIDE = 8;

    /** Entries of the walk cache, a power of two: consecutive last-level spans take different entries. */
    private static final int HINTS = 8;

    private static final ValueLayout.OfLong LONG_LE = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt INT_LE = ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final PageTableFormat format;
    private final PhysicalMemory memory;
    private final BlockAllocator allocator;
    private final TableAllocator tables;
    private final long root;
    private final int levels;
    private final int entryBytes;
    private final boolean wide;
    private final LeafSize[] leaves;
    private final LeafSize minLeafSize;
    private final long minLeaf;
    private final boolean onePageFast;
    private final int minLeafShift;
    /** The last attributes a one-page map encoded; see {@link PageEncoding}. */
    private PageEncoding pageEncoding;
    /** The memory as one segment for the one-page fast paths, or null: see {@link PhysicalMemory#segment()}. */
    private final MemorySegment direct;
    private final long directBase;
    /** The run leaf of the last level (arm64's 64 KiB contiguous run, armv7's large page), or null. */
    private final LeafSize lastLevelRun;
    private final AtomicLong tableCount = new AtomicLong();
    /**
     * Bumped by every table retire; read by the walk cache, and the epoch walks announce. A field of its own
     * (not an AtomicLong): one load less.
     */
    private volatile long generation;
    /**
     * Walk announcements, one slot per {@link #SLOT_STRIDE} longs: 0 when free, else 1 + the
     * {@link #generation} the walk read before its first descriptor. Claimed by compare-and-set, cleared by a
     * volatile store; read by {@link #reclaim}.
     */
    private final long[] announce = new long[SLOTS * SLOT_STRIDE];
    /** Walks that found every slot taken: while any runs, nothing is reclaimed (they may have seen anything). */
    private volatile long overflowWalks;
    /** Retired tables waiting for their grace period: a Treiber stack, taken whole by a reclaimer. */
    private volatile Retired retired;
    /** Bytes on {@link #retired} (and being reclaimed): decremented only when the memory is freed. */
    private final AtomicLong retiredBytes = new AtomicLong();
    /** Set by {@link #close()} once every table is retired: reclaiming the last then closes the table allocator. */
    private volatile boolean closeRetired;
    /** The table allocator has been closed (once). */
    private volatile boolean finished;
    /**
     * Reclaim requests not yet served: the thread that raises it from 0 reclaims, and passes again as long
     * as requests came in meanwhile (the "work in progress" counter of drain loops). No one waits on it.
     */
    private volatile int reclaimRequests;
    private final int lastTableShift;
    /** The walk cache, direct-mapped by span; see {@link WalkHint}. */
    private final WalkHint[] hints = new WalkHint[HINTS];
    /** The entry of {@link #hints} used last: probed first, one load less than the array. */
    private WalkHint lastHint;
    private volatile boolean closed;

    private PageTable(PageTableFormat format, PhysicalMemory memory, BlockAllocator allocator) {
        this.format = format;
        this.memory = memory;
        this.allocator = allocator;
        this.tables = new TableAllocator(memory, allocator);
        this.levels = format.levels();
        this.entryBytes = format.entryBytes();
        this.wide = entryBytes == 8;
        List<LeafSize> sizes = format.leafSizes();
        this.leaves = sizes.toArray(new LeafSize[0]);
        this.minLeafSize = leaves[leaves.length - 1];
        this.minLeaf = minLeafSize.size();
        // the one-page fast paths assume the smallest leaf is one entry of a last-level table (true of every format)
        this.onePageFast = minLeafSize.level() == levels - 1 && minLeafSize.entries() == 1;
        this.minLeafShift = Long.numberOfTrailingZeros(minLeaf);
        this.direct = memory.segment();
        this.directBase = memory.base();
        List<LeafSize> runs = sizes.stream().filter(l -> l.isRun() && l.level() == levels - 1).toList();
        if (runs.size() > 1) {
            throw new IllegalArgumentException(format.name() + ": more than one run size at the last level");
        }
        this.lastLevelRun = runs.isEmpty() ? null : runs.getFirst();
        this.lastTableShift = format.levelShift(levels - 1) + format.levelBits(levels - 1);
        this.root = allocTable(0);
    }

    /**
     * Creates an empty table: allocates and zeroes the root.
     *
     * @param format    the hardware format
     * @param memory    the physical memory the tables live in
     * @param allocator the allocator of that memory's blocks (page-table pages)
     * @throws PageTableMemoryException if the root cannot be allocated
     */
    public static PageTable create(PageTableFormat format, PhysicalMemory memory, BlockAllocator allocator) {
        return new PageTable(Objects.requireNonNull(format, "format"), Objects.requireNonNull(memory, "memory"),
            Objects.requireNonNull(allocator, "allocator"));
    }

    /** @return the physical address of the root table: what a TTBR, CR3 or satp would hold. */
    public long root() {
        return root;
    }

    /** @return the format. */
    public PageTableFormat format() {
        return format;
    }

    /** @return the physical memory the tables live in. */
    public PhysicalMemory memory() {
        return memory;
    }

    /** @return the number of tables linked in the table, the root included (retired tables are not counted). */
    public long tableCount() {
        return tableCount.get();
    }

    /**
     * @return the bytes of table memory in use (sum of the linked tables' sizes), the root included; retired
     * tables waiting for their grace period are in {@link #retiredBytes()} instead
     */
    public long tableBytes() {
        return tables.bytesInUse() - retiredBytes.get();
    }

    /**
     * @return the bytes of table memory held from the block allocator: {@link #tableBytes()} plus, for
     * formats whose tables are smaller than a page, the free slots of the pages they are carved from and at
     * most one empty page kept for reuse, plus {@link #retiredBytes()}. {@link #close()} gives all of it back,
     * at once or when the last walk that could see the table leaves.
     */
    public long heldBytes() {
        return tables.bytesHeld();
    }

    /** Receives the tables of a page table, see {@link #forEachTable}. */
    @FunctionalInterface
    public interface TableVisitor {
        /** @param level the table's level; @param pa its physical address; @param bytes its size */
        void table(int level, long pa, long bytes);
    }

    /**
     * Visits every table reachable from the root, the root first, in depth-first order, as a walker would
     * find them by reading the memory. Must not race with map or unmap.
     */
    public void forEachTable(TableVisitor visitor) {
        checkOpen();
        visit(0, root, visitor);
    }

    private void visit(int level, long table, TableVisitor visitor) {
        visitor.table(level, table, format.tableBytes(level));
        if (level < levels - 1) {
            int n = 1 << format.levelBits(level);
            for (int i = 0; i < n; i++) {
                long raw = lp(table + (long) i * entryBytes);
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
     * <p>A walk that starts after {@link #close()} or overlaps it returns a {@link WalkResult.PageFault}
     * (reason {@link FaultReason#TRANSLATION}, detail "... is closed") and never reads freed table memory.
     *
     * @param access   the access to check, or {@code null} for none
     * @param fromUser whether the access is unprivileged
     * @return the walk's result, as {@link Walker} gives it, or the closed fault
     */
    public WalkResult walk(long va, Access access, boolean fromUser) {
        int slot = enter();
        try {
            if (closed) { // volatile read after the announcement: close() sets closed, then scans (Dekker)
                return closedFault(va);
            }
            WalkResult r = access == null
                ? Walker.translate(format, memory, root, va)
                : Walker.translate(format, memory, root, va, access, fromUser);
            // a close that overlapped the walk may have cleared entries under it: answer as closed
            return closed ? closedFault(va) : r;
        } finally {
            leave(slot);
        }
    }

    /** @return the hardware walk of {@code va} in this table (no permission check); as {@link #walk}. */
    public WalkResult translate(long va) {
        return walk(va, null, false);
    }

    private WalkResult.PageFault closedFault(long va) {
        return new WalkResult.PageFault(va, 0, FaultReason.TRANSLATION,
            format.name() + " page table at root 0x" + Long.toHexString(root) + " is closed");
    }

    /**
     * Announces a walk: claims a free slot with 1 + the current generation. Every table retired from now on
     * gets a tag at least that generation, so the reclaimer keeps it while this slot holds the value.
     *
     * @return the slot's index in {@link #announce}, or -1 if the walk counted itself in {@link #overflowWalks}
     */
    private int enter() {
        long stamp = generation + 1; // read before the claim: an older stamp only keeps more tables, never fewer
        int start = (int) Thread.currentThread().threadId();
        for (int i = 0; i < SLOTS; i++) {
            int index = ((start + i) & (SLOTS - 1)) * SLOT_STRIDE;
            if ((long) ANNOUNCE.getOpaque(announce, index) == 0 && ANNOUNCE.compareAndSet(announce, index, 0L, stamp)) {
                // the claim is a volatile write; the walk's descriptor reads are acquire loads, which the JMM
                // lets move before a volatile write: the fence keeps them after it (store-load, Dekker with
                // the unlink compare-and-set and the scan in reclaim())
                VarHandle.fullFence();
                return index;
            }
        }
        OVERFLOW_WALKS.getAndAdd(this, 1L); // a full fence as well
        return -1;
    }

    /** Ends a walk; if a table was retired while it ran, reclaims what no walk holds any more. */
    private void leave(int slot) {
        long stamp;
        if (slot >= 0) {
            stamp = (long) ANNOUNCE.getOpaque(announce, slot);
            // volatile, not release: paired with the reclaimer's push-then-scan, so that either its scan sees
            // this slot free or this walk sees its retired table below (Dekker); the walk's reads come first
            ANNOUNCE.setVolatile(announce, slot, 0L);
        } else {
            stamp = Long.MIN_VALUE + 1;
            OVERFLOW_WALKS.getAndAdd(this, -1L);
        }
        if (retiredBytes.get() != 0 && stamp - 1 < generation) {
            reclaim(); // something was retired after this walk began: it may have been the one holding it
        }
    }

    /**
     * Maps {@code [va, va + length)} to {@code [pa, pa + length)} with the largest leaves alignment allows.
     *
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
                done += mapBatch(va + done, pa + done, length - done, attributes);
            }
        } catch (RuntimeException e) {
            if (done > 0) {
                unmapChecked(va, done);
            }
            throw e;
        }
        VarHandle.releaseFence(); // publish the plainly written leaves as a whole
        if (retired != null) {
            reclaim(); // empty tables this map replaced, and what earlier walks held back
        }
        return length;
    }

    /**
     * Unmaps whatever is mapped in {@code [va, va + length)}, splitting blocks that stick out of the range
     * hitlessly and freeing tables whose whole span is unmapped.
     *
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
        return unmapChecked(va, length);
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
        WalkHint h = cachedTable(va);
        PageEncoding enc = pageEncoding;
        if (h == null || closed || ((va | pa) & (minLeaf - 1)) != 0) {
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
        long address = h.table() + (long) index(va, levels - 1) * entryBytes;
        long entry = enc.e0() + (pa >>> minLeafShift) * enc.step();
        MemorySegment s = direct;
        if (s == null || !wide) {
            return storeIfFree(address, entry);
        }
        long off = address - directBase;
        if (s.get(LONG_LE, off) != 0) {
            return false;
        }
        s.set(LONG_LE, off, entry);
        VarHandle.releaseFence();
        return true;
    }

    /** @return the page encoding of {@code attributes}, cached; null if the one-page fast path does not apply */
    private PageEncoding encoding(Attributes attributes) {
        if (!onePageFast || attributes == null) {
            return null;
        }
        PageEncoding enc = pageEncoding;
        if (enc != null && enc.attributes().equals(attributes)) {
            return enc;
        }
        try {
            format.checkAttributes(attributes);
            long e0 = format.leafEntry(minLeafSize, 0, 0, attributes);
            enc = new PageEncoding(attributes, e0, format.leafEntry(minLeafSize, minLeaf, 0, attributes) - e0,
                format.leafPaLimit(minLeafSize));
        } catch (UnsupportedAttributeException e) {
            return null; // the general path checks the range first, then names this error
        }
        pageEncoding = enc;
        return enc;
    }

    /** The one-page store of 32-bit entries, or in a memory that is not one segment. */
    private boolean storeIfFree(long address, long entry) {
        MemorySegment s = direct;
        if (s != null && !wide) {
            long off = address - directBase;
            if (s.get(INT_LE, off) != 0) {
                return false;
            }
            s.set(INT_LE, off, (int) entry);
        } else {
            if (lp(address) != 0) {
                return false;
            }
            sp(address, entry);
        }
        VarHandle.releaseFence();
        return true;
    }

    /**
     * The fast path of a one-page unmap: when the walk cache names the page's last-level table and the
     * entry is not part of a contiguous run (which must be split first), one read and one plain store.
     *
     * @return the bytes unmapped, or -1 to take the general path (nothing changed)
     */
    private long unmapOneCached(long va) {
        WalkHint h = cachedTable(va);
        if (h == null || closed
            || (va & (minLeaf - 1)) != 0 || !onePageFast) {
            return -1;
        }
        long address = h.table() + (long) index(va, levels - 1) * entryBytes;
        MemorySegment s = direct;
        if (s == null || !wide) {
            return clearOne(address);
        }
        long off = address - directBase;
        long raw = s.get(LONG_LE, off);
        if (raw == 0) {
            return 0;
        }
        if (lastLevelRun != null && format.isRunEntry(levels - 1, raw)) {
            return -1;
        }
        s.set(LONG_LE, off, 0L);
        VarHandle.releaseFence();
        return minLeaf;
    }

    /** The one-page clear of 32-bit entries, or in a memory that is not one segment; see {@link #storeIfFree}. */
    private long clearOne(long address) {
        MemorySegment s = direct;
        long off = address - directBase;
        boolean segment = s != null && !wide;
        long raw = segment ? Integer.toUnsignedLong(s.get(INT_LE, off)) : lp(address);
        if (raw == 0) {
            return 0;
        }
        if (lastLevelRun != null && format.isRunEntry(levels - 1, raw)) {
            return -1;
        }
        if (segment) {
            s.set(INT_LE, off, 0);
        } else {
            sp(address, 0);
        }
        VarHandle.releaseFence();
        return minLeaf;
    }

    /**
     * Unmaps a checked range. The parts of the range in the first and the last last-level span, when they do
     * not cover the whole span (whose table would then be freed), are cleared in tables the walk cache names;
     * the rest is walked from the root.
     */
    private long unmapChecked(long va, long length) {
        long last = va + length - 1;
        long spanMask = (1L << lastTableShift) - 1;
        long entrySpan = format.entrySpan(levels - 1);
        long n = 0;
        long v = va;
        long headLast = (va | spanMask) - va < length ? va | spanMask : last; // unsigned: va | spanMask >= va
        WalkHint h = cachedTable(va);
        if (h != null && ((va & spanMask) != 0 || headLast != (va | spanMask))) { // a partial first span
            n += unmapLastLevel(h.table(), va, headLast, entrySpan);
            v = headLast + 1;
        }
        long bodyLast = last;
        if (v != va && headLast == last) {
            VarHandle.releaseFence();
            return n;
        }
        long tailStart = last & ~spanMask;
        h = cachedTable(last);
        if (h != null && Long.compareUnsigned(tailStart, v) >= 0 && (last & spanMask) != spanMask) { // a partial last span
            n += unmapLastLevel(h.table(), tailStart, last, entrySpan);
            if (tailStart == v) {
                VarHandle.releaseFence();
                return n;
            }
            bodyLast = tailStart - 1;
        }
        n += unmapLevel(0, root, v, bodyLast);
        VarHandle.releaseFence();
        if (retired != null) {
            reclaim(); // what this call retired, and what earlier walks held back
        }
        return n;
    }

    /** @return the walk cache's entry for the last-level table of {@code v}'s span, or null on a miss */
    private WalkHint cachedTable(long v) {
        long key = v >>> lastTableShift;
        WalkHint h = lastHint;
        if (h == null || h.key() != key) {
            h = hinted(key);
        }
        return h != null && h.generation() == generation ? h : null;
    }

    /** @return the walk cache's entry for span {@code key} (its generation unchecked), made the last used; or null */
    private WalkHint hinted(long key) {
        WalkHint h = hints[(int) key & (HINTS - 1)];
        if (h != null && h.key() == key) {
            lastHint = h;
            return h;
        }
        return null;
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
        GENERATION.getAndAdd(this, 1L); // the walk cache is stale
        retireSubtree(0, root);
        closeRetired = true;
        reclaim();
    }

    /** @return whether {@link #close()} was called. */
    public boolean isClosed() {
        return closed;
    }

    @Override
    public String toString() {
        return "PageTable{" + format.name() + ", root=0x" + Long.toHexString(root) + ", tables=" + tableCount.get() + '}';
    }

    // ---------------------------------------------------------------------------------------------
    // map

    /** Maps as many leaves of one size as fit in one table without passing a point where a larger leaf fits. */
    private long mapBatch(long v, long p, long rem, Attributes attributes) {
        LeafSize leaf = pick(v, p, rem);
        int level = leaf.level();
        long size = leaf.size();
        int idx = index(v, level);
        int tableEntries = 1 << format.levelBits(level);
        int sizeShift = Long.numberOfTrailingZeros(size); // sizes are powers of two: shift, never divide
        long count = Math.min(rem >>> sizeShift, (tableEntries - idx) >>> Integer.numberOfTrailingZeros(leaf.entries()));
        for (LeafSize bigger : leaves) {
            long b = bigger.size();
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
        long tagged = level == levels - 1 ? lastLevelTable(v) : walkCreateTagged(v, level);
        writeLeaves(tagged & ~FRESH, level, idx, leaf, v, p, (int) count, attributes, (tagged & FRESH) != 0, first, last);
        return count * size;
    }

    private LeafSize pick(long v, long p, long rem) {
        for (LeafSize l : leaves) {
            if (((v | p) & (l.size() - 1)) == 0 && rem >= l.size()) {
                return l;
            }
        }
        throw new AssertionError("no leaf fits; checked alignment to the smallest leaf before");
    }

    /**
     * The walk cache: the last-level table of the span most recently walked, valid while no table has been
     * freed since (every free bumps {@link #generation} before the memory goes back). Tables only disappear
     * by being freed, so a hint whose generation is current names a live table; concurrent callers on
     * disjoint ranges cannot free a table another caller is using (its span would overlap their range).
     */
    private record WalkHint(long key, long table, long generation) {
    }

    /**
     * @return the last-level table holding {@code v}, from the walk cache or by walking (and creating), with
     * {@link #FRESH} set if this call created it
     */
    private long lastLevelTable(long v) {
        long key = v >>> lastTableShift;
        WalkHint h = cachedTable(v);
        if (h != null) {
            return h.table();
        }
        long gen = generation; // read before the walk: a free during it makes the new hint stale at once
        long tagged = walkCreateTagged(v, levels - 1);
        h = new WalkHint(key, tagged & ~FRESH, gen);
        hints[(int) key & (HINTS - 1)] = h; // racy writes of an immutable record: readers see the old or the new
        lastHint = h;
        return tagged;
    }

    /** @return the table at {@code targetLevel} that holds {@code v}, creating the tables on the way. */
    private long walkCreate(long v, int targetLevel) {
        return walkCreateTagged(v, targetLevel) & ~FRESH;
    }

    /** Tag of {@link #walkCreateTagged}'s result: the table was created by this walk (tables are 1 KiB aligned). */
    private static final long FRESH = 1;

    /** As {@link #walkCreate}, with {@link #FRESH} set if this call created the table it returns. */
    private long walkCreateTagged(long v, int targetLevel) {
        long table = root;
        for (int level = 0; level < targetLevel; level++) {
            long address = table + (long) index(v, level) * entryBytes;
            long raw = la(address);
            if (raw == 0) {
                long fresh = allocTable(level + 1);
                if (cas(address, 0, tableEntryOrFree(level, fresh))) { // release: the zeroed table is visible first
                    table = fresh;
                    if (level + 1 == targetLevel) {
                        return fresh | FRESH;
                    }
                    continue;
                }
                freeUnpublished(fresh, level + 1); // lost the race: no one saw it; use the winner's table
                raw = la(address);
            }
            if (format.isTable(level, raw)) {
                table = format.tableAddress(level, raw);
                continue;
            }
            switch (format.decode(level, raw, v)) {
                case Descriptor.Table t -> table = t.tablePa();
                case Descriptor.Leaf leaf -> throw alreadyMapped(v, "a " + leaf.leaf() + " leaf maps it");
                case Descriptor.Invalid invalid -> throw new IllegalStateException(format.name()
                    + ": corrupt entry 0x" + Long.toHexString(raw) + " at level " + level + ": " + invalid.why());
            }
        }
        return table;
    }

    /** Writes a batch of leaves into {@code table}; {@code fresh}: this call created the table, so the batch's entries are zero. */
    private void writeLeaves(long table, int level, int idx, LeafSize leaf, long v, long p, int count, Attributes a,
                             boolean fresh, long e0, long eLast) {
        final int entries = leaf.entries();
        final int n = count * entries;
        final long span = format.entrySpan(level);
        final long size = leaf.size();
        boolean emptyTables = false;
        final long firstAddress = table + (long) idx * entryBytes;
        final long leafStep = count > 1 ? format.leafEntry(leaf, p + size, 0, a) - e0 : 0;
        final long entryStep = entries > 1 ? format.leafEntry(leaf, p, 1, a) - e0 : 0;
        final boolean linear = (count <= 2 || eLast == e0 + (count - 1) * leafStep)
            && (entries <= 2 || format.leafEntry(leaf, p, entries - 1, a) == e0 + (entries - 1) * entryStep);
        // one arithmetic sequence over the whole batch: pages, or runs that continue one another (arm64's
        // contiguous runs; not armv7's large pages, whose 16 entries repeat one address)
        final boolean oneSequence = linear && (entries == 1 || count == 1 || leafStep == entries * entryStep);
        final long step = entries == 1 ? leafStep : entryStep;
        if (wide && n > 1 && !fresh && oneSequence) { // check and store in one pass
            int stopped = memory.spLongsIfZero(firstAddress, n, e0, step);
            if (stopped < 0) {
                return;
            }
            if (stopped > 0) {
                memory.clearLongs(firstAddress, stopped); // they were zero: put them back before the careful path
            }
        }
        int k0 = fresh ? -1 : wide ? memory.findNonZeroLong(firstAddress, n) : memory.findNonZeroInt(firstAddress, n);
        for (int k = Math.max(k0, 0); k0 >= 0 && k < n; k++) { // conflicts are found before anything is written
            long raw = lp(table + (long) (idx + k) * entryBytes);
            if (raw != 0) {
                if (level < levels - 1 && format.decode(level, raw, v + k * span) instanceof Descriptor.Table t
                    && isEmpty(t.tablePa(), level + 1)) {
                    emptyTables = true; // an empty table left by partial unmaps: the leaf replaces it
                } else {
                    throw alreadyMapped(v + k * span, "entry 0x" + Long.toHexString(raw) + " at level " + level);
                }
            }
        }
        if (linear && !emptyTables) {
            if (oneSequence) {
                storeRun(firstAddress, n, e0, step);
            } else {
                for (int i = 0; i < count; i++) {
                    storeRun(firstAddress + (long) i * entries * entryBytes, entries, e0 + i * leafStep, entryStep);
                }
            }
            return;
        }
        long address = firstAddress;
        for (int i = 0; i < count; i++) {
            long base = e0 + i * leafStep;
            for (int j = 0; j < entries; j++, address += entryBytes) {
                long value = linear ? base + j * entryStep : format.leafEntry(leaf, p + i * size, j, a);
                if (emptyTables) {
                    long raw = lp(address);
                    if (raw != 0 && format.decode(level, raw, v) instanceof Descriptor.Table t) {
                        if (cas(address, raw, value)) {
                            retireSubtree(level + 1, t.tablePa()); // unlinked by the CAS: walks may still be in it
                        }
                        continue;
                    }
                }
                sp(address, value);
            }
        }
    }

    /** @return whether the table maps nothing: every entry is zero or points at a table that maps nothing */
    private boolean isEmpty(long table, int level) {
        int n = 1 << format.levelBits(level);
        for (int i = 0; i < n; i++) {
            long raw = lp(table + (long) i * entryBytes);
            if (raw != 0 && !(level < levels - 1 && format.isTable(level, raw) && isEmpty(format.tableAddress(level, raw), level + 1))) {
                return false;
            }
        }
        return true;
    }

    // ---------------------------------------------------------------------------------------------
    // unmap

    /** Unmaps {@code [va, last]} (inclusive, unsigned) inside the span of {@code table} at {@code level}. */
    private long unmapLevel(int level, long table, long va, long last) {
        final long span = format.entrySpan(level);
        if (level == levels - 1) {
            return unmapLastLevel(table, va, last, span);
        }
        long total = 0;
        long v = va;
        for (;;) {
            long address = table + (long) index(v, level) * entryBytes;
            long entryStart = v & -span;
            long entryLast = entryStart + span - 1;
            long segLast = Long.compareUnsigned(last, entryLast) < 0 ? last : entryLast;
            long raw = la(address);
            if (raw != 0) {
                if (format.isTable(level, raw)) {
                    long next = format.tableAddress(level, raw);
                    boolean whole = v == entryStart && segLast == entryLast;
                    if (whole && level + 1 == levels - 1 && mayRetire()) {
                        // a whole last-level table: out with one CAS (a walker sees all of it or none of it),
                        // then count what it mapped and retire it; no need to clear it, tables are zeroed when
                        // allocated, and a walk that read the pointer before the CAS may still read it
                        if (!cas(address, raw, 0)) {
                            continue; // changed under us (an overlapping call): read it again
                        }
                        total += countLive(next) * format.entrySpan(level + 1);
                        retire(next, level + 1);
                    } else {
                        total += unmapLevel(level + 1, next, v, segLast);
                        if (whole && mayRetire() && cas(address, raw, 0)) {
                            retire(next, level + 1); // its whole span is unmapped: give the table back after the walks
                        }
                    }
                } else if (format.decode(level, raw, v) instanceof Descriptor.Leaf leaf) {
                    long leafSize = leaf.leaf().size();
                    long leafStart = v & -leafSize;
                    long leafLast = leafStart + leafSize - 1;
                    if (Long.compareUnsigned(leafStart, va) >= 0 && Long.compareUnsigned(leafLast, last) <= 0) {
                        long first = table + (long) index(leafStart, level) * entryBytes;
                        for (int j = 0; j < leaf.leaf().entries(); j++) {
                            sp(first + (long) j * entryBytes, 0);
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
        long address = table + (long) index(va, levels - 1) * entryBytes;
        int cleared = wide ? memory.clearLongs(address, n) : memory.clearInts(address, n);
        return cleared * span;
    }

    /** @return the non-zero entries of the last-level table at {@code table}: what it maps, in entries */
    private int countLive(long table) {
        int n = 1 << format.levelBits(levels - 1);
        int live = 0;
        MemorySegment s = direct;
        if (s == null) {
            for (int i = 0; i < n; i++) {
                live += lp(table + (long) i * entryBytes) != 0 ? 1 : 0;
            }
        } else if (wide) {
            long off = table - directBase;
            for (int i = 0; i < n; i++) {
                live += s.get(LONG_LE, off + ((long) i << 3)) != 0 ? 1 : 0;
            }
        } else {
            long off = table - directBase;
            for (int i = 0; i < n; i++) {
                live += s.get(INT_LE, off + ((long) i << 2)) != 0 ? 1 : 0;
            }
        }
        return live;
    }

    /** Splits the last-level run holding {@code v}, if there is one and it sticks out of {@code [va, last]}. */
    private void splitRunAt(long table, long v, long va, long last) {
        int level = levels - 1;
        long address = table + (long) index(v, level) * entryBytes;
        if (lastLevelRun == null) {
            return; // no runs of entries at this format's last level
        }
        long raw = la(address);
        if (raw != 0 && format.isRunEntry(level, raw)) {
            long leafStart = v & -lastLevelRun.size();
            long leafLast = leafStart + lastLevelRun.size() - 1;
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
    private void split(int level, long table, long address, long raw, long v, Descriptor.Leaf leaf) {
        LeafSize ls = leaf.leaf();
        long leafStart = v & -ls.size();
        long leafPa = leaf.pa() - (v - leafStart);
        Attributes a = leaf.attributes();
        if (ls.isRun()) {
            LeafSize single = leafAt(level, ls.entrySpan());
            long first = table + (long) index(leafStart, level) * entryBytes;
            for (int j = 0; j < ls.entries(); j++) {
                sv(first + (long) j * entryBytes, format.leafEntry(single, leafPa + j * single.size(), 0, a));
            }
            return;
        }
        int next = level + 1;
        LeafSize sub = null;
        for (LeafSize l : leaves) {
            if (l.level() == next && l.size() <= ls.size()) {
                sub = l;
                break;
            }
        }
        if (sub == null) {
            throw new AssertionError(format.name() + ": no leaf at level " + next + " to split " + ls + " into");
        }
        long fresh = allocTable(next);
        int count = (int) (ls.size() / sub.size());
        long e0 = format.leafEntry(sub, leafPa, 0, a);
        long at = fresh;
        for (int i = 0; i < count; i++) {
            for (int j = 0; j < sub.entries(); j++, at += entryBytes) {
                sp(at, i == 0 && j == 0 ? e0 : format.leafEntry(sub, leafPa + i * sub.size(), j, a));
            }
        }
        if (!cas(address, raw, tableEntryOrFree(level, fresh))) { // release: the filled table is visible first
            freeUnpublished(fresh, next); // another thread split it first: no one saw ours
        }
    }

    private LeafSize leafAt(int level, long size) {
        for (LeafSize l : leaves) {
            if (l.level() == level && l.size() == size && !l.isRun()) {
                return l;
            }
        }
        throw new AssertionError(format.name() + ": no single-entry leaf of " + size + " bytes at level " + level);
    }

    // ---------------------------------------------------------------------------------------------
    // tables

    private long allocTable(int level) {
        long pa = tables.alloc(format.tableBytes(level));
        tableCount.incrementAndGet();
        return pa;
    }

    /** @return the table descriptor for {@code fresh}; if the format refuses it, frees the table first */
    private long tableEntryOrFree(int level, long fresh) {
        try {
            return format.tableEntry(level, fresh);
        } catch (RuntimeException e) {
            freeUnpublished(fresh, level + 1);
            throw e;
        }
    }

    /** Frees a table no walk ever saw (it lost an install race, or its descriptor was refused): no grace period. */
    private void freeUnpublished(long pa, int level) {
        tables.free(pa, format.tableBytes(level));
        tableCount.decrementAndGet();
    }

    /** A retired table: freed when no walk that began before {@link #tag} bumped the generation is running. */
    private static final class Retired {
        final long pa;
        final long bytes;
        final long tag;
        Retired next;

        Retired(long pa, long bytes, long tag) {
            this.pa = pa;
            this.bytes = bytes;
            this.tag = tag;
        }
    }

    /**
     * Retires a table already unlinked from its parent (the entry that pointed at it is cleared, by a
     * compare-and-set or, in close, by a volatile store): bumps the generation (which also invalidates the
     * walk cache), then frees it at once if no walk that began before is running, else pushes it on the
     * retired list. Lock-free.
     */
    private void retire(long pa, int level) {
        long tag = (long) GENERATION.getAndAdd(this, 1L); // walks announcing a stamp > tag began after the unlink
        long bytes = format.tableBytes(level);
        tableCount.decrementAndGet();
        if (tag < oldestWalk()) {
            // the common case: no walk that began before the unlink is running (the scan comes after the unlink,
            // as in reclaimOnce), so none can read the table: free it now, no list, no allocation
            tables.free(pa, bytes);
            return;
        }
        Retired r = new Retired(pa, bytes, tag);
        retiredBytes.addAndGet(bytes);
        Retired head;
        do {
            head = retired;
            r.next = head;
        } while (!RETIRED.compareAndSet(this, head, r));
    }

    /** Retires {@code table} and every table below it, clearing each entry before retiring the table it named. */
    private void retireSubtree(int level, long table) {
        if (level < levels - 1) {
            int n = 1 << format.levelBits(level);
            for (int i = 0; i < n; i++) {
                long address = table + (long) i * entryBytes;
                long raw = lp(address);
                if (raw != 0 && format.decode(level, raw, 0) instanceof Descriptor.Table t) {
                    sv(address, 0); // a freed parent keeps no pointer to a freed child
                    retireSubtree(level + 1, t.tablePa());
                }
            }
        }
        retire(table, level);
    }

    /**
     * Frees the retired tables that no running walk can reach; called by map, unmap and close after they
     * retire, and by a walk that leaves after a retire. One thread reclaims at a time: a call made while
     * another thread reclaims returns at once and makes that thread pass once more (so the walk that leaves
     * last is always seen by some later scan). No one waits: a descheduled reclaimer delays only the
     * reclamation itself, never a map, an unmap or a walk.
     */
    private void reclaim() {
        if ((int) RECLAIM_REQUESTS.getAndAdd(this, 1) != 0) {
            return; // the running reclaimer passes again, after this call's effects (a slot cleared, a push)
        }
        int missed = 1;
        do {
            reclaimOnce();
            missed = (int) RECLAIM_REQUESTS.getAndAdd(this, -missed) - missed;
        } while (missed != 0);
    }

    /**
     * One pass with no waiting: takes the whole list, reads every announcement once, frees the tables
     * retired before the oldest running walk began and puts the rest back.
     */
    private void reclaimOnce() {
        Retired list = (Retired) RETIRED.getAndSet(this, (Retired) null);
        if (list != null) {
            long oldest = oldestWalk(); // read after taking the list: every table on it was unlinked before
            Retired keep = null;
            Retired keepTail = null;
            long freed = 0;
            for (Retired r = list; r != null; ) {
                Retired next = r.next;
                if (r.tag < oldest) {
                    tables.free(r.pa, r.bytes);
                    freed += r.bytes;
                } else {
                    r.next = keep;
                    keep = r;
                    if (keepTail == null) {
                        keepTail = r;
                    }
                }
                r = next;
            }
            if (keep != null) {
                Retired head;
                do {
                    head = retired;
                    keepTail.next = head;
                } while (!RETIRED.compareAndSet(this, head, keep));
            }
            if (freed != 0) {
                retiredBytes.addAndGet(-freed);
            }
        }
        if (closeRetired && retiredBytes.get() == 0 && FINISHED.compareAndSet(this, false, true)) {
            tables.close(); // the last table of a closed table is back: return the slab pages
        }
    }

    /** @return the generation the oldest running walk announced (Long.MAX_VALUE if none, MIN_VALUE if unknown) */
    private long oldestWalk() {
        if (overflowWalks != 0) {
            return Long.MIN_VALUE;
        }
        long oldest = Long.MAX_VALUE;
        long[] a = announce;
        for (int i = 0; i < SLOTS; i++) {
            long stamp = (long) ANNOUNCE.getVolatile(a, i * SLOT_STRIDE);
            if (stamp != 0 && stamp - 1 < oldest) {
                oldest = stamp - 1;
            }
        }
        return oldest;
    }

    /** Reclaims what it can, then says whether one more table may be retired within {@link #RETIRED_LIMIT}. */
    private boolean mayRetire() {
        if (retiredBytes.get() < RETIRED_LIMIT) {
            return true;
        }
        reclaim();
        return retiredBytes.get() < RETIRED_LIMIT;
    }

    /** @return the bytes of retired tables waiting for walks that could see them to end (at most about {@link #RETIRED_LIMIT}) */
    public long retiredBytes() {
        return retiredBytes.get();
    }

    // ---------------------------------------------------------------------------------------------
    // helpers

    private int index(long v, int level) {
        return (int) ((v >>> format.levelShift(level)) & ((1L << format.levelBits(level)) - 1));
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

    private AlreadyMappedException alreadyMapped(long v, String what) {
        return new AlreadyMappedException(v, format.name() + ": va=0x" + Long.toHexString(v) + " is already mapped (" + what + ")");
    }

    private long lp(long address) {
        return wide ? memory.lpLong(address) : Integer.toUnsignedLong(memory.lpInt(address));
    }

    private long la(long address) {
        return wide ? memory.laLong(address) : Integer.toUnsignedLong(memory.laInt(address));
    }

    private void sp(long address, long value) {
        if (wide) {
            memory.spLong(address, value);
        } else {
            memory.spInt(address, (int) value);
        }
    }

    private void sv(long address, long value) {
        if (wide) {
            memory.soLong(address, value);
        } else {
            memory.soInt(address, (int) value);
        }
    }

    private void storeRun(long address, int count, long first, long step) {
        if (wide) {
            memory.spLongs(address, count, first, step);
        } else {
            memory.spInts(address, count, (int) first, (int) step);
        }
    }

    private boolean cas(long address, long expected, long value) {
        return wide ? memory.casLong(address, expected, value) : memory.casInt(address, (int) expected, (int) value);
    }
}
