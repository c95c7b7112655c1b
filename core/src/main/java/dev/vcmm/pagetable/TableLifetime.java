package dev.vcmm.pagetable;

import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.PhysicalMemory;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The life of one page table's tables: allocated zeroed, published by the mapper, unlinked and <em>retired</em>,
 * and given back to the allocator only after every walk that could have read the pointer to them has ended
 * (epoch-based reclamation; "Table reclamation" in {@code docs/architecture.md}). It owns the table allocator,
 * the epoch ({@link #generation()}), the walk announcements and the list of retired tables.
 *
 * <p><b>Thread-safety:</b> lock-free, and nothing here waits for another thread. {@link #enter()} and
 * {@link #leave} may run from any threads at any time; {@link #alloc}, {@link #retire}, {@link #reclaim} and
 * the other methods from the threads that map and unmap, concurrently; {@link #close} must not race with
 * those (it may race with walks).
 *
 * <pre>
 * walk       stamp = generation + 1; claim a free slot: CAS 0 -&gt; stamp; full fence ... clear the slot
 * retire(t)  tag = generation++ (also makes the walk cache stale); if no announced stamp - 1 &lt;= tag: free t now,
 *            else push {t, tag} on the retired stack
 * reclaim    one thread at a time: take the stack, free what is older than every announced walk, push the rest
 * </pre>
 */
final class TableLifetime {

    private static final VarHandle GENERATION;
    private static final VarHandle RETIRED;
    private static final VarHandle OVERFLOW_WALKS;
    private static final VarHandle FINISHED;
    private static final VarHandle RECLAIM_REQUESTS;
    private static final VarHandle ANNOUNCE = MethodHandles.arrayElementVarHandle(long[].class);

    static {
        try {
            MethodHandles.Lookup lookup = MethodHandles.lookup();
            GENERATION = lookup.findVarHandle(TableLifetime.class, "generation", long.class);
            RETIRED = lookup.findVarHandle(TableLifetime.class, "retired", Retired.class);
            OVERFLOW_WALKS = lookup.findVarHandle(TableLifetime.class, "overflowWalks", long.class);
            FINISHED = lookup.findVarHandle(TableLifetime.class, "finished", boolean.class);
            RECLAIM_REQUESTS = lookup.findVarHandle(TableLifetime.class, "reclaimRequests", int.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    /** Walk announcement slots: a power of two, a few per CPU so that concurrent walks rarely probe. */
    private static final int SLOTS = Math.min(64, Integer.highestOneBit(Math.max(8, 4 * Runtime.getRuntime().availableProcessors()) * 2 - 1));
    /** Longs between two slots: one cache line each, so walks of different threads do not share a line. */
    private static final int SLOT_STRIDE = 8;

    private final PageTableFormat format;
    private final Geometry geometry;
    private final TableMemory entries;
    private final TableAllocator tables;
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
    /** Set by {@link #close} once every table is retired: reclaiming the last then closes the table allocator. */
    private volatile boolean closeRetired;
    /** The table allocator has been closed (once). */
    private volatile boolean finished;
    /**
     * Reclaim requests not yet served: the thread that raises it from 0 reclaims, and passes again as long
     * as requests came in meanwhile (the "work in progress" counter of drain loops). No one waits on it.
     */
    private volatile int reclaimRequests;

    TableLifetime(PageTableFormat format, Geometry geometry, TableMemory entries, PhysicalMemory memory,
                  BlockAllocator allocator) {
        this.format = format;
        this.geometry = geometry;
        this.entries = entries;
        this.tables = new TableAllocator(memory, allocator);
    }

    /** {@return the epoch: bumped by every retire, so a value read before a walk names the tables it may see} */
    long generation() {
        return generation;
    }

    /** {@return the number of tables linked (allocated and not retired)} */
    long tableCount() {
        return tableCount.get();
    }

    /** {@return the bytes of linked tables} */
    long tableBytes() {
        return tables.bytesInUse() - retiredBytes.get();
    }

    /** {@return the bytes held from the block allocator (linked, retired, and the slab's free slots and spare)} */
    long heldBytes() {
        return tables.bytesHeld();
    }

    /** {@return the bytes of retired tables waiting for walks that could see them to end} */
    long retiredBytes() {
        return retiredBytes.get();
    }

    /** {@return whether tables wait on the retired list (a plain hint for the callers that then {@link #reclaim})} */
    boolean hasRetired() {
        return retired != null;
    }

    // ---------------------------------------------------------------------------------------------
    // allocation

    /** {@return the physical address of a new zeroed table of {@code level}, not yet linked} */
    long alloc(int level) {
        long pa = tables.alloc(geometry.tableBytes(level));
        tableCount.incrementAndGet();
        return pa;
    }

    /** {@return the table descriptor for {@code fresh} at {@code level}; if the format refuses it, frees the table first} */
    long tableEntryOrFree(int level, long fresh) {
        try {
            return format.tableEntry(level, fresh);
        } catch (RuntimeException e) {
            freeUnpublished(fresh, level + 1);
            throw e;
        }
    }

    /** Frees a table no walk ever saw (it lost an install race, or its descriptor was refused): no grace period. */
    void freeUnpublished(long pa, int level) {
        tables.free(pa, geometry.tableBytes(level));
        tableCount.decrementAndGet();
    }

    // ---------------------------------------------------------------------------------------------
    // walks

    /**
     * Announces a walk: claims a free slot with 1 + the current generation. Every table retired from now on
     * gets a tag at least that generation, so the reclaimer keeps it while this slot holds the value.
     *
     * @return the slot's index in {@link #announce}, or -1 if the walk counted itself in {@link #overflowWalks}
     */
    int enter() {
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

    /** Ends a walk begun by {@link #enter}; if a table was retired while it ran, reclaims what no walk holds any more. */
    void leave(int slot) {
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

    /** {@return the generation the oldest running walk announced (Long.MAX_VALUE if none, MIN_VALUE if unknown)} */
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

    // ---------------------------------------------------------------------------------------------
    // retire and reclaim

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
     * compare-and-set or, in close, by a release store): bumps the generation (which also invalidates the
     * walk cache), then frees it at once if no walk that began before is running, else pushes it on the
     * retired list. Lock-free.
     */
    void retire(long pa, int level) {
        long tag = (long) GENERATION.getAndAdd(this, 1L); // walks announcing a stamp > tag began after the unlink
        long bytes = geometry.tableBytes(level);
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
    void retireSubtree(int level, long table) {
        if (level < geometry.lastLevel()) {
            int n = geometry.entries(level);
            int entryBytes = geometry.entryBytes();
            for (int i = 0; i < n; i++) {
                long address = table + (long) i * entryBytes;
                long raw = entries.lp(address);
                if (raw != 0 && format.decode(level, raw, 0) instanceof Descriptor.Table t) {
                    entries.so(address, 0); // a freed parent keeps no pointer to a freed child
                    retireSubtree(level + 1, t.tablePa());
                }
            }
        }
        retire(table, level);
    }

    /** Reclaims what it can, then says whether one more table may be retired within {@link PageTable#RETIRED_LIMIT}. */
    boolean mayRetire() {
        if (retiredBytes.get() < PageTable.RETIRED_LIMIT) {
            return true;
        }
        reclaim();
        return retiredBytes.get() < PageTable.RETIRED_LIMIT;
    }

    /**
     * Frees the retired tables that no running walk can reach; called by map, unmap and close after they
     * retire, and by a walk that leaves after a retire. One thread reclaims at a time: a call made while
     * another thread reclaims returns at once and makes that thread pass once more (so the walk that leaves
     * last is always seen by some later scan). No one waits: a descheduled reclaimer delays only the
     * reclamation itself, never a map, an unmap or a walk.
     */
    void reclaim() {
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

    /**
     * Retires every table under and including {@code root} (the caller has made walks fault first), and gives
     * the memory back as soon as no walk can see it: now if none runs, else when the last one leaves. Must be
     * called once.
     */
    void close(long root) {
        GENERATION.getAndAdd(this, 1L); // the walk cache is stale
        retireSubtree(0, root);
        closeRetired = true;
        reclaim();
    }
}
