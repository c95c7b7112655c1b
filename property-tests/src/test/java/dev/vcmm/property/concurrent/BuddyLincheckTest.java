package dev.vcmm.property.concurrent;

import dev.vcmm.property.AllocatorKind;
import dev.vcmm.property.BuddyModel;
import dev.vcmm.spi.AllocatorStats;
import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemorySpec;
import org.jetbrains.lincheck.datastructures.IntGen;
import org.jetbrains.lincheck.datastructures.Operation;
import org.jetbrains.lincheck.datastructures.Param;
import org.jetbrains.lincheck.datastructures.StressOptions;
import org.jetbrains.lincheck.datastructures.ThreadIdGen;
import org.jetbrains.lincheck.datastructures.Validate;
import org.junit.jupiter.api.Test;

import java.util.ArrayDeque;
import java.util.Arrays;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Lincheck (stress mode) linearizability tests of the lock-free buddy allocator.
 *
 * <p>Stress mode, not model checking: the allocator's state lives in off-heap {@code MemorySegment}s,
 * which Lincheck 3.7's model checker does not see (toolchain.md), so it would explore nothing.
 *
 * <p><b>What is checkable.</b> An allocator may return <em>any</em> free block, so a sequential
 * specification cannot predict {@code alloc}'s address, and {@code LockFreeBuddyAllocator} documents
 * that {@code alloc} and {@code allocAt} may report a failure while another thread's split or merge chain
 * is in transit. The scenarios are therefore built so that every result the contract promises is
 * deterministic, and no result the contract leaves open is compared:
 * <ul>
 *   <li>{@link RacingFrees}: only {@code free} runs in parallel, on a pool laid out in the constructor,
 *       so every free's outcome ({@code ok} or {@code IllegalStateException}) is fixed by which frees
 *       precede it; racing frees of one block must let exactly one succeed, and frees of buddies race
 *       into merge chains. {@code @Validate} then checks at the quiescent end that the shared pool is
 *       exactly the coalesced buddy state the successful frees imply.</li>
 *   <li>{@link CountingPool}: a pool of max order 0 (no splits or merges, hence no chain in transit), so
 *       {@code alloc(0)} succeeds iff fewer than all blocks are held, and a thread frees only blocks it
 *       holds.</li>
 *   <li>{@link SplittingPool} and {@link CachedSplittingPool} (failing allocs while blocks move, with thread caches off and on): the same count
 *       rule on a pool of 8 pages with max order 3, so every alloc splits and every free merges, with thread
 *       caches off and on. {@code alloc(0)} must fail iff all 8 pages are held: a {@code NONE} while a page
 *       sits in transit, behind an unpublished hint, or in another thread's cache is a linearizability
 *       violation. With caches on, a thread's free parks the page in its own cache, so an alloc on another
 *       thread succeeds only by taking it back from there.</li>
 * </ul>
 */
class BuddyLincheckTest {

    static int iterations() {
        return AllocatorKind.longRun() ? 200 : 20;
    }

    static int invocations() {
        return AllocatorKind.longRun() ? 10_000 : 1_000;
    }

    @Test
    void racingFreesShouldBeLinearizableAndCoalesce() {
        new StressOptions()
            .iterations(iterations())
            .invocationsPerIteration(invocations())
            .threads(3)
            .actorsPerThread(3)
            .actorsBefore(1)
            .actorsAfter(1)
            .sequentialSpecification(RacingFreesSpec.class)
            .check(RacingFrees.class);
    }

    @Test
    void allocAndFreeOnAnOrder0PoolShouldBeLinearizable() {
        new StressOptions()
            .iterations(iterations())
            .invocationsPerIteration(invocations())
            .threads(3)
            .actorsPerThread(4)
            .actorsBefore(0)
            .actorsAfter(2)
            .sequentialSpecification(CountingPoolSpec.class)
            .check(CountingPool.class);
    }

    @Test
    void allocFailsOnlyWhenEveryPageIsHeldWithSplitsAndMerges() {
        new StressOptions()
            .iterations(iterations())
            .invocationsPerIteration(invocations())
            .threads(3)
            .actorsPerThread(4)
            .actorsBefore(4)
            .actorsAfter(2)
            .sequentialSpecification(SplittingPoolSpec.class)
            .check(SplittingPool.class);
    }

    @Test
    void allocFailsOnlyWhenEveryPageIsHeldWithThreadCaches() {
        new StressOptions()
            .iterations(iterations())
            .invocationsPerIteration(invocations())
            .threads(3)
            .actorsPerThread(4)
            .actorsBefore(4)
            .actorsAfter(2)
            .sequentialSpecification(SplittingPoolSpec.class)
            .check(CachedSplittingPool.class);
    }

    /** Closes the previous scenario's allocator when the next one is built: Lincheck runs invocations one by one. */
    private static final AtomicReference<BlockAllocator> PREVIOUS = new AtomicReference<>();

