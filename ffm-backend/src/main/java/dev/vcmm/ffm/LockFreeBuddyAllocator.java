package dev.vcmm.ffm;

import dev.vcmm.spi.AllocatorStats;
import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemorySpec;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.util.Objects;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A lock-free buddy allocator of one memory type's physical space, with its metadata off-heap.
 *
 * <p><b>Thread-safety:</b> every method is thread-safe. {@link #alloc}, {@link #allocAt} and
 * {@link #free} take no lock and never block: each is a bounded number of steps plus retries of
 * compare-and-set operations that only fail because another thread's operation succeeded (lock-free).
 * They are linearizable in the sense that matters for memory: no block is ever handed out twice and no
 * block is ever lost; every successful operation takes effect at one atomic step (the compare-and-set
 * that clears a free bit, or that marks a block allocated). The one weakening is documented on
 * {@link #alloc}: a failure may be reported while another thread is moving a block between orders.
 *
 * <h2>Design</h2>
 * Marotta et al.'s NBBS keeps the buddy tree itself as the metadata: one status word per tree node,
 * an allocation climbs from its node to the root setting "partially occupied" marks with CAS, and a
 * search scans the nodes of the wanted level. That makes every operation O(depth) atomic steps and the
 * search linear in the number of blocks of the order. This allocator instead keeps the Linux buddy
 * system's shape (a set of free blocks per order, split on alloc, merge on free) and makes each set a
 * lock-free bitmap:
 * <ul>
 *   <li><b>One bit per block per order</b>: bit {@code i} of order {@code k} is set iff block
 *       {@code (k, i)} is free in the shared pool. Taking a block is one CAS that clears its bit.</li>
 *   <li><b>Buddies share a word.</b> Blocks {@code i} and {@code i ^ 1} are adjacent bits of one 64-bit
 *       word (the index origin is aligned to twice the largest block), so a free decides atomically, with
 *       one CAS on one word, between "my buddy is free: take it and merge one order up" and "my buddy is
 *       not free: publish my block". Two buddies freed concurrently can therefore never both end up
 *       free: one of the two CASes sees the other's bit and merges. At every quiescent point no two
 *       free buddies coexist, so a pool that had everything returned is fully coalesced.</li>
 *   <li><b>Hint layers</b> above each bitmap (bit {@code j} of layer {@code L+1}: word {@code j} of layer
 *       {@code L} may be non-zero) make the search O(log64 blocks): a 64 GiB pool finds a free 4 KiB
 *       block in four word reads. A hint may be stale-set but is never stale-clear at a quiescent point.
 *       Hints are set eagerly (by whoever makes a word non-zero, after a plain read shows it unset) and
 *       cleared lazily, only by a search that descends into an empty word: it clears the hint, re-reads
 *       the word and re-sets the hint if the word became non-zero meanwhile (volatile read-modify-writes
 *       are sequentially consistent, so the re-check suffices). A word that empties and fills again, the
 *       common churn, therefore costs its taker and its giver one compare-and-set each and no hint
 *       traffic.</li>
 *   <li><b>Allocated bitmaps</b>, one bit per block per order, record what was handed out and with which
 *       order. A free clears its bit with one atomic AND; finding it already clear is a double free or a
 *       wrong order, reported before anything changes, even when two threads race to free one block.</li>
 *   <li><b>Thread caches</b> (optional, {@link MemorySpec#threadCacheCapacity()} &gt; 0) keep up to that
 *       many free blocks of each order {@code 0..}{@value #CACHE_SMALL_ORDER} per thread, and fewer of the
 *       larger orders up to {@value #CACHE_MAX_ORDER} (2 MiB) where the pool is large enough (see
 *       {@link #CACHE_POOL_SHARE}), refilled by splitting one larger block and flushed half at a time, so
 *       the common alloc/free touches only the thread's own stack and one allocated-bitmap word.</li>
 * </ul>
 *
 * <h2>Operations</h2>
 * <pre>
 *  alloc(k):   for j = k .. maxOrder:  i = claim any set bit of FREE[j]          (1 CAS, clear bit)
 *              split (j -&gt; k):          for m = j-1 .. k: set bit 2i+1 of FREE[m], i = 2i
 *              mark:                    set bit of ALLOCATED[k]                     (1 atomic OR)
 *
 *  free(pa,k): unmark:                  clear bit of ALLOCATED[k], must have been set (1 atomic AND)
 *              loop: w = FREE[k] word;  buddy bit set?  CAS clear it, k++, i = i/2  (merge, continue)
 *                                       otherwise       CAS set own bit             (done)
 *
 *  allocAt(pa,k): for j = k .. maxOrder: CAS clear the bit of the ancestor of pa at order j;
 *              on success split down along pa's path, setting the siblings free
 * </pre>
 * While a split or merge chain is under way the block it carries is in no bitmap; a counter of such
 * "in-transit" chains lets a failing search retry a few times instead of reporting a failure it might
 * owe to a chain in flight.
 *
 * <p>See {@link BuddyLayout} for the metadata layout drawn word by word.
 *
 * <p>References: R. Marotta, M. Ianni, A. Pellegrini, F. Quaglia, "NBBS: A Non-Blocking Buddy System for
 * Multi-core Machines", IEEE CCGrid 2019 and IEEE Trans. on Computers 2021; Linux mm/page_alloc.c
 * (per-order free areas, per-CPU page lists).
 */
public final class LockFreeBuddyAllocator implements BlockAllocator {

    /**
     * Orders up to this one (32 KiB) are always cached at full capacity, as Linux keeps per-CPU lists up to
     * PAGE_ALLOC_COSTLY_ORDER.
     */
    public static final int CACHE_SMALL_ORDER = 3;

    /**
     * Larger orders, up to this one (2 MiB, the order Linux also caches per CPU for transparent huge pages),
     * are cached with capacity halving per order, as far as a thread's worst-case cached bytes stay within
     * 1/{@value #CACHE_POOL_SHARE} of the pool.
     */
    public static final int CACHE_MAX_ORDER = 9;

    /** Threads carve their small blocks from private arenas of this order (2 MiB) where the pool affords it. */
    static final int ARENA_ORDER = 9;
    static final long ARENA_SIZE = 1L << (BlockAllocator.PAGE_SHIFT + ARENA_ORDER);

    /** A thread's cache may park at most this fraction (1/n) of the pool in orders above {@link #CACHE_SMALL_ORDER}. */
    static final int CACHE_POOL_SHARE = 64;

    /** How many times a failing search re-scans while split or merge chains are in transit. */
    private static final int TRANSIT_RETRIES = 128;

    /** Of those, how many spin before the search starts yielding the processor. */
    private static final int SPIN_RETRIES = 32;

    private static final VarHandle LONG = ValueLayout.JAVA_LONG.varHandle();

    private final String name;
    private final BuddyLayout layout;
    private final Arena arena;
    private final MemorySegment meta;
    private final int maxOrder;
    private final long base;
    private final long end;
    private final int cacheCapacity;
    private final int cacheOrders;
    private final int[] cacheCapacities;
    /** Whether threads refill their small caches from private 2 MiB arenas (caches on, pool at least 64 arenas). */
    private final boolean useArenas;
    private final ThreadLocal<ThreadCache> caches;
    private final ConcurrentLinkedQueue<ThreadCache> cacheRegistry = new ConcurrentLinkedQueue<>();
    private final AtomicBoolean closed = new AtomicBoolean();

    /** Test-only pause point: null in production. */
    static volatile PausePoint pausePoint;

    /** A test's callback at a named place inside an operation. */
    @FunctionalInterface
    interface PausePoint {
        void reached(String where, int order, long index);
    }

    private static void pause(String where, int order, long index) {
        PausePoint p = pausePoint;
        if (p != null) {
            p.reached(where, order, index);
        }
    }

    private LockFreeBuddyAllocator(MemorySpec spec) {
        this.name = spec.name();
        this.layout = new BuddyLayout(spec.base(), spec.size(), spec.maxOrder());
        this.maxOrder = layout.maxOrder;
        this.base = spec.base();
        this.end = spec.base() + spec.size();
        this.cacheCapacity = spec.threadCacheCapacity();
        this.cacheCapacities = cacheCapacities(cacheCapacity, maxOrder, spec.size());
        this.cacheOrders = cacheCapacities.length;
        this.useArenas = cacheOrders > 0 && maxOrder >= ARENA_ORDER && spec.size() / CACHE_POOL_SHARE >= ARENA_SIZE;
        this.caches = cacheCapacity == 0 ? null : ThreadLocal.withInitial(this::newCache);
        this.arena = Arena.ofShared();
        this.meta = arena.allocate(layout.totalBytes, BuddyLayout.CACHE_LINE); // zeroed: nothing free yet
        seedFreeBlocks();
    }

    /**
     * Creates an allocator for {@code spec}'s range. The pool starts entirely free, cut into the largest
     * naturally aligned blocks that fit.
     *
     * @param spec the range, order bound and thread-cache capacity (0 turns caches off)
     * @return a new allocator; close it to release its metadata
     */
    public static LockFreeBuddyAllocator create(MemorySpec spec) {
        return new LockFreeBuddyAllocator(Objects.requireNonNull(spec, "spec"));
    }

    /**
     * Creates an allocator over {@code [base, base + size)} with orders up to 1 GiB and no thread caches.
     *
     * @throws IllegalArgumentException if base or size is not a multiple of 4 KiB, or size is not positive
     */
    public static LockFreeBuddyAllocator create(long base, long size) {
        return create(new MemorySpec("pool", base, size, false, MemorySpec.DEFAULT_MAX_ORDER, 0));
    }

    /**
     * @return the capacity of the thread cache of each cached order: {@code capacity} for orders up to
     * {@link #CACHE_SMALL_ORDER}, then halving per order (at least 2) while the worst-case bytes a thread parks
     * stay within the pool's share; empty when caching is off
     */
    static int[] cacheCapacities(int capacity, int maxOrder, long poolSize) {
        if (capacity == 0) {
            return new int[0];
        }
        int small = Math.min(CACHE_SMALL_ORDER, maxOrder);
        int[] caps = new int[Math.min(CACHE_MAX_ORDER, maxOrder) + 1];
        int n = small + 1;
        java.util.Arrays.fill(caps, 0, n, capacity);
        long budget = poolSize / CACHE_POOL_SHARE;
        long used = 0;
        for (int k = small + 1; k < caps.length; k++) {
            int cap = Math.max(2, capacity >>> (k - small));
            used += cap * BlockAllocator.orderSize(k);
            if (used > budget) {
                break;
            }
            caps[k] = cap;
            n = k + 1;
        }
        return java.util.Arrays.copyOf(caps, n);
    }

    private void seedFreeBlocks() {
        long pa = base;
        while (pa < end) {
            int k = maxOrder;
            while (k > 0 && ((pa & (BlockAllocator.orderSize(k) - 1)) != 0 || pa + BlockAllocator.orderSize(k) > end)) {
                k--;
            }
            publishFree(k, layout.index(pa, k));
            pa += BlockAllocator.orderSize(k);
        }
    }

    @Override
    public long base() {
        return base;
    }

    @Override
    public long size() {
        return end - base;
    }

    @Override
    public int maxOrder() {
        return maxOrder;
    }

    /** @return the name of the memory type this allocator serves, for messages. */
    public String name() {
        return name;
    }

    /** @return the capacity of each per-order thread cache, 0 when caching is off. */
    public int threadCacheCapacity() {
        return cacheCapacity;
    }

    /** @return bytes of off-heap metadata this allocator uses. */
    public long metadataBytes() {
        return layout.totalBytes;
    }

    /**
     * Takes a free block of {@code order}, the lowest-addressed one of the smallest free order that fits
     * (address-ordered best fit, which keeps large blocks whole).
     *
     * <p>{@link #NONE} means that no block of order {@code order} or larger was found free in the shared
     * pool by a search that was repeated while other threads had split or merge chains in transit (up to
     * a bound, so the call stays lock-free). With thread caches on, blocks parked in other live threads'
     * caches are not visible: the failing call asks every thread to flush its cache at its next
     * operation, and flushes the caller's own cache and those of terminated threads before it gives up.
     *
     * @return the block's physical address, aligned to its size, or {@link #NONE}
     * @throws IllegalArgumentException if {@code order} is outside {@code [0, maxOrder()]}
     * @throws IllegalStateException    if the allocator is closed
     */
    @Override
    public long alloc(int order) {
        checkOpen();
        checkOrder(order);
        long pa;
        if (order < cacheOrders) {
            ThreadCache cache = caches.get();
            obeyDrain(cache);
            pa = popCached(cache, order);
            if (pa == NONE) {
                pa = takeShared(order);
                if (pa == NONE) {
                    pa = allocAfterDrain(order, cache);
                }
            }
        } else {
            pa = takeShared(order);
            if (pa == NONE && cacheOrders > 0) {
                pa = allocAfterDrain(order, caches.get());
            }
        }
        if (pa != NONE) {
            markAllocated(order, pa);
        }
        return pa;
    }

    private long allocAfterDrain(int order, ThreadCache cache) {
        requestDrain();
        flushAll(cache);
        reclaimDeadThreadCaches();
        return takeShared(order);
    }

    /**
     * Takes the block {@code [pa, pa + orderSize(order))} if all of it is free in the shared pool, by
     * claiming the free block that contains it and splitting that down along {@code pa}'s path.
     * Fails when any part of the block is allocated, parked in another live thread's cache, or carried by
     * a concurrent split or merge; single-threaded, with caches off, it is exact.
     *
     * @return {@code true} if the block is now the caller's
     * @throws IllegalArgumentException if the order is out of range, or {@code pa} is outside the pool or
     *                                  not aligned to the order
     * @throws IllegalStateException    if the allocator is closed
     */
    @Override
    public boolean allocAt(long pa, int order) {
        checkOpen();
        checkBlock(pa, order);
        boolean taken = takeAt(pa, order);
        if (!taken && cacheOrders > 0) {
            requestDrain();
            flushAll(caches.get());
            reclaimDeadThreadCaches();
            taken = takeAt(pa, order);
        }
        if (taken) {
            markAllocated(order, pa);
        }
        return taken;
    }

    /**
     * Returns a block. The allocated bit is cleared first, atomically, so a double free, a free with the
     * wrong order or of an address never handed out is reported, and changes nothing, even when two
     * threads race to free the same block: exactly one of them succeeds.
     *
     * @throws IllegalArgumentException if the order is out of range, or {@code pa} is outside the pool or
     *                                  not aligned to the order
     * @throws IllegalStateException    if the block is not allocated with this order, or the allocator is
     *                                  closed
     */
    @Override
    public void free(long pa, int order) {
        checkOpen();
        checkBlock(pa, order);
        long index = layout.index(pa, order);
        long bit = 1L << (index & 63);
        long old = (long) LONG.getAndBitwiseAnd(meta, layout.allocWord(order, index), ~bit);
        if ((old & bit) == 0) {
            throw new IllegalStateException(describeNotAllocated(pa, order));
        }
        if (order < cacheOrders) {
            ThreadCache cache = caches.get();
            obeyDrain(cache);
            pushCached(cache, order, pa);
        } else {
            freeShared(order, index);
        }
    }

    /**
     * Returns every block in the calling thread's cache to the shared pool, where it coalesces with its
     * buddies, and does the same for the caches of threads that have terminated. Call it before a thread
     * ends, or before checking that a pool is whole again. No effect when caches are off.
     *
     * @throws IllegalStateException if the allocator is closed
     */
    public void releaseThreadCache() {
        checkOpen();
        if (cacheOrders == 0) {
            return;
        }
        flushAll(caches.get());
        reclaimDeadThreadCaches();
    }

    @Override
    public AllocatorStats stats() {
        checkOpen();
        long[] freeBlocks = new long[maxOrder + 1];
        long freeBytes = 0;
        long allocatedBytes = 0;
        long largest = 0;
        for (int k = 0; k <= maxOrder; k++) {
            long freeOff = layout.layerOffset[k][0];
            long allocOff = layout.allocOffset[k];
            long freeCount = 0;
            long allocCount = 0;
            for (long w = 0, n = layout.words[k]; w < n; w++) {
                freeCount += Long.bitCount((long) LONG.getVolatile(meta, freeOff + (w << 3)));
                allocCount += Long.bitCount((long) LONG.getVolatile(meta, allocOff + (w << 3)));
            }
            freeBlocks[k] = freeCount;
            freeBytes += freeCount * BlockAllocator.orderSize(k);
            allocatedBytes += allocCount * BlockAllocator.orderSize(k);
            if (freeCount > 0) {
                largest = BlockAllocator.orderSize(k);
            }
        }
        long cached = 0;
        for (ThreadCache cache : cacheRegistry) {
            cached += cache.cachedBytes();
        }
        return new AllocatorStats(end - base, freeBytes, cached, allocatedBytes, freeBlocks, largest);
    }

    @Override
    public boolean isClosed() {
        return closed.get();
    }

    /**
     * Releases the off-heap metadata. Idempotent. Blocks still allocated or cached are forgotten with it.
     * An operation racing with close fails with an {@link IllegalStateException}; it never touches freed
     * memory (the shared arena's close is a handshake with every thread).
     */
    @Override
    public void close() {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        cacheRegistry.clear();
        pause("close", -1, -1);
        arena.close();
    }

    @Override
    public String toString() {
        return "LockFreeBuddyAllocator{name=" + name + ", base=0x" + Long.toHexString(base) + ", size=0x"
            + Long.toHexString(end - base) + ", maxOrder=" + maxOrder + ", threadCache=" + cacheCapacity
            + (closed.get() ? ", closed" : "") + '}';
    }

    // ---------------------------------------------------------------------------------------------
    // shared pool: the free bitmaps

    /** Takes a block of {@code order} from the shared pool, splitting a larger one if needed. */
    private long takeShared(int order) {
        return takeShared(order, TRANSIT_RETRIES);
    }

    /**
     * Takes a block of {@code order} from the shared pool, splitting a larger one if needed, re-scanning up
     * to {@code retries} times while split or merge chains are in transit. A thread announces a chain on
     * its stripe of the in-transit counter <em>before</em> the compare-and-set that takes the block out of
     * the bitmaps, so a search that finds nothing and then sees no chain announced saw every free block.
     */
    private long takeShared(int order, int retries) {
        for (int attempt = 0; ; attempt++) {
            long index = claimAny(order);
            if (index >= 0) {
                return layout.address(index, order);
            }
            if (order < maxOrder) {
                long stripe = transitStripe();
                LONG.getAndAdd(meta, stripe, 1L);
                try {
                    for (int j = order + 1; j <= maxOrder; j++) {
                        pause("search", j, -1);
                        index = claimAny(j);
                        if (index >= 0) {
                            return layout.address(splitDown(j, index, order, -1), order);
                        }
                    }
                } finally {
                    LONG.getAndAdd(meta, stripe, -1L);
                }
            }
            if (attempt >= retries || !anyInTransit()) {
                return NONE;
            }
            backOff(attempt);
        }
    }

    /** Spins first, then yields, so that a descheduled thread carrying a block in transit gets to run. */
    private static void backOff(int attempt) {
        if (attempt < SPIN_RETRIES) {
            Thread.onSpinWait();
        } else {
            Thread.yield();
        }
    }

    /**
     * Splits the claimed block {@code (from, index)} down to order {@code to}, publishing the halves not
     * kept. With {@code targetIndex < 0} it keeps the lowest part; otherwise the part containing block
     * {@code targetIndex} of order {@code to}. The caller has announced the chain.
     *
     * @return the index at order {@code to} of the part kept
     */
    private long splitDown(int from, long index, int to, long targetIndex) {
        for (int m = from - 1; m >= to; m--) {
            long keep = targetIndex < 0 ? index << 1 : targetIndex >>> (m - to);
            publishFree(m, keep ^ 1); // its buddy is ours, so it cannot merge: just set the bit
            index = keep;
        }
        return index;
    }

    /** @return the offset of the calling thread's stripe of the in-transit counter. */
    private static long transitStripe() {
        return BuddyLayout.IN_TRANSIT_OFFSET
            + (Thread.currentThread().threadId() & (BuddyLayout.TRANSIT_STRIPES - 1)) * BuddyLayout.CACHE_LINE;
    }

    /** @return whether any split or merge chain is under way (a sum of the stripes, read on failure paths only). */
    private boolean anyInTransit() {
        long sum = 0;
        for (int s = 0; s < BuddyLayout.TRANSIT_STRIPES; s++) {
            sum += (long) LONG.getVolatile(meta, BuddyLayout.IN_TRANSIT_OFFSET + (long) s * BuddyLayout.CACHE_LINE);
        }
        return sum != 0;
    }

    /** Takes the specific block {@code (order, index of pa)} by claiming its smallest free ancestor. */
    private boolean takeAt(long pa, int order) {
        long target = layout.index(pa, order);
        for (int attempt = 0; ; attempt++) {
            long stripe = transitStripe();
            LONG.getAndAdd(meta, stripe, 1L); // announced before a claim, as in takeShared
            try {
                for (int j = order; j <= maxOrder; j++) {
                    long ancestor = target >>> (j - order);
                    if (claim(j, ancestor)) {
                        if (j > order) {
                            splitDown(j, ancestor, order, target);
                        }
                        return true;
                    }
                }
            } finally {
                LONG.getAndAdd(meta, stripe, -1L);
            }
            if (attempt >= TRANSIT_RETRIES || !anyInTransit()) {
                return false;
            }
            backOff(attempt);
        }
    }

    /** Clears bit {@code index} of the free bitmap of {@code k} if set. @return whether this call cleared it. */
    private boolean claim(int k, long index) {
        long addr = layout.freeWord(k, index);
        long bit = 1L << (index & 63);
        for (;;) {
            long v = (long) LONG.getVolatile(meta, addr);
            if ((v & bit) == 0) {
                return false;
            }
            if (LONG.compareAndSet(meta, addr, v, v & ~bit)) {
                return true; // an emptied word keeps its hint: the next search that trips on it clears it
            }
        }
    }

    /**
     * Claims the lowest set bit of the free bitmap of order {@code k}, descending the hint layers.
     *
     * @return the block index, or -1 if the bitmap is empty
     */
    private long claimAny(int k) {
        final long[] offsets = layout.layerOffset[k];
        final int top = offsets.length - 1;
        descend:
        for (;;) {
            long w = 0;
            for (int layer = top; layer > 0; layer--) {
                long h = (long) LONG.getVolatile(meta, offsets[layer] + (w << 3));
                if (h == 0) {
                    if (layer == top) {
                        return -1;
                    }
                    clearHint(k, layer, w); // a stale hint led here: repair it and start over
                    continue descend;
                }
                w = (w << 6) + Long.numberOfTrailingZeros(h);
            }
            long addr = offsets[0] + (w << 3);
            for (;;) {
                long v = (long) LONG.getVolatile(meta, addr);
                if (v == 0) {
                    if (top == 0) {
                        return -1;
                    }
                    clearHint(k, 0, w);
                    continue descend;
                }
                long bit = Long.lowestOneBit(v);
                if (LONG.compareAndSet(meta, addr, v, v & ~bit)) {
                    return (w << 6) + Long.numberOfTrailingZeros(bit); // hints are cleared lazily
                }
                // lost a race on this word to another thread's successful CAS: re-read and retry
            }
        }
    }

    /** Sets bit {@code index} of the free bitmap of {@code k}; the caller owns the block and its buddy is not free. */
    private void publishFree(int k, long index) {
        long bit = 1L << (index & 63);
        long old = (long) LONG.getAndBitwiseOr(meta, layout.freeWord(k, index), bit);
        if ((old & bit) != 0) {
            throw new IllegalStateException(corrupt("block already free", k, index));
        }
        pause("published", k, index);
        if (old == 0) {
            setHint(k, 0, index >>> 6);
        }
    }

    /** Returns block {@code (k, index)} to the shared pool, merging with free buddies as far as they go. */
    private void freeShared(int k, long index) {
        long stripe = -1;
        for (;;) {
            long addr = layout.freeWord(k, index);
            long bit = 1L << (index & 63);
            long buddyBit = 1L << ((index ^ 1) & 63);
            long v = (long) LONG.getVolatile(meta, addr);
            if ((v & bit) != 0) {
                throw new IllegalStateException(corrupt("block already free", k, index));
            }
            if (k < maxOrder && (v & buddyBit) != 0) {
                if (stripe < 0) { // announce the merge chain before the buddy leaves the bitmap
                    stripe = transitStripe();
                    LONG.getAndAdd(meta, stripe, 1L);
                }
                if (LONG.compareAndSet(meta, addr, v, v & ~buddyBit)) { // linearization: the buddy is ours, merge
                    k++;
                    index >>>= 1;
                }
            } else if (LONG.compareAndSet(meta, addr, v, v | bit)) { // linearization: the block is free
                pause("published", k, index);
                if (v == 0) {
                    setHint(k, 0, index >>> 6);
                }
                break;
            }
        }
        if (stripe >= 0) {
            LONG.getAndAdd(meta, stripe, -1L);
        }
    }

    /**
     * Word {@code w} of {@code layer} of order {@code k} became non-zero: set its hint bit, and the hints
     * above as long as each hint word was zero before.
     */
    private void setHint(int k, int layer, long w) {
        final long[] offsets = layout.layerOffset[k];
        final int top = offsets.length - 1;
        while (layer < top) {
            long addr = offsets[layer + 1] + ((w >>> 6) << 3);
            long bit = 1L << (w & 63);
            // Already set: nothing to do. A clearer that ANDs it off after this read re-reads our word, which
            // was set before this read, and restores the hint, so skipping the read-modify-write is safe.
            if (((long) LONG.getVolatile(meta, addr) & bit) != 0) {
                return;
            }
            long old = (long) LONG.getAndBitwiseOr(meta, addr, bit);
            if (old != 0) {
                return; // the word above was non-zero: its own hint is set, or being set by its setter
            }
            layer++;
            w >>>= 6;
        }
    }

    /**
     * Word {@code w} of {@code layer} of order {@code k} was seen zero: clear its hint bit, then re-read
     * the word and restore the hint if it became non-zero meanwhile (its setter may have set the hint
     * before our clear). Volatile read-modify-writes are sequentially consistent, so either the setter's
     * OR comes after our AND, or our re-read sees the setter's word.
     */
    private void clearHint(int k, int layer, long w) {
        final long[] offsets = layout.layerOffset[k];
        final int top = offsets.length - 1;
        while (layer < top) {
            long bit = 1L << (w & 63);
            long old = (long) LONG.getAndBitwiseAnd(meta, offsets[layer + 1] + ((w >>> 6) << 3), ~bit);
            if ((old & bit) == 0) {
                return;
            }
            if ((long) LONG.getVolatile(meta, offsets[layer] + (w << 3)) != 0) {
                setHint(k, layer, w);
                return;
            }
            if ((old & ~bit) != 0) {
                return;
            }
            layer++;
            w >>>= 6;
        }
    }

    // ---------------------------------------------------------------------------------------------
    // allocated bitmaps

    private void markAllocated(int order, long pa) {
        long index = layout.index(pa, order);
        long bit = 1L << (index & 63);
        long old = (long) LONG.getAndBitwiseOr(meta, layout.allocWord(order, index), bit);
        if ((old & bit) != 0) {
            throw new IllegalStateException(corrupt("block handed out twice", order, index));
        }
    }

    private boolean isAllocated(int k, long index) {
        return ((long) LONG.getVolatile(meta, layout.allocWord(k, index)) & (1L << (index & 63))) != 0;
    }

    private String describeNotAllocated(long pa, int order) {
        String where = name + ": free(pa=0x" + Long.toHexString(pa) + ", order=" + order + ")";
        for (int k = 0; k <= maxOrder; k++) {
            long index = layout.index(pa, k);
            if (isAllocated(k, index)) {
                long start = layout.address(index, k);
                if (start == pa) {
                    return where + ": the block was allocated with order=" + k + ", not " + order
                        + "; nothing was freed";
                }
                return where + ": the address lies inside block 0x" + Long.toHexString(start) + " of order=" + k
                    + "; nothing was freed";
            }
        }
        return where + ": the block is not allocated (double free, or never allocated); nothing was freed";
    }

    private String corrupt(String what, int k, long index) {
        return name + ": metadata inconsistency (" + what + "): order=" + k + " pa=0x"
            + Long.toHexString(layout.address(index, k)) + "; this is a bug in LockFreeBuddyAllocator";
    }

    // ---------------------------------------------------------------------------------------------
    // thread caches

    private ThreadCache newCache() {
        ThreadCache cache = new ThreadCache(Thread.currentThread(), cacheCapacities,
            (long) LONG.getVolatile(meta, BuddyLayout.DRAIN_EPOCH_OFFSET));
        cacheRegistry.add(cache);
        return cache;
    }

    /** Flushes {@code cache} if another thread asked for a drain since the cache last looked. */
    private void obeyDrain(ThreadCache cache) {
        long epoch = (long) LONG.getVolatile(meta, BuddyLayout.DRAIN_EPOCH_OFFSET); // a plain load on x86
        if (epoch != cache.seenEpoch) {
            cache.seenEpoch = epoch;
            flushAll(cache);
        }
    }

    private void requestDrain() {
        LONG.getAndAdd(meta, BuddyLayout.DRAIN_EPOCH_OFFSET, 1L);
    }

    private long popCached(ThreadCache cache, int order) {
        int n = cache.counts[order];
        if (n == 0) {
            n = refill(cache, order);
            if (n == 0) {
                return NONE;
            }
        }
        long pa = cache.stacks[order][--n];
        cache.counts[order] = n;
        cache.addCachedBytes(-BlockAllocator.orderSize(order));
        return pa;
    }

    /** Fills half the cache of {@code order}: from one larger block split locally, else block by block. */
    private int refill(ThreadCache cache, int order) {
        int batch = Math.max(1, cache.capacities[order] >>> 1);
        int batchShift = 31 - Integer.numberOfLeadingZeros(batch);
        long[] stack = cache.stacks[order];
        int n = 0;
        int bigOrder = order + batchShift;
        long big = batchShift > 0 && bigOrder <= maxOrder ? carveFromArena(cache, BlockAllocator.orderSize(bigOrder)) : NONE;
        boolean fromArena = big != NONE; // its bytes are counted as cached already
        if (big == NONE && batchShift > 0 && bigOrder <= maxOrder) {
            big = takeShared(bigOrder, 0);
        }
        if (big != NONE) {
            long step = BlockAllocator.orderSize(order);
            for (int i = (1 << batchShift) - 1; i >= 0; i--) { // lowest address on top of the stack
                stack[n++] = big + i * step;
            }
        } else {
            while (n < batch) {
                long pa = takeShared(order);
                if (pa == NONE) {
                    break;
                }
                stack[n++] = pa;
            }
            // lowest address on top
            for (int i = 0, j = n - 1; i < j; i++, j--) {
                long t = stack[i];
                stack[i] = stack[j];
                stack[j] = t;
            }
        }
        cache.counts[order] = n;
        if (!fromArena) {
            cache.addCachedBytes(n * BlockAllocator.orderSize(order));
        }
        return n;
    }

    /**
     * Carves {@code bytes} (a power of two) from the thread's arena, taking a fresh 2 MiB arena when the current
     * one is spent, if the pool is large enough for arenas.
     *
     * @return the address of the carved piece, aligned to {@code bytes}, or {@link #NONE}
     */
    private long carveFromArena(ThreadCache cache, long bytes) {
        if (!useArenas || bytes > ARENA_SIZE) {
            return NONE;
        }
        long at = cache.arenaNext == NONE ? NONE : (cache.arenaNext + bytes - 1) & -bytes;
        if (at == NONE || at + bytes > cache.arenaEnd) {
            releaseArena(cache);
            long arena = takeShared(ARENA_ORDER, 0);
            if (arena == NONE) {
                return NONE;
            }
            cache.arenaNext = arena;
            cache.arenaEnd = arena + ARENA_SIZE;
            cache.addCachedBytes(ARENA_SIZE);
            at = arena;
        }
        giveBack(cache.arenaNext, at); // an alignment gap goes back to the shared pool
        cache.addCachedBytes(-(at - cache.arenaNext));
        cache.arenaNext = at + bytes;
        return at;
    }

    /** Gives the uncarved rest of the thread's arena back to the shared pool. */
    private void releaseArena(ThreadCache cache) {
        if (cache.arenaNext != NONE) {
            giveBack(cache.arenaNext, cache.arenaEnd);
            cache.addCachedBytes(-(cache.arenaEnd - cache.arenaNext));
            cache.arenaNext = NONE;
        }
    }

    /** Frees {@code [from, to)}, owned by the caller, as the largest aligned blocks, to the shared pool. */
    private void giveBack(long from, long to) {
        while (from < to) {
            int k = Math.min(maxOrder, Long.numberOfTrailingZeros(from) - BlockAllocator.PAGE_SHIFT);
            while (from + BlockAllocator.orderSize(k) > to) {
                k--;
            }
            freeShared(k, layout.index(from, k));
            from += BlockAllocator.orderSize(k);
        }
    }

    private void pushCached(ThreadCache cache, int order, long pa) {
        int n = cache.counts[order];
        long[] stack = cache.stacks[order];
        if (n == cache.capacities[order]) {
            int half = Math.max(1, n >>> 1);
            for (int i = 0; i < half; i++) { // the bottom half: the least recently used blocks
                freeShared(order, layout.index(stack[i], order));
            }
            System.arraycopy(stack, half, stack, 0, n - half);
            n -= half;
            cache.addCachedBytes(-half * BlockAllocator.orderSize(order));
        }
        stack[n] = pa;
        cache.counts[order] = n + 1;
        cache.addCachedBytes(BlockAllocator.orderSize(order));
    }

    private void flushAll(ThreadCache cache) {
        releaseArena(cache);
        long bytes = 0;
        for (int order = 0; order < cache.counts.length; order++) {
            long[] stack = cache.stacks[order];
            for (int i = 0, n = cache.counts[order]; i < n; i++) {
                freeShared(order, layout.index(stack[i], order));
            }
            bytes += cache.counts[order] * BlockAllocator.orderSize(order);
            cache.counts[order] = 0;
        }
        if (bytes != 0) {
            cache.addCachedBytes(-bytes);
        }
    }

    /** Drains the caches of terminated threads. Exactly one caller wins each cache: the one that removes it. */
    private void reclaimDeadThreadCaches() {
        for (ThreadCache cache : cacheRegistry) {
            // isAlive() == false happens-after every action of the owner (JLS 17.4.4), so its stacks are visible
            if (!cache.owner.isAlive() && cacheRegistry.remove(cache)) {
                flushAll(cache);
            }
        }
    }

    // ---------------------------------------------------------------------------------------------
    // argument checks: one overflow-safe check per public entry

    private void checkOpen() {
        if (closed.get()) {
            throw new IllegalStateException("allocator '" + name + "' is closed");
        }
    }

    private void checkOrder(int order) {
        if (order < 0 || order > maxOrder) {
            throw new IllegalArgumentException(name + ": order=" + order + " is outside [0, " + maxOrder + "]");
        }
    }

    private void checkBlock(long pa, int order) {
        checkOrder(order);
        long size = BlockAllocator.orderSize(order);
        if (pa < base || pa >= end || size > end - pa) {
            throw new IllegalArgumentException(name + ": block pa=0x" + Long.toHexString(pa) + " order=" + order
                + " is outside the pool [0x" + Long.toHexString(base) + ", 0x" + Long.toHexString(end) + ")");
        }
        if ((pa & (size - 1)) != 0) {
            throw new IllegalArgumentException(name + ": pa=0x" + Long.toHexString(pa) + " is not aligned to order="
                + order + " (" + size + " bytes)");
        }
    }
}
