package dev.vcmm.ffm;

import dev.vcmm.spi.AllocatorStats;
import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemorySpec;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.util.Iterator;
import java.util.Objects;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A lock-free buddy allocator of one memory type's physical space, with its metadata off-heap.
 *
 * <p><b>Thread-safety:</b> every method is thread-safe. What is lock-free and what is not:
 * <ul>
 *   <li>{@link #alloc}, {@link #allocBulk}, {@link #allocAt} and {@link #free} take no lock and never wait for
 *       another thread: each is a bounded number of steps plus retries of compare-and-set operations that only fail
 *       because another thread's operation changed the same word (lock-free). A thread stopped anywhere
 *       inside one of them stops no other thread. Blocks parked in other threads' caches are taken back
 *       with atomic exchanges, never by asking those threads.</li>
 *   <li>Successful operations are linearizable: each takes effect at one atomic step (the compare-and-set
 *       or exchange that takes a block, the compare-and-set that publishes a free block); no block is ever
 *       handed out twice and none is lost.</li>
 *   <li>A failing {@link #alloc} ({@link #NONE}) is linearizable too: it returns {@link #NONE} only after a
 *       search during which, as proved by the event words (see <em>Failure proofs</em>), no block of the
 *       order or larger was free anywhere, in the shared pool or in any thread's cache. The one exception
 *       is bounded waiting: a round can only prove a failure while no other thread is inside a bracket
 *       (a few instructions between taking a block out of the bitmaps and putting its pieces back); if
 *       other threads are inside brackets at every one of {@value #VALIDATION_ROUNDS} rounds (one stopped
 *       there, or several splitting and merging without pause) and no round's search finds a block, the
 *       call returns {@link #NONE} rather than wait (waiting would not be lock-free; helping would close
 *       the gap). Such failures are counted by {@link #unprovenFailures()}; none was seen in 3 x 8 M allocs
 *       of two threads churning splits and merges of a whole 1 GiB pool.</li>
 *   <li>{@link #close} is not lock-free with respect to other threads' operations: closing the shared
 *       arena is a handshake with every thread. {@link #stats} reads words one by one and is a consistent
 *       snapshot only when no other thread is operating.</li>
 *   <li>Reclaiming the caches of terminated threads runs under a try-lock (one sweeper at a time; others
 *       skip the sweep rather than wait).</li>
 * </ul>
 *
 * <h2>Design</h2>
 * Marotta et al.'s NBBS keeps the buddy tree itself as the metadata: one status word per tree node,
 * an allocation climbs from its node to the root setting "partially occupied" marks with CAS, and a
 * search scans the nodes of the wanted level. This allocator instead keeps the Linux buddy system's shape
 * (a set of free blocks per order, split on alloc, merge on free) and makes each set a lock-free bitmap:
 * <ul>
 *   <li><b>Two bits per block per order, in one word</b>: a block's FREE bit (set iff it is free in the
 *       shared pool) and its ALLOCATED bit (set iff it is handed out with that order) live in the same
 *       64-bit block word, 32 blocks to a word ({@link BuddyLayout}). Taking a free block and marking it
 *       allocated is one CAS; so is freeing it, which clears the ALLOCATED bit in the CAS that publishes
 *       the block or takes its buddy. A double free or a wrong order is reported before anything
 *       changes.</li>
 *   <li><b>Buddies share a word.</b> Blocks {@code i} and {@code i ^ 1} sit in one block word (the index
 *       origin is aligned to twice the largest block), so a free decides atomically, with one CAS on one
 *       word, between "my buddy is free: take it and merge one order up" and "my buddy is not free:
 *       publish my block". At every quiescent point no two free buddies coexist.</li>
 *   <li><b>Hint layers</b> above each order's block words (bit {@code j} of layer 1: block word {@code j}
 *       may have a FREE bit set; bit {@code j} of layer {@code L+1}: word {@code j} of layer {@code L} may
 *       be non-zero; the top layer is at most one line, scanned) make the search O(log64 blocks). Hints
 *       are set by whoever makes a word non-empty and cleared lazily by a search that descends into an
 *       empty word (which re-reads the word and restores the hint if it filled meanwhile). A hint can
 *       therefore be missing for a non-empty word, but only while some thread is inside a bracket (below)
 *       on that order.</li>
 *   <li><b>Spread searches.</b> For the small orders (up to {@value #SPREAD_MAX_ORDER}) a search follows, at
 *       the last hint layer, the lowest set bit in the thread's class (its id mod 8: hint bits {@code c},
 *       {@code c + 8}, ...) rather than the lowest, falling back to the lowest; with caches off the 64
 *       block words under one hint word are stored transposed ({@link BuddyLayout#spreadWord}), so that
 *       threads on the shared path take and return blocks on different cache lines, as per-CPU free lists
 *       keep CPUs apart. Larger orders keep address order (best fit, lowest address), which keeps large
 *       blocks whole.</li>
 *   <li><b>Thread caches</b> (optional, {@link MemorySpec#threadCacheCapacity()} &gt; 0) keep free blocks of
 *       the small orders per thread, refilled from a private 2 MiB arena where the pool affords it. Their
 *       total is bounded: every cache holds <em>credit</em> taken from one budget for the whole allocator
 *       (by default 1/{@value #DEFAULT_CACHE_BUDGET_SHARE} of the pool, see {@link #create(MemorySpec, long)}),
 *       and never caches more bytes than its credit. Every slot is one atomic word, so any thread can take
 *       blocks out of any cache without the owner's help (see {@link ThreadCache}); an alloc that would fail
 *       does exactly that. Caches of terminated threads are found by a sweep on the allocator's slow paths
 *       (refills, new caches, stats) and given back with their credit; the registry holds threads weakly.</li>
 * </ul>
 *
 * <h2>Operations</h2>
 * <pre>
 *  alloc(k):   j = k:                   claim a FREE bit of order k and set its ALLOCATED bit (1 CAS)
 *              else j = k+1 .. maxOrder: i = claim a FREE bit of order j                (1 CAS)
 *                split (j -&gt; k):        for m = j-1 .. k: set FREE bit 2i+1 of order m, i = 2i
 *                mark:                  set ALLOCATED bit of (k, i)                    (1 atomic OR)
 *
 *  free(pa,k): loop: v = block word;    first step: ALLOCATED bit of (k, i) must be set, else report
 *                                       buddy FREE bit set?  CAS clear it (and, first step, own
 *                                                            ALLOCATED bit), k++, i = i/2  (merge)
 *                                       otherwise            CAS set own FREE bit (and, first step,
 *                                                            clear own ALLOCATED bit)      (done)
 *  With thread caches, a cached order's alloc pops a block and sets its ALLOCATED bit (1 atomic OR),
 *  its free clears the bit (1 atomic AND) and pushes the block: cached blocks are neither FREE nor
 *  ALLOCATED.
 * </pre>
 *
 * <h2>Failure proofs</h2>
 * A search that finds nothing has not seen every free block: a block may be in transit (a split or merge
 * chain carries it outside the bitmaps), or set in its word but not yet reachable through the hints, or
 * moved by a chain that started and finished during the scan from an order not yet read to one already
 * read. Every operation that can make a free block of order {@code m} appear, move, or become unreachable
 * therefore runs inside a <em>bracket</em> on an event word of order {@code m} (its thread's stripe; see
 * {@link BuddyLayout}): a free into an empty word brackets its CAS and hint publication at its order, a
 * merge brackets the order of the block it carries, moving up one order per step; a split from order
 * {@code j} brackets order {@code j - 1} from before the claim until every half is published; a hint
 * repair brackets its order. A free into a non-empty word needs no bracket (see {@link #freeShared}). Outside all brackets of an order, every
 * free block of it is in its bitmap and reachable through the hints. A failing alloc of order {@code k}
 * then proves its failure: it sums the event words of orders {@code k..maxOrder} (none open), searches,
 * and sums them again; equal sums mean that no bracket opened or closed during the search, so the free
 * blocks of those orders only decreased and the search, which saw each of them reachable, saw none: at the
 * search's end none was free. With caches on, the alloc first takes every cached block back, and the proof
 * also requires each cache's operation count unchanged and its slots empty before and after, and no cache
 * created meanwhile. Otherwise it searches again, up to {@value #VALIDATION_ROUNDS} rounds.
 *
 * <p>Successful operations pay for the proof with two uncontended atomic adds on the thread's own stripe
 * per split, per merge step and per free into an empty word; an alloc without a split and a free into a
 * non-empty word pay nothing: each is one compare-and-set on the shared pool, plus the hint reads.
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

    /** By default all thread caches together hold at most 1/n of the pool. */
    public static final int DEFAULT_CACHE_BUDGET_SHARE = 32;

    /** Threads carve their small blocks from private arenas of this order (2 MiB) where the pool affords it. */
    static final int ARENA_ORDER = 9;
    static final long ARENA_SIZE = 1L << (BlockAllocator.PAGE_SHIFT + ARENA_ORDER);

    /** A thread's cache may park at most this fraction (1/n) of the pool in orders above {@link #CACHE_SMALL_ORDER}. */
    static final int CACHE_POOL_SHARE = 64;

    /** Searches of orders up to this one spread threads over the bitmap words of one hint word. */
    static final int SPREAD_MAX_ORDER = 3;

    /** How many times a failing alloc searches again before it gives up proving its failure. */
    static final int VALIDATION_ROUNDS = 4096;

    /** Of those, how many spin before the search starts yielding the processor. */
    private static final int SPIN_ROUNDS = 32;

    /** Dead-thread caches looked at per slow-path sweep step. */
    private static final int SWEEP_STEP = 4;

    private static final VarHandle LONG = ValueLayout.JAVA_LONG.varHandle();

    private static final int OPEN = 0;
    private static final int CLOSING = 1;
    private static final int CLOSED = 2;

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
    /** The most bytes all thread caches together may hold. */
    private final long cacheBudget;
    /** Credit is taken from the budget in multiples of this. */
    private final long creditQuantum;
    /** Whether threads refill their small caches from private 2 MiB arenas (caches on, budget of at least 2 arenas). */
    private final boolean useArenas;
    private final ThreadLocal<ThreadCache> caches;
    private final ConcurrentLinkedQueue<ThreadCache> cacheRegistry = new ConcurrentLinkedQueue<>();
    /** The sweeper's try-lock and its position in the registry. */
    private final AtomicBoolean sweeping = new AtomicBoolean();
    private Iterator<ThreadCache> sweepHand;
    private final AtomicLong unprovenFailures = new AtomicLong();
    /** Counts registry additions and removals: a failing alloc's proof that the set of caches it read stayed the same. */
    private final AtomicLong registryChanges = new AtomicLong();
    private final AtomicInteger state = new AtomicInteger(OPEN);

    /** Test-only pause point: null in production, where each call site costs one load of a static field. */
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

    private LockFreeBuddyAllocator(MemorySpec spec, long cacheBudget) {
        this.name = spec.name();
        this.layout = new BuddyLayout(spec.base(), spec.size(), spec.maxOrder(), spec.threadCacheCapacity() == 0);
        this.maxOrder = layout.maxOrder;
        this.base = spec.base();
        this.end = spec.base() + spec.size();
        this.cacheCapacity = spec.threadCacheCapacity();
        this.cacheCapacities = cacheCapacities(cacheCapacity, maxOrder, spec.size());
        this.cacheOrders = cacheCapacities.length;
        this.cacheBudget = cacheOrders == 0 ? 0 : cacheBudget;
        this.creditQuantum = Math.max(BlockAllocator.PAGE_SIZE, (this.cacheBudget / 16) & -BlockAllocator.PAGE_SIZE);
        this.useArenas = cacheOrders > 0 && maxOrder >= ARENA_ORDER && this.cacheBudget >= 2 * ARENA_SIZE;
        this.caches = cacheOrders == 0 ? null : ThreadLocal.withInitial(this::newCache);
        this.arena = Arena.ofShared();
        this.meta = arena.allocate(layout.totalBytes, BuddyLayout.CACHE_LINE); // zeroed: nothing free yet
        seedFreeBlocks();
    }

    /**
     * Creates an allocator for {@code spec}'s range, with thread caches (if the spec turns them on) bounded
     * in total by 1/{@value #DEFAULT_CACHE_BUDGET_SHARE} of the pool. The pool starts entirely free, cut into
     * the largest naturally aligned blocks that fit.
     *
     * @param spec the range, order bound and thread-cache capacity (0 turns caches off)
     * @return a new allocator; close it to release its metadata
     */
    public static LockFreeBuddyAllocator create(MemorySpec spec) {
        Objects.requireNonNull(spec, "spec");
        return new LockFreeBuddyAllocator(spec, spec.size() / DEFAULT_CACHE_BUDGET_SHARE);
    }

    /**
     * Creates an allocator for {@code spec}'s range whose thread caches hold at most {@code cacheBudget}
     * bytes all together.
     *
     * @param spec        the range, the largest order and the capacity of each thread cache
     * @param cacheBudget the bound on the bytes of all thread caches, in {@code [0, spec.size()]}; 0 caches
     *                    nothing even if the spec has a capacity
     * @return the allocator, every block free; the caller closes it
     * @throws IllegalArgumentException if {@code cacheBudget} is outside {@code [0, spec.size()]}
     */
    public static LockFreeBuddyAllocator create(MemorySpec spec, long cacheBudget) {
        Objects.requireNonNull(spec, "spec");
        if (cacheBudget < 0 || cacheBudget > spec.size()) {
            throw new IllegalArgumentException("cacheBudget=" + cacheBudget + " must be in [0, size=" + spec.size() + "]");
        }
        return new LockFreeBuddyAllocator(spec, cacheBudget);
    }

    /**
     * Creates an allocator over {@code [base, base + size)} with orders up to 1 GiB and no thread caches.
     *
     * @param base physical address of the first byte, a multiple of 4 KiB
     * @param size bytes, a positive multiple of 4 KiB
     * @return the allocator, every block free; the caller closes it
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

    /** {@return the name of the memory type this allocator serves, for messages} */
    public String name() {
        return name;
    }

    /** {@return the capacity of each per-order thread cache, 0 when caching is off} */
    public int threadCacheCapacity() {
        return cacheCapacity;
    }

    /** {@return the most bytes all thread caches together may hold (0 when caching is off)} */
    public long cacheBudget() {
        return cacheBudget;
    }

    /** {@return bytes of off-heap metadata this allocator uses} */
    public long metadataBytes() {
        return layout.totalBytes;
    }

    /**
     * {@return how many failing allocs returned {@link #NONE} without completing their proof, because another
     * thread stayed inside a bracket through every validation round (see the class comment)}
     */
    public long unprovenFailures() {
        return unprovenFailures.get();
    }

    /** {@return caches in the registry (live threads' and dead ones not yet swept); for tests} */
    int registeredCaches() {
        return cacheRegistry.size();
    }

    /**
     * Takes a free block of {@code order}, from the calling thread's cache if it has one, else from the
     * shared pool: a block of the smallest free order that fits (best fit), split down as needed.
     *
     * <p>{@link #NONE} is linearizable: at some instant during the call no block of order {@code order} or
     * larger was free, neither in the shared pool nor in any thread's cache (blocks in other threads' caches
     * are taken back before the call gives up). The only exception is described in the class comment and
     * counted by {@link #unprovenFailures()}.
     *
     * @return the block's physical address, aligned to its size, or {@link #NONE}
     * @throws IllegalArgumentException if {@code order} is outside {@code [0, maxOrder()]}
     * @throws IllegalStateException    if the allocator is closed
     */
    @Override
    public long alloc(int order) {
        checkOpen();
        checkOrder(order);
        if (order < cacheOrders) {
            ThreadCache cache = caches.get();
            long pa = popCached(cache, order);
            if (pa == NONE) {
                pa = refillAndPop(cache, order);
            }
            if (pa != NONE) {
                markAllocated(order, pa);
                return pa;
            }
        }
        long pa = takeShared(order, true); // marked allocated by the same compare-and-set that takes it
        return pa != NONE ? pa : allocProven(order);
    }

    /**
     * {@inheritDoc}
     *
     * <p>Here: for orders the thread cache serves, one {@link #alloc} at a time (cache pops). Otherwise it
     * takes blocks from the shared pool in passes, each linearized at one compare-and-set as if every
     * block it took had been taken by its own alloc:
     * <ol>
     *   <li>one compare-and-set claims and marks as many free blocks of the order as the block word it
     *       reaches holds (up to 32, at most the rest of {@code count});</li>
     *   <li>when no free block of the order is reachable, it takes one larger block of up to 32 pieces
     *       (order {@code order + min(5, floor(log2(rest)))} or, failing that, smaller), split from the
     *       pool like an alloc's, and marks all its pieces allocated with one atomic OR (they share a
     *       word);</li>
     *   <li>when no such block is found either, it calls {@link #alloc} for one block and stops at the
     *       first {@link #NONE}.</li>
     * </ol>
     * So a result below {@code count} means exactly what an alloc's {@link #NONE} means here:
     * linearizable, except as counted by {@link #unprovenFailures()}. Lock-free like {@link #alloc}: each
     * pass is bounded retries of compare-and-sets that fail only because another thread changed the word.
     * Unlike {@code count} allocs it is not best fit across passes 2 and 3: it may cut a larger block
     * while a smaller one that would fit the rest is free.
     */
    @Override
    public int allocBulk(int order, long[] out, int offset, int count) {
        checkOpen();
        checkOrder(order);
        Objects.checkFromIndexSize(offset, count, out.length);
        if (order < cacheOrders) {
            return BlockAllocator.super.allocBulk(order, out, offset, count);
        }
        int n = 0;
        while (n < count) {
            long claimed = claimBits(order, true, count - n);
            if (claimed >= 0) {
                long first = (claimed >>> 32) << BuddyLayout.WORD_SHIFT;
                for (long bits = claimed & BuddyLayout.FREE_MASK; bits != 0; bits &= bits - 1) {
                    out[offset + n++] = layout.address(first + Long.numberOfTrailingZeros(bits), order);
                }
                pause("bulk-claim", order, Long.bitCount(claimed & BuddyLayout.FREE_MASK));
                continue;
            }
            int got = takeAndCut(order, out, offset + n, count - n);
            if (got > 0) {
                n += got;
                pause("bulk-cut", order, got);
                continue;
            }
            long pa = alloc(order);
            if (pa == NONE) {
                break;
            }
            out[offset + n++] = pa;
        }
        return n;
    }

    /**
     * Takes one free block of order {@code order + p} from the shared pool, {@code p} as large as the rest
     * wants (at most 5, so that its pieces share one block word) and the pool affords, and hands out its
     * {@code 2^p} pieces of {@code order}, marked allocated with one atomic OR.
     *
     * @return the number of pieces written to {@code out[at...]}, 0 if no block of order above
     * {@code order} was found
     */
    private int takeAndCut(int order, long[] out, int at, int rest) {
        int p = Math.min(Math.min(BuddyLayout.WORD_SHIFT, 31 - Integer.numberOfLeadingZeros(rest)), maxOrder - order);
        for (; p > 0; p--) {
            long big = takeShared(order + p, false);
            if (big == NONE) {
                continue;
            }
            int pieces = 1 << p;
            long first = layout.index(big, order);
            long free = ((1L << pieces) - 1) << (first & (BuddyLayout.BLOCKS_PER_WORD - 1));
            long allocated = free << BuddyLayout.BLOCKS_PER_WORD;
            long old = (long) LONG.getAndBitwiseOr(meta, layout.word(order, first), allocated);
            if ((old & (allocated | free)) != 0) {
                throw new IllegalStateException(corrupt("piece of a taken block free or allocated", order, first));
            }
            long size = BlockAllocator.orderSize(order);
            for (int i = 0; i < pieces; i++) {
                out[at + i] = big + i * size;
            }
            return pieces;
        }
        return 0;
    }

    /**
     * Takes the block {@code [pa, pa + orderSize(order))} if all of it is free, by claiming the free block
     * that contains it and splitting that down along {@code pa}'s path. If that fails, blocks parked in
     * thread caches are taken back and the claim is tried again, while brackets on those orders come and go.
     * Fails when any part of the block is allocated (or, rarely, carried by a chain that outlasts the
     * retries); single-threaded it is exact.
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
        long target = layout.index(pa, order);
        boolean taken = takeAt(target, order);
        for (int round = 0; !taken && round < VALIDATION_ROUNDS; round++) {
            if (cacheOrders > 0) {
                stealAll();
            }
            long before = eventSum(order);
            taken = takeAt(target, order);
            if (taken || (before >= 0 && eventSum(order) == before)) {
                break;
            }
            backOff(round);
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
        if (order >= cacheOrders) {
            freeShared(order, index, true); // one compare-and-set unmarks it and publishes or merges it
            return;
        }
        long bit = BuddyLayout.allocBit(index);
        long old = (long) LONG.getAndBitwiseAnd(meta, layout.word(order, index), ~bit);
        if ((old & bit) == 0) {
            throw new IllegalStateException(describeNotAllocated(pa, order));
        }
        if (!pushCached(caches.get(), order, pa)) {
            freeShared(order, index, false);
        }
    }

    /**
     * Returns every block in the calling thread's cache, and its credit, to the shared pool, where the
     * blocks coalesce with their buddies, and does the same for the caches of threads that have terminated.
     * Call it before checking that a pool is whole again. No effect when caches are off.
     *
     * @throws IllegalStateException if the allocator is closed
     */
    public void releaseThreadCache() {
        checkOpen();
        if (cacheOrders == 0) {
            return;
        }
        flushAll(caches.get());
        sweep(Integer.MAX_VALUE);
    }

    /**
     * {@inheritDoc}
     *
     * <p>Also gives back the caches of threads that have terminated, so a pool whose threads are gone
     * reads whole.
     */
    @Override
    public AllocatorStats stats() {
        checkOpen();
        if (cacheOrders > 0) {
            sweep(Integer.MAX_VALUE);
        }
        long[] freeBlocks = new long[maxOrder + 1];
        long freeBytes = 0;
        long allocatedBytes = 0;
        long largest = 0;
        for (int k = 0; k <= maxOrder; k++) {
            long wordsOff = layout.layerOffset[k][0];
            long freeCount = 0;
            long allocCount = 0;
            for (long w = 0, n = layout.paddedWords[k]; w < n; w++) { // every physical word, in any order
                long v = (long) LONG.getVolatile(meta, wordsOff + (w << 3));
                freeCount += Long.bitCount(v & BuddyLayout.FREE_MASK);
                allocCount += Long.bitCount(v >>> BuddyLayout.BLOCKS_PER_WORD);
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
        return state.get() == CLOSED;
    }

    /**
     * Releases the off-heap metadata. Idempotent, and retryable: if releasing fails, the allocator stays
     * open and unchanged and the exception is thrown; a later close tries again. Blocks still allocated or
     * cached are forgotten with it. An operation racing with close fails with an
     * {@link IllegalStateException}; it never touches freed memory (the shared arena's close is a handshake
     * with every thread). A close called while another is in progress returns at once.
     */
    @Override
    public void close() {
        if (!state.compareAndSet(OPEN, CLOSING)) {
            return;
        }
        try {
            pause("close", -1, -1);
            arena.close();
        } catch (RuntimeException | Error e) {
            state.set(OPEN);
            throw e;
        }
        state.set(CLOSED);
        cacheRegistry.clear();
    }

    @Override
    public String toString() {
        return "LockFreeBuddyAllocator{name=" + name + ", base=0x" + Long.toHexString(base) + ", size=0x"
            + Long.toHexString(end - base) + ", maxOrder=" + maxOrder + ", threadCache=" + cacheCapacity
            + (cacheOrders > 0 ? ", cacheBudget=" + cacheBudget : "") + (isClosed() ? ", closed" : "") + '}';
    }

    // ---------------------------------------------------------------------------------------------
    // shared pool: the block words

    /**
     * One search of the shared pool: a block of the smallest free order that fits, split down. No proof of
     * a failure: see {@link #allocProven}.
     */
    private long takeShared(int order, boolean mark) {
        long index = claimAny(order, mark);
        if (index >= 0) {
            return layout.address(index, order);
        }
        for (int j = order + 1; j <= maxOrder; j++) {
            pause("search", j, -1);
            if (topEmpty(j)) {
                continue;
            }
            long ev = eventWord(j - 1);
            open(ev); // the halves of a split from j are free blocks of orders below j in transit
            try {
                index = claimAny(j, false);
                if (index >= 0) {
                    index = splitDown(j, index, order, -1);
                }
            } finally {
                close(ev);
            }
            if (index >= 0) {
                long pa = layout.address(index, order);
                if (mark) {
                    markAllocated(order, pa);
                }
                return pa;
            }
        }
        return NONE;
    }

    /**
     * @return the calling thread's spread class, its id mod 8: threads created one after another (a pool's
     * workers) get different classes
     */
    private static int spreadClass() {
        return (int) Thread.currentThread().threadId() & 7;
    }

    /**
     * @return the position of the lowest set bit of the hint word {@code h}, or with {@code spread >= 0} the
     * lowest set bit whose position is {@code spread} mod 8 if there is one: threads of different classes
     * then pick different block words, which {@link BuddyLayout#spreadWord} places on different cache
     * lines. It adds a mask and a conditional move to the search's chain of dependent loads; the ranked
     * pick it replaced (popcount, multiply, bit-deposit) cost about 8% of an uncached 4 KiB alloc+free on
     * one thread.
     */
    private static int pick(long h, int spread) {
        long mine = spread < 0 ? 0 : h & (0x0101_0101_0101_0101L << spread);
        return Long.numberOfTrailingZeros(mine != 0 ? mine : h);
    }

    /**
     * A failing alloc's proof (see the class comment): takes every cached block back, then searches again
     * while event words of orders {@code order..maxOrder}, and cache op counts, change under the search.
     *
     * @return a block found on the way, or {@link #NONE} once a search saw no bracket and no cache change
     */
    private long allocProven(int order) {
        boolean steal = cacheOrders > 0;
        for (int round = 0; round < VALIDATION_ROUNDS; round++) {
            long registry = 0;
            long cachesBefore = 0;
            if (cacheOrders > 0) {
                if (steal) { // the first round, and rounds after one that saw a cached block: not every round
                    stealAll();
                }
                registry = registryChanges.get();
                cachesBefore = cachesQuiet(order);
            }
            long before = eventSum(order);
            long pa = takeShared(order, true); // every round searches: a busy peer may keep the proof from closing
            if (pa != NONE) {
                return pa;
            }
            long cachesAfter = cacheOrders == 0 ? 0 : cachesQuiet(order);
            if (before >= 0 && cachesBefore >= 0 && eventSum(order) == before
                && (cacheOrders == 0 || (cachesAfter == cachesBefore && registryChanges.get() == registry))) {
                return NONE; // linearization: the end of the search, when no block of order or above was free
            }
            steal = cachesBefore < 0 || cachesAfter < 0;
            backOff(round);
        }
        unprovenFailures.incrementAndGet();
        return NONE;
    }

    /** Spins first, then yields, so that a descheduled thread inside a bracket gets to run. */
    private static void backOff(int round) {
        if (round < SPIN_ROUNDS) {
            Thread.onSpinWait();
        } else {
            Thread.yield();
        }
    }

    /** @return whether the top hint layer (or the only block word) of order {@code k} is empty. */
    private boolean topEmpty(int k) {
        long[] offsets = layout.layerOffset[k];
        if (offsets.length == 1) {
            return ((long) LONG.getVolatile(meta, offsets[0]) & BuddyLayout.FREE_MASK) == 0;
        }
        long at = offsets[offsets.length - 1];
        for (int t = 0, n = layout.topWords[k]; t < n; t++) {
            if ((long) LONG.getVolatile(meta, at + ((long) t << 3)) != 0) {
                return false;
            }
        }
        return true;
    }

    /**
     * Splits the claimed block {@code (from, index)} down to order {@code to}, publishing the halves not
     * kept. With {@code targetIndex < 0} it keeps the lowest part; otherwise the part containing block
     * {@code targetIndex} of order {@code to}. The caller holds a bracket on order {@code from - 1}.
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

    // event words ---------------------------------------------------------------------------------

    /** {@return the offset of the calling thread's event word of order {@code k}} */
    private long eventWord(int k) {
        return layout.eventWord((int) Thread.currentThread().threadId() & (BuddyLayout.EVENT_STRIPES - 1), k);
    }

    /** Opens a bracket: a volatile add, so it is ordered before the bitmap operation it announces. */
    private void open(long eventWord) {
        LONG.getAndAdd(meta, eventWord, BuddyLayout.EVENT_OPEN);
    }

    /** Closes a bracket, after everything it covered is published (volatile add). */
    private void close(long eventWord) {
        LONG.getAndAdd(meta, eventWord, BuddyLayout.EVENT_CLOSE);
    }

    /**
     * @return the sum of every stripe's event words of orders {@code k..maxOrder} (each only grows, so an
     * unchanged sum means no bracket opened or closed in between), or -1 if a bracket is open now
     */
    private long eventSum(int k) {
        long sum = 0;
        long open = 0;
        for (int s = 0; s < BuddyLayout.EVENT_STRIPES; s++) {
            for (int m = k; m <= maxOrder; m++) {
                long v = (long) LONG.getVolatile(meta, layout.eventWord(s, m));
                sum += v;
                open |= v & BuddyLayout.EVENT_OPEN_MASK;
            }
        }
        return open != 0 ? -1 : sum & Long.MAX_VALUE;
    }

    // ---------------------------------------------------------------------------------------------

    /** Takes block {@code target} of {@code order} by claiming it or its smallest free ancestor. */
    private boolean takeAt(long target, int order) {
        if (claim(order, target)) {
            return true;
        }
        for (int j = order + 1; j <= maxOrder; j++) {
            long ancestor = target >>> (j - order);
            long word = (long) LONG.getVolatile(meta, layout.word(j, ancestor));
            if ((word & BuddyLayout.freeBit(ancestor)) == 0) {
                continue;
            }
            long ev = eventWord(j - 1);
            open(ev);
            try {
                if (claim(j, ancestor)) {
                    splitDown(j, ancestor, order, target);
                    return true;
                }
            } finally {
                close(ev);
            }
        }
        return false;
    }

    /** Clears the FREE bit of block {@code (k, index)} if set. @return whether this call cleared it. */
    private boolean claim(int k, long index) {
        long addr = layout.word(k, index);
        long bit = BuddyLayout.freeBit(index);
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
     * Claims a free block of order {@code k}, descending the hint layers: the lowest FREE bit of the word
     * reached. With {@code mark} the same compare-and-set sets the block's ALLOCATED bit: the alloc's
     * linearization point, and its only atomic operation when no split is needed.
     *
     * @return the block index, or -1 if no free block was reachable
     */
    private long claimAny(int k, boolean mark) {
        long claimed = claimBits(k, mark, 1);
        return claimed < 0 ? -1 : ((claimed >>> 32) << BuddyLayout.WORD_SHIFT) + Long.numberOfTrailingZeros(claimed);
    }

    /**
     * Claims up to {@code want} free blocks of order {@code k} from one block word, with one
     * compare-and-set: descends the hint layers to a word and takes its lowest {@code min(want, free)}
     * FREE bits (setting their ALLOCATED bits too with {@code mark}). Each block taken is linearized at
     * that compare-and-set, as if taken by its own alloc.
     *
     * @param want how many blocks at most, {@code >= 1}
     * @return {@code (w << 32) | bits}: the word's logical index and the FREE bits taken (block
     * {@code 32 w + s} for each set bit {@code s}), or -1 if no free block was reachable
     */
    private long claimBits(int k, boolean mark, int want) {
        final MemorySegment meta = this.meta;
        final BuddyLayout layout = this.layout;
        final long[] offsets = layout.layerOffset[k];
        final int top = offsets.length - 1;
        final int topWords = layout.topWords[k];
        final int spread = k <= SPREAD_MAX_ORDER ? spreadClass() : -1;
        descend:
        for (;;) {
            long w = 0;
            if (top > 0) {
                long h = 0;
                for (int t = 0; t < topWords && h == 0; t++) { // the top layer: one line, in address order
                    h = (long) LONG.getVolatile(meta, offsets[top] + ((long) t << 3));
                    w = t;
                }
                if (h == 0) {
                    return -1;
                }
                w = (w << 6) + (top == 1 ? pick(h, spread) : Long.numberOfTrailingZeros(h));
                for (int layer = top - 1; layer > 0; layer--) {
                    h = (long) LONG.getVolatile(meta, offsets[layer] + (w << 3));
                    if (h == 0) {
                        clearHint(k, layer, w); // a stale hint led here: repair it and start over
                        continue descend;
                    }
                    w = (w << 6) + (layer == 1 ? pick(h, spread) : Long.numberOfTrailingZeros(h));
                }
            }
            long addr = layout.wordAt(k, w);
            for (;;) {
                long v = (long) LONG.getVolatile(meta, addr);
                long free = v & BuddyLayout.FREE_MASK;
                if (free == 0) {
                    if (top == 0) {
                        return -1;
                    }
                    clearHint(k, 0, w);
                    continue descend;
                }
                long bits = want == 1 ? Long.lowestOneBit(free) : lowestBits(free, want);
                long allocated = bits << BuddyLayout.BLOCKS_PER_WORD;
                if ((v & allocated) != 0) {
                    throw new IllegalStateException(corrupt("block free and allocated", k,
                        (w << BuddyLayout.WORD_SHIFT) + Long.numberOfTrailingZeros(v & allocated) - BuddyLayout.BLOCKS_PER_WORD));
                }
                if (LONG.compareAndSet(meta, addr, v, (v & ~bits) | (mark ? allocated : 0))) {
                    return (w << 32) | bits; // an emptied word keeps its hint: cleared lazily
                }
                // lost a race on this word to another thread's successful CAS: re-read and retry
            }
        }
    }

    /** @return the lowest {@code n} set bits of {@code x} (all of them if it has fewer). */
    private static long lowestBits(long x, int n) {
        if (Long.bitCount(x) <= n) {
            return x;
        }
        long bits = 0;
        for (int i = 0; i < n; i++) {
            bits |= x & -x;
            x &= x - 1;
        }
        return bits;
    }

    /**
     * Sets the FREE bit of block {@code (k, index)}; the caller owns the block, its buddy is not
     * free, and the caller holds a bracket on an order at or above {@code k} (or runs alone, seeding).
     */
    private void publishFree(int k, long index) {
        long bit = BuddyLayout.freeBit(index);
        long old = (long) LONG.getAndBitwiseOr(meta, layout.word(k, index), bit);
        if ((old & bit) != 0) {
            throw new IllegalStateException(corrupt("block already free", k, index));
        }
        pause("published", k, index);
        setHint(k, 0, index >>> BuddyLayout.WORD_SHIFT);
    }

    /**
     * Returns block {@code (k, index)} to the shared pool, merging with free buddies as far as they go.
     * With {@code allocated} the block must be marked allocated with order {@code k} (a free from the
     * caller); the compare-and-set of the first step then also clears that mark, so unmarking and
     * publishing (or taking the buddy) is one atomic step, and a block not marked is reported before
     * anything changes. Without it the caller owns the unmarked block (a cache flush, an arena rest).
     *
     * <p>Brackets: a publish into a word that is already non-empty needs none. It cannot make its order go
     * from empty to non-empty, and the word's hint path is already set (or a bracket that will set it is
     * open), so the block is reachable from the instant of its CAS; a failing search that read the order
     * empty before that CAS would have had to see the word's first block arrive, which was bracketed. A
     * publish into an empty word, and a merge (whose combined block is in transit), run inside a bracket
     * on the order the block has at that step, opened before the CAS.
     *
     * @throws IllegalStateException if {@code allocated} and the block is not marked allocated with
     *                               order {@code k}; nothing changed
     */
    private void freeShared(int k, long index, boolean allocated) {
        final MemorySegment meta = this.meta;
        final BuddyLayout layout = this.layout;
        long ev = -1;
        long unmark = allocated ? BuddyLayout.allocBit(index) : 0;
        try {
            for (;;) {
                long addr = layout.word(k, index);
                long bit = BuddyLayout.freeBit(index);
                long buddyBit = BuddyLayout.freeBit(index ^ 1);
                long v = (long) LONG.getVolatile(meta, addr);
                if ((v & unmark) != unmark) { // only on the first step: a merge step has nothing to unmark
                    throw new IllegalStateException(describeNotAllocated(layout.address(index, k), k));
                }
                if ((v & bit) != 0) {
                    throw new IllegalStateException(corrupt("block already free", k, index));
                }
                if (k < maxOrder && (v & buddyBit) != 0) {
                    long up = eventWord(k + 1);
                    open(up); // the merged block, in transit, is a free block of order k + 1
                    if (LONG.compareAndSet(meta, addr, v, v & ~(buddyBit | unmark))) { // linearization: the buddy is ours
                        if (ev >= 0) {
                            close(ev);
                        }
                        ev = up;
                        k++;
                        index >>>= 1;
                        unmark = 0;
                    } else {
                        close(up);
                    }
                    continue;
                }
                if ((v & BuddyLayout.FREE_MASK) == 0 && ev < 0) {
                    ev = eventWord(k);
                    open(ev); // the order may go from empty to non-empty: announce it before the CAS
                }
                if (LONG.compareAndSet(meta, addr, v, (v & ~unmark) | bit)) { // linearization: the block is free
                    pause("published", k, index);
                    setHint(k, 0, index >>> BuddyLayout.WORD_SHIFT);
                    return;
                }
            }
        } finally {
            if (ev >= 0) {
                close(ev);
            }
        }
    }

    /**
     * Word {@code w} of {@code layer} of order {@code k} is non-zero: make sure its hint bit and every hint
     * above it are set. Every publisher calls this, not only the one that made the word non-zero, so a
     * block is reachable once its publisher returns even if the thread that filled the word first is
     * stopped before its hints. Where a bit is already set this costs one read.
     */
    private void setHint(int k, int layer, long w) {
        final MemorySegment meta = this.meta;
        final long[] offsets = layout.layerOffset[k];
        final int top = offsets.length - 1;
        while (layer < top) {
            long addr = offsets[layer + 1] + ((w >>> 6) << 3);
            long bit = 1L << (w & 63);
            // Already set: no write. A clearer that ANDs it off after this read re-reads our word, which was
            // set before this read, and restores the hint, so skipping the read-modify-write is safe.
            if (((long) LONG.getVolatile(meta, addr) & bit) == 0) {
                LONG.getAndBitwiseOr(meta, addr, bit);
            }
            layer++;
            w >>>= 6;
        }
    }

    /**
     * Word {@code w} of {@code layer} of order {@code k} was seen zero: clear its hint bit, then re-read
     * the word and restore the hint if it became non-zero meanwhile (its setter may have set the hint
     * before our clear). Volatile read-modify-writes are sequentially consistent, so either the setter's
     * OR comes after our AND, or our re-read sees the setter's word. A block may be unreachable while this
     * runs, so it runs inside a bracket on order {@code k}.
     */
    private void clearHint(int k, int layer, long w) {
        long ev = eventWord(k);
        open(ev);
        try {
            final long[] offsets = layout.layerOffset[k];
            final int top = offsets.length - 1;
            while (layer < top) {
                long bit = 1L << (w & 63);
                long old = (long) LONG.getAndBitwiseAnd(meta, offsets[layer + 1] + ((w >>> 6) << 3), ~bit);
                if ((old & bit) == 0) {
                    return;
                }
                long now = layer == 0
                    ? (long) LONG.getVolatile(meta, layout.wordAt(k, w)) & BuddyLayout.FREE_MASK
                    : (long) LONG.getVolatile(meta, offsets[layer] + (w << 3));
                if (now != 0) {
                    setHint(k, layer, w);
                    return;
                }
                if ((old & ~bit) != 0) {
                    return;
                }
                layer++;
                w >>>= 6;
            }
        } finally {
            close(ev);
        }
    }

    // ---------------------------------------------------------------------------------------------
    // allocated bits

    /** Marks a block the caller took without marking it (from a cache, or by a split) as allocated. */
    private void markAllocated(int order, long pa) {
        long index = layout.index(pa, order);
        long bit = BuddyLayout.allocBit(index);
        long old = (long) LONG.getAndBitwiseOr(meta, layout.word(order, index), bit);
        if ((old & (bit | BuddyLayout.freeBit(index))) != 0) {
            throw new IllegalStateException(corrupt("block handed out twice", order, index));
        }
    }

    private boolean isAllocated(int k, long index) {
        return ((long) LONG.getVolatile(meta, layout.word(k, index)) & BuddyLayout.allocBit(index)) != 0;
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
        ThreadCache cache = new ThreadCache(Thread.currentThread(), cacheCapacities);
        registryChanges.incrementAndGet(); // before the cache can hold anything
        cacheRegistry.add(cache);
        sweep(SWEEP_STEP);
        return cache;
    }

    /** Pops a block of {@code order} from the caller's own cache, skipping slots thieves emptied. */
    private long popCached(ThreadCache cache, int order) {
        int n = cache.tops[order];
        if (n == 0) {
            return NONE;
        }
        long size = BlockAllocator.orderSize(order);
        cache.countOp(order);
        while (n > 0) {
            long pa = cache.take(order, --n);
            if (pa != ThreadCache.EMPTY) {
                cache.tops[order] = n;
                cache.addOwnerBytes(-size);
                return pa;
            }
            noticeStolen(cache, size);
        }
        cache.tops[order] = 0;
        return NONE;
    }

    /** The owner found {@code bytes} it counted as cached taken by a thief. */
    private static void noticeStolen(ThreadCache cache, long bytes) {
        cache.addOwnerBytes(-bytes);
        cache.addStolen(-bytes);
    }

    private long refillAndPop(ThreadCache cache, int order) {
        sweep(SWEEP_STEP); // a slow path: give back a few dead threads' caches, so they come back promptly
        return refill(cache, order) == 0 ? NONE : popCached(cache, order);
    }

    /**
     * Fills half the cache of {@code order}: from one larger block carved from the thread's arena or taken
     * from the shared pool and split locally, else block by block, as far as the cache's credit allows.
     *
     * @return the number of blocks now in the cache of {@code order}
     */
    private int refill(ThreadCache cache, int order) {
        int batch = Math.max(1, cache.capacities[order] >>> 1);
        int batchShift = 31 - Integer.numberOfLeadingZeros(batch);
        long size = BlockAllocator.orderSize(order);
        int bigOrder = order + batchShift;
        long big = NONE;
        if (batchShift > 0 && bigOrder <= maxOrder) {
            long bigSize = BlockAllocator.orderSize(bigOrder);
            big = carveFromArena(cache, bigSize);
            if (big == NONE && ensureCredit(cache, bigSize)) {
                big = takeShared(bigOrder, false);
                if (big != NONE) {
                    cache.addOwnerBytes(bigSize);
                }
            }
        }
        int n = 0;
        cache.countOp(order); // before the slots fill
        if (big != NONE) {
            for (int i = (1 << batchShift) - 1; i >= 0; i--) { // lowest address on top of the stack
                cache.push(order, n++, big + i * size);
            }
        } else {
            long[] taken = new long[batch]; // the slow path of the slow path: the pool has no larger block
            while (n < batch && ensureCredit(cache, size)) {
                long pa = takeShared(order, false);
                if (pa == NONE) {
                    break;
                }
                cache.addOwnerBytes(size);
                taken[n++] = pa;
            }
            for (int i = 0; i < n; i++) { // lowest address on top
                cache.push(order, i, taken[n - 1 - i]);
            }
        }
        cache.tops[order] = n;
        return n;
    }

    /**
     * Carves {@code bytes} (a power of two) from the thread's arena, taking a fresh 2 MiB arena when the
     * current one is spent or was stolen, if arenas are on and the cache's credit allows.
     *
     * @return the address of the carved piece, aligned to {@code bytes}, still counted in the owner's bytes,
     * or {@link #NONE}
     */
    private long carveFromArena(ThreadCache cache, long bytes) {
        if (!useArenas || bytes > ARENA_SIZE) {
            return NONE;
        }
        long v = cache.arenaSeen;
        if (v != ThreadCache.EMPTY) {
            long arenaEnd = (v & -ARENA_SIZE) + ARENA_SIZE; // v lies strictly inside its 2 MiB arena
            long at = (v + bytes - 1) & -bytes;
            cache.countOp(cacheOrders);
            if (at + bytes <= arenaEnd) {
                long next = at + bytes == arenaEnd ? ThreadCache.EMPTY : at + bytes;
                if (cache.casArena(v, next)) {
                    cache.arenaSeen = next;
                    giveBack(v, at); // an alignment gap goes back to the shared pool
                    cache.addOwnerBytes(-(at - v));
                    return at;
                }
            } else if (cache.casArena(v, ThreadCache.EMPTY)) {
                cache.arenaSeen = ThreadCache.EMPTY;
                giveBack(v, arenaEnd); // too little left: the rest goes back to the shared pool
                cache.addOwnerBytes(-(arenaEnd - v));
                v = ThreadCache.EMPTY;
            }
            if (v != ThreadCache.EMPTY) { // a compare-and-set failed: a thief took the rest
                cache.arenaSeen = ThreadCache.EMPTY;
                noticeStolen(cache, arenaEnd - v);
            }
        }
        if (!ensureCredit(cache, ARENA_SIZE)) {
            return NONE;
        }
        long arena = takeShared(ARENA_ORDER, false);
        if (arena == NONE) {
            return NONE;
        }
        cache.addOwnerBytes(ARENA_SIZE);
        long next = bytes == ARENA_SIZE ? ThreadCache.EMPTY : arena + bytes;
        cache.countOp(cacheOrders);
        cache.setArena(next);
        cache.arenaSeen = next;
        return arena;
    }

    /** Frees {@code [from, to)}, owned by the caller, as the largest aligned blocks, to the shared pool. */
    private void giveBack(long from, long to) {
        while (from < to) {
            int k = Math.min(maxOrder, Long.numberOfTrailingZeros(from) - BlockAllocator.PAGE_SHIFT);
            while (from + BlockAllocator.orderSize(k) > to) {
                k--;
            }
            freeShared(k, layout.index(from, k), false);
            from += BlockAllocator.orderSize(k);
        }
    }

    /**
     * Pushes a freed block onto the caller's cache, flushing the older half first when the stack is full.
     *
     * @return {@code false} if the cache has no credit left for it: the caller frees it to the shared pool
     */
    private boolean pushCached(ThreadCache cache, int order, long pa) {
        int n = cache.tops[order];
        long size = BlockAllocator.orderSize(order);
        if (n == cache.capacities[order]) {
            n = flushHalf(cache, order, n);
        }
        if (!ensureCredit(cache, size)) {
            return false;
        }
        cache.countOp(order); // before the slot fills
        cache.push(order, n, pa);
        cache.tops[order] = n + 1;
        cache.addOwnerBytes(size);
        return true;
    }

    /**
     * Takes slot {@code i} of the cache of {@code order} and returns its block to the shared pool, inside a bracket on
     * {@code order} opened before the take: between the take and the publication the block is in no cache and in no
     * bitmap, and a failing alloc's proof that read the caches after the take and the event words before the
     * publication would otherwise miss it (a spurious {@code NONE}, found by BuddyLincheckTest's cached pool: a
     * thief's drain racing a second failing alloc).
     *
     * @return the block taken and published, or {@link ThreadCache#EMPTY} if the slot was empty
     */
    private long takeAndPublish(ThreadCache cache, int order, int i) {
        long ev = eventWord(order);
        open(ev);
        try {
            long v = cache.take(order, i);
            if (v != ThreadCache.EMPTY) {
                freeShared(order, layout.index(v, order), false);
            }
            return v;
        } finally {
            close(ev);
        }
    }

    /** Frees the bottom half of a full stack (the least recently used blocks) and moves the rest down. */
    private int flushHalf(ThreadCache cache, int order, int n) {
        long size = BlockAllocator.orderSize(order);
        int half = Math.max(1, n >>> 1);
        cache.countOp(order);
        for (int i = 0; i < half; i++) {
            long v = takeAndPublish(cache, order, i);
            if (v != ThreadCache.EMPTY) {
                cache.addOwnerBytes(-size);
            } else {
                noticeStolen(cache, size);
            }
        }
        int m = 0;
        for (int i = half; i < n; i++) { // slot m is empty: taken above, or earlier in this loop
            long v = cache.take(order, i);
            if (v != ThreadCache.EMPTY) {
                cache.push(order, m++, v);
            } else {
                noticeStolen(cache, size);
            }
        }
        cache.tops[order] = m;
        trimCredit(cache);
        return m;
    }

    /**
     * Makes sure the cache's credit covers its bytes plus {@code bytes}, taking credit from the allocator's
     * budget in quanta (one compare-and-set on a shared word, on slow paths only).
     *
     * @return {@code false} if the budget is spent: the caller does without the cache
     */
    private boolean ensureCredit(ThreadCache cache, long bytes) {
        long credit = cache.credit();
        long need = cache.ownerBytes() + bytes - credit;
        if (need <= 0) {
            return true;
        }
        long q = (need + creditQuantum - 1) / creditQuantum * creditQuantum;
        for (;;) {
            long used = (long) LONG.getVolatile(meta, BuddyLayout.CACHE_CREDIT_OFFSET);
            long take = used + q <= cacheBudget ? q : need;
            if (used + take > cacheBudget) {
                return false;
            }
            if (LONG.compareAndSet(meta, BuddyLayout.CACHE_CREDIT_OFFSET, used, used + take)) {
                cache.setCredit(credit + take);
                return true;
            }
        }
    }

    /** Gives credit the cache does not use (beyond one spare quantum) back to the budget. */
    private void trimCredit(ThreadCache cache) {
        long spare = cache.credit() - cache.ownerBytes() - creditQuantum;
        if (spare > creditQuantum) {
            long give = spare / creditQuantum * creditQuantum;
            cache.setCredit(cache.credit() - give);
            LONG.getAndAdd(meta, BuddyLayout.CACHE_CREDIT_OFFSET, -give);
        }
    }

    /** Owner: returns every cached block, the arena rest and all credit to the shared pool. */
    private void flushAll(ThreadCache cache) {
        for (int order = 0; order < cacheOrders; order++) {
            long size = BlockAllocator.orderSize(order);
            int n = cache.tops[order];
            cache.countOp(order);
            for (int i = 0; i < n; i++) {
                long v = takeAndPublish(cache, order, i);
                if (v != ThreadCache.EMPTY) {
                    cache.addOwnerBytes(-size);
                } else {
                    noticeStolen(cache, size);
                }
            }
            cache.tops[order] = 0;
        }
        long v = cache.arenaSeen;
        if (v != ThreadCache.EMPTY) {
            long arenaEnd = (v & -ARENA_SIZE) + ARENA_SIZE;
            cache.countOp(cacheOrders);
            cache.arenaSeen = ThreadCache.EMPTY;
            long ev = eventWord(ARENA_ORDER); // as takeAndPublish: the rest is in transit between the CAS and giveBack
            open(ev);
            try {
                if (cache.casArena(v, ThreadCache.EMPTY)) {
                    giveBack(v, arenaEnd);
                    cache.addOwnerBytes(-(arenaEnd - v));
                } else {
                    noticeStolen(cache, arenaEnd - v);
                }
            } finally {
                close(ev);
            }
        }
        returnCredit(cache);
    }

    private void returnCredit(ThreadCache cache) {
        long credit = cache.credit();
        if (credit != 0) {
            cache.setCredit(0);
            LONG.getAndAdd(meta, BuddyLayout.CACHE_CREDIT_OFFSET, -credit);
        }
    }

    /**
     * Takes every block out of {@code cache} with atomic exchanges, without the owner's help, and frees
     * them to the shared pool. Safe against the owner running concurrently: each slot's block goes to
     * exactly one of them.
     */
    private void drain(ThreadCache cache) {
        for (int order = 0; order < cacheOrders; order++) {
            long size = BlockAllocator.orderSize(order);
            for (int i = 0, n = cache.capacities[order]; i < n; i++) {
                if (cache.peek(order, i) != ThreadCache.EMPTY) {
                    cache.addStolen(size); // before the take, so the owner, who notices after it, never subtracts first
                    long v = takeAndPublish(cache, order, i);
                    if (v == ThreadCache.EMPTY) {
                        cache.addStolen(-size); // the owner popped it first
                    }
                }
            }
        }
        if (cache.arena() != ThreadCache.EMPTY) {
            long ev = eventWord(ARENA_ORDER); // as takeAndPublish: the rest is in transit between the take and giveBack
            open(ev);
            try {
                long v = cache.takeArena();
                if (v != ThreadCache.EMPTY) {
                    long arenaEnd = (v & -ARENA_SIZE) + ARENA_SIZE;
                    cache.addStolen(arenaEnd - v);
                    giveBack(v, arenaEnd);
                }
            } finally {
                close(ev);
            }
        }
    }

    /** Takes back every cached block of every thread, idle and dead ones included; reclaims dead threads' caches. */
    private void stealAll() {
        for (Iterator<ThreadCache> it = cacheRegistry.iterator(); it.hasNext(); ) {
            ThreadCache cache = it.next();
            if (cache.ownerDead()) {
                reclaim(cache, it);
            } else {
                drain(cache);
            }
        }
    }

    /** Gives back a dead thread's cache and credit and drops it from the registry; exactly one caller does. */
    private void reclaim(ThreadCache cache, Iterator<ThreadCache> position) {
        if (cache.claimReclaim()) {
            drain(cache);
            returnCredit(cache);
            registryChanges.incrementAndGet();
            position.remove();
        }
    }

    /**
     * Reclaims the caches of terminated threads: all of them ({@code limit == Integer.MAX_VALUE}), or the
     * next {@code limit} of the registry from where the last sweep stopped (under a try-lock: a thread that
     * finds another sweeping skips it rather than wait).
     */
    private void sweep(int limit) {
        if (limit == Integer.MAX_VALUE) {
            for (Iterator<ThreadCache> it = cacheRegistry.iterator(); it.hasNext(); ) {
                ThreadCache cache = it.next();
                if (cache.ownerDead()) {
                    reclaim(cache, it);
                }
            }
            return;
        }
        if (!sweeping.compareAndSet(false, true)) {
            return;
        }
        try {
            Iterator<ThreadCache> hand = sweepHand;
            for (int i = 0; i < limit; i++) {
                if (hand == null || !hand.hasNext()) {
                    hand = cacheRegistry.iterator();
                    if (!hand.hasNext()) {
                        break;
                    }
                }
                ThreadCache cache = hand.next();
                if (cache.ownerDead()) {
                    reclaim(cache, hand);
                }
            }
            sweepHand = hand;
        } finally {
            sweeping.set(false);
        }
    }

    /**
     * @return the sum of all caches' op counts that matter to a search for {@code order} (orders at or above
     * it, and the arena), or -1 if some cache holds a block of those orders or an arena
     */
    private long cachesQuiet(int order) {
        long sum = 0;
        for (ThreadCache cache : cacheRegistry) {
            for (int k = order; k < cacheOrders; k++) {
                sum += cache.ops(k);
                for (int i = 0, n = cache.capacities[k]; i < n; i++) {
                    if (cache.peek(k, i) != ThreadCache.EMPTY) {
                        return -1;
                    }
                }
            }
            if (useArenas && order <= ARENA_ORDER) {
                sum += cache.ops(cacheOrders);
                if (cache.arena() != ThreadCache.EMPTY) {
                    return -1;
                }
            }
        }
        return sum & Long.MAX_VALUE;
    }

    // ---------------------------------------------------------------------------------------------
    // argument checks: one overflow-safe check per public entry

    private void checkOpen() {
        if (state.get() != OPEN) {
            throw new IllegalStateException("allocator '" + name + "' is " + (isClosed() ? "already closed" : "closing"));
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