    static BlockAllocator open(MemorySpec spec) {
        BlockAllocator a = AllocatorKind.valueOf(System.getProperty("vcmm.lincheck.subject", "LOCK_FREE")).create(spec);
        BlockAllocator old = PREVIOUS.getAndSet(a);
        if (old != null) {
            old.close();
        }
        return a;
    }

    // ------------------------------------------------------------------------------------------ racing frees

    /** 8 pages at 0x100000 with max order 2: two max blocks. */
    static final long RF_BASE = 0x10_0000L;
    static final int RF_PAGES = 8;
    /** The layout allocated up front, {page, order}: 0/o0 1/o0 2/o1 | 4/o1 6/o0 7/o0. */
    static final int[][] RF_LAYOUT = {{0, 0}, {1, 0}, {2, 1}, {4, 1}, {6, 0}, {7, 0}};

    /** {@code free(page rounded down to the order, order)}: the real allocator. */
    public static class RacingFrees {
        private final BlockAllocator a;
        private final Set<Long> freedOk = ConcurrentHashMap.newKeySet();

        public RacingFrees() {
            a = open(new MemorySpec("lincheck", RF_BASE, RF_PAGES * BlockAllocator.PAGE_SIZE, false, 2, 0));
            for (int[] b : RF_LAYOUT) {
                if (!a.allocAt(RF_BASE + b[0] * BlockAllocator.PAGE_SIZE, b[1])) {
                    throw new AssertionError("setup: allocAt page " + b[0] + " order " + b[1] + " failed");
                }
            }
        }

        /** Frees layout block {@code block} with its own order: races of the same block and of buddies are frequent. */
        @Operation
        public String free(@Param(gen = IntGen.class, conf = "0:5") int block) {
            return freeAs(RF_LAYOUT[block][0], RF_LAYOUT[block][1]);
        }

        /** Frees {@code page} rounded down to {@code order}: mostly a wrong order, a part of a block, or never allocated. */
        @Operation
        public String freeAs(@Param(gen = IntGen.class, conf = "0:7") int page, @Param(gen = IntGen.class, conf = "0:2") int order) {
            int p = page & -(1 << order);
            try {
                a.free(RF_BASE + p * BlockAllocator.PAGE_SIZE, order);
                freedOk.add(((long) p << 8) | order);
                return "ok";
            } catch (IllegalStateException e) {
                return "ISE";
            }
        }

        /** At the quiescent end: the stats are exactly the coalesced state of the layout minus what was freed. */
        @Validate
        public void poolIsCoalesced() {
            BuddyModel m = new BuddyModel(RF_BASE, RF_PAGES * BlockAllocator.PAGE_SIZE, 2);
            for (int[] b : RF_LAYOUT) {
                m.take(RF_BASE + b[0] * BlockAllocator.PAGE_SIZE, b[1]);
            }
            for (long f : freedOk) {
                m.give(RF_BASE + (f >>> 8) * BlockAllocator.PAGE_SIZE, (int) (f & 0xff));
            }
            AllocatorStats s = a.stats();
            if (s.allocatedBytes() != m.liveBytes() || s.freeBytes() != m.freeBytes() || s.cachedBytes() != 0
                || !Arrays.equals(Arrays.copyOf(s.freeBlocksByOrder(), 3), m.freeBlocksByOrder())) {
                throw new AssertionError("after frees " + freedOk + " stats " + s + " but expected free blocks by order "
                    + Arrays.toString(m.freeBlocksByOrder()) + ", allocated " + m.liveBytes());
            }
        }
    }

    /** The sequential specification of {@link RacingFrees}: which layout blocks are still allocated. */
    public static class RacingFreesSpec {
        private final boolean[] live = new boolean[RF_LAYOUT.length];

        public RacingFreesSpec() {
            Arrays.fill(live, true);
        }

        public String free(int block) {
            return freeAs(RF_LAYOUT[block][0], RF_LAYOUT[block][1]);
        }

        public String freeAs(int page, int order) {
            int p = page & -(1 << order);
            for (int i = 0; i < RF_LAYOUT.length; i++) {
                if (RF_LAYOUT[i][0] == p && RF_LAYOUT[i][1] == order && live[i]) {
                    live[i] = false;
                    return "ok";
                }
            }
            return "ISE";
        }

        @Override public boolean equals(Object o) {
            return o instanceof RacingFreesSpec s && Arrays.equals(live, s.live);
        }

        @Override public int hashCode() {
            return Arrays.hashCode(live);
        }
    }

    // ------------------------------------------------------------------------------------------ counting pool

    static final long CP_BASE = 0x20_0000L;
    static final int CP_BLOCKS = 4;
    static final int MAX_THREADS = 8;

    /** alloc(0) and free of a block the calling actor's thread holds, on 4 pages of max order 0. */
    public static class CountingPool {
        private final BlockAllocator a;
        @SuppressWarnings("unchecked")
        private final ArrayDeque<Long>[] held = new ArrayDeque[MAX_THREADS];

        public CountingPool() {
            a = open(new MemorySpec("lincheck", CP_BASE, CP_BLOCKS * BlockAllocator.PAGE_SIZE, false, 0, 0));
            for (int t = 0; t < MAX_THREADS; t++) {
                held[t] = new ArrayDeque<>();
            }
        }

        @Operation
        public boolean alloc(@Param(gen = ThreadIdGen.class) int thread) {
            long pa = a.alloc(0);
            if (pa == BlockAllocator.NONE) {
                return false;
            }
            held[thread].push(pa);
            return true;
        }

        @Operation
        public boolean free(@Param(gen = ThreadIdGen.class) int thread) {
            Long pa = held[thread].poll();
            if (pa == null) {
                return false;
            }
            a.free(pa, 0);
            return true;
        }

        @Validate
        public void statsMatchHeldBlocks() {
            long n = Arrays.stream(held).mapToLong(ArrayDeque::size).sum();
            AllocatorStats s = a.stats();
            if (s.allocatedBytes() != n * BlockAllocator.PAGE_SIZE || s.freeBlocksByOrder()[0] != CP_BLOCKS - n) {
                throw new AssertionError(n + " blocks held but " + s);
            }
        }
    }

    /** The sequential specification of {@link CountingPool}: how many blocks each thread holds. */
    public static class CountingPoolSpec {
        private final int[] held = new int[MAX_THREADS];
        private int total;

        public boolean alloc(int thread) {
            if (total == CP_BLOCKS) {
                return false;
            }
            held[thread]++;
            total++;
            return true;
        }

        public boolean free(int thread) {
            if (held[thread] == 0) {
                return false;
            }
            held[thread]--;
            total--;
            return true;
        }

        @Override public boolean equals(Object o) {
            return o instanceof CountingPoolSpec s && Arrays.equals(held, s.held);
        }

        @Override public int hashCode() {
            return Arrays.hashCode(held);
        }
    }

    // ------------------------------------------------------------------------------------------ splitting pool

    static final long SP_BASE = 0x40_0000L;
    static final int SP_PAGES = 8;

    /** alloc(0) and free of a held page on 8 pages of max order 3: splits and merges at every step; no caches. */
    public static class SplittingPool {
        final BlockAllocator a;
        @SuppressWarnings("unchecked")
        private final ArrayDeque<Long>[] held = new ArrayDeque[MAX_THREADS];

        public SplittingPool() {
            this(open(new MemorySpec("lincheck", SP_BASE, SP_PAGES * BlockAllocator.PAGE_SIZE, false, 3, 0)));
        }

        SplittingPool(BlockAllocator a) {
            this.a = a;
            for (int t = 0; t < MAX_THREADS; t++) {
                held[t] = new ArrayDeque<>();
            }
        }

        @Operation
        public boolean alloc(@Param(gen = ThreadIdGen.class) int thread) {
            long pa = a.alloc(0);
            if (pa == BlockAllocator.NONE) {
                return false;
            }
            held[thread].push(pa);
            return true;
        }

        @Operation
        public boolean free(@Param(gen = ThreadIdGen.class) int thread) {
            Long pa = held[thread].poll();
            if (pa == null) {
                return false;
            }
            a.free(pa, 0);
            return true;
        }

        @Validate
        public void statsMatchHeldPages() {
            long n = Arrays.stream(held).mapToLong(ArrayDeque::size).sum();
            AllocatorStats s = a.stats();
            if (s.allocatedBytes() != n * BlockAllocator.PAGE_SIZE
                || s.freeBytes() + s.cachedBytes() != (SP_PAGES - n) * BlockAllocator.PAGE_SIZE) {
                throw new AssertionError(n + " pages held but " + s);
            }
        }
    }

    /** {@link SplittingPool} with thread caches of 2 blocks per order and a budget of the whole pool. */
    public static class CachedSplittingPool extends SplittingPool {
        public CachedSplittingPool() {
            super(openCached());
        }

        private static BlockAllocator openCached() {
            MemorySpec spec = new MemorySpec("lincheck", SP_BASE, SP_PAGES * BlockAllocator.PAGE_SIZE, false, 3, 2);
            BlockAllocator a = dev.vcmm.ffm.LockFreeBuddyAllocator.create(spec, spec.size());
            BlockAllocator old = PREVIOUS.getAndSet(a);
            if (old != null) {
                old.close();
            }
            return a;
        }
    }

    /** The sequential specification of both splitting pools: how many pages each thread holds. */
    public static class SplittingPoolSpec {
        private final int[] held = new int[MAX_THREADS];
        private int total;

        public boolean alloc(int thread) {
            if (total == SP_PAGES) {
                return false;
            }
            held[thread]++;
            total++;
            return true;
        }

        public boolean free(int thread) {
            if (held[thread] == 0) {
                return false;
            }
            held[thread]--;
            total--;
            return true;
        }

        @Override public boolean equals(Object o) {
            return o instanceof SplittingPoolSpec s && Arrays.equals(held, s.held);
        }

        @Override public int hashCode() {
            return Arrays.hashCode(held);
        }
    }
}
