package dev.vcmm.bench;

import dev.vcmm.ffm.LockFreeBuddyAllocator;
import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemorySpec;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.PooledByteBufAllocator;
import org.openjdk.jmh.annotations.AuxCounters;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;
import org.openjdk.jmh.infra.ThreadParams;

import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The lock-free buddy allocator against a one-lock buddy allocator and Netty's pooled allocator.
 *
 * <p>Every figure is the average time of one alloc plus one free, in ns/op, per thread: with {@code -t 2}
 * a score of 50 ns/op means each of the two threads completes an alloc+free every 50 ns.
 *
 * <h2>Implementations ({@code impl})</h2>
 * <ul>
 *   <li>{@code lockfree}: {@link LockFreeBuddyAllocator} with per-thread caches of
 *       {@value #THREAD_CACHE_CAPACITY} blocks per small order ({@code threadCacheCapacity} =
 *       {@value #THREAD_CACHE_CAPACITY}) and the default total cache budget (1/32 of the pool): the
 *       default of {@code MemoryType} (the cli's demo and scenarios turn caches off so that runs repeat).</li>
 *   <li>{@code locked-cache}: {@link LockedBuddyAllocator#cached}, the same textbook locked allocator behind
 *       per-thread caches of {@value #THREAD_CACHE_CAPACITY} blocks per order up to 32 KiB, refilled and
 *       flushed in half-cache batches under one lock acquisition: the like-for-like baseline of
 *       {@code lockfree} (its caches are unbounded in total and cannot be stolen from).</li>
 *   <li>{@code lockfree-nocache}: the same with {@code threadCacheCapacity = 0}, every operation on the
 *       shared lock-free structure; the difference to {@code lockfree} is what the caches buy.</li>
 *   <li>{@code locked}: {@link LockedBuddyAllocator}, a textbook buddy allocator behind one monitor, the
 *       naive baseline.</li>
 *   <li>{@code netty}: Netty's {@code new PooledByteBufAllocator(true)} with its defaults, doing
 *       {@code directBuffer(size)} + {@code release()} of the same sizes. By default Netty gives thread
 *       caches only to its own {@code FastThreadLocalThread}s ({@code useCacheForAllThreads=false}), so
 *       JMH's threads run uncached, on the per-arena locks.</li>
 *   <li>{@code netty-cache}: the same, but with {@code useCacheForAllThreads=true}: what a Netty event-loop
 *       thread gets, Netty at its best. Netty caches sizes up to 32 KiB only (orders 0..3).</li>
 * </ul>
 * The buddy allocators manage addresses only ({@value #POOL_SIZE} bytes at base 0, max order 18): no
 * memory is touched. Netty really allocates direct memory (its chunks come from
 * {@code ByteBuffer.allocateDirect}), but only during warm-up: in steady state it recycles. Whether Netty
 * uses {@code sun.misc.Unsafe} (off by default on Java 25) is printed by {@link Env} and stated in the
 * README next to the results.
 *
 * <h2>Pool state</h2>
 * The pool is not empty: before the trial the {@link Pool} takes {@value #BACKGROUND} 4 KiB blocks at the
 * bottom and frees every second one, leaving {@value #BACKGROUND}/2 free 4 KiB blocks whose buddies are
 * in use. An order-0 alloc therefore pops a ready 4 KiB block and its free does not merge, as in a pool in
 * use; in an empty pool a single alloc+free would split and re-merge 1 GiB eighteen times.
 *
 * <h2>Failures</h2>
 * An alloc that returns {@link BlockAllocator#NONE} is not freed and is counted in the
 * {@code allocFailures} auxiliary counter (reported by JMH next to each score, and on stderr at the end
 * of the trial); a non-zero count means that score partly measures failures. Netty never fails softly
 * (it throws), which aborts the run.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class BuddyBenchmark {

    static final long POOL_SIZE = 1L << 30;
    static final int MAX_ORDER = 18;
    static final int THREAD_CACHE_CAPACITY = 64;
    static final int BACKGROUND = 512;
    /** Live blocks per thread in {@link #allocFreeMixed}. */
    static final int RING = 64;
    /** Length of the precomputed order sequence, a power of two. */
    static final int MIX_LENGTH = 1 << 12;
    static final int MIX_MAX_ORDER = 9;
    static final long SEED = 0x5eed_b0dd_1e5L;
    /** Blocks per op of {@link #allocBulk16x4k} and {@link #alloc16x4k}. */
    static final int BULK = 16;

    /** The shared allocator under test, one per trial. */
    @State(Scope.Benchmark)
    public static class Pool {

        @Param({"lockfree", "locked-cache", "lockfree-nocache", "locked", "netty", "netty-cache"})
        public String impl;

        /** null for the netty variants. */
        BlockAllocator buddy;
        /** non-null for the lock-free variants, to release thread caches. */
        LockFreeBuddyAllocator lockFree;
        /** non-null for {@code locked-cache}, to release thread caches. */
        LockedBuddyAllocator.Cached lockedCached;
        /** non-null for the netty variants. */
        PooledByteBufAllocator netty;

        private long[] background;
        private ByteBuf[] nettyBackground;
        private final AtomicInteger users = new AtomicInteger();

        @Setup(Level.Trial)
        public void setUp() {
            switch (impl) {
                case "lockfree" -> buddy = lockFree = LockFreeBuddyAllocator.create(spec(THREAD_CACHE_CAPACITY));
                case "lockfree-nocache" -> buddy = lockFree = LockFreeBuddyAllocator.create(spec(0));
                // diagnostic only (pass -p impl=lockfree-cache1024): refills split a 2 MiB block, so each
                // thread's cached 4 KiB blocks have their own two 64-byte lines of order-0 block words
                case "lockfree-cache1024" -> buddy = lockFree = LockFreeBuddyAllocator.create(spec(1024));
                case "locked" -> buddy = LockedBuddyAllocator.create(spec(0));
                case "locked-cache" -> buddy = lockedCached = LockedBuddyAllocator.cached(spec(0), THREAD_CACHE_CAPACITY);
                case "netty" -> netty = new PooledByteBufAllocator(true);
                case "netty-cache" -> netty = new PooledByteBufAllocator(true,
                    PooledByteBufAllocator.defaultNumHeapArena(), PooledByteBufAllocator.defaultNumDirectArena(),
                    PooledByteBufAllocator.defaultPageSize(), PooledByteBufAllocator.defaultMaxOrder(),
                    PooledByteBufAllocator.defaultSmallCacheSize(), PooledByteBufAllocator.defaultNormalCacheSize(),
                    true);
                default -> throw new IllegalArgumentException("impl=" + impl);
            }
            fragment();
        }

        /** Takes BACKGROUND 4 KiB blocks and frees every second one: free 4 KiB blocks with busy buddies. */
        private void fragment() {
            if (netty != null) {
                nettyBackground = new ByteBuf[BACKGROUND];
                for (int i = 0; i < BACKGROUND; i++) {
                    nettyBackground[i] = netty.directBuffer(4096);
                }
                for (int i = 0; i < BACKGROUND; i += 2) {
                    nettyBackground[i].release();
                    nettyBackground[i] = null;
                }
                return;
            }
            background = new long[BACKGROUND];
            for (int i = 0; i < BACKGROUND; i++) {
                background[i] = buddy.alloc(0);
                if (background[i] == BlockAllocator.NONE) {
                    throw new IllegalStateException(impl + ": background alloc " + i + " failed in an empty pool");
                }
            }
            for (int i = 0; i < BACKGROUND; i += 2) {
                buddy.free(background[i], 0);
                background[i] = BlockAllocator.NONE;
            }
            releaseThreadCache(); // the freed blocks go to the shared pool, not this thread's cache
        }

        /** Registers a thread-scoped state that uses the pool until its own trial teardown. */
        void join() {
            users.incrementAndGet();
        }

        /**
         * The last thread-scoped state to leave frees the background and closes the allocator. JMH tears
         * the Benchmark-scoped state down first (in whichever thread gets there first) and the threads'
         * states after it, so the pool cannot be closed in its own {@code @TearDown}: the threads still
         * free their live blocks and release their caches then.
         */
        void leave() {
            if (users.decrementAndGet() != 0) {
                return;
            }
            if (netty != null) {
                for (ByteBuf b : nettyBackground) {
                    if (b != null) {
                        b.release();
                    }
                }
                return;
            }
            for (long pa : background) {
                if (pa != BlockAllocator.NONE) {
                    buddy.free(pa, 0);
                }
            }
            releaseThreadCache(); // the background frees above went to this thread's cache
            // everything was returned: a whole pool proves the run did no lost or double frees
            var stats = buddy.stats();
            if (stats.allocatedBytes() != 0 || stats.cachedBytes() != 0 || stats.freeBytes() != POOL_SIZE) {
                System.err.println("WARNING " + impl + ": pool not whole after the trial: " + stats);
            }
            buddy.close();
        }

        /** Returns the calling thread's cached blocks, for the cached variants. */
        void releaseThreadCache() {
            if (lockFree != null) {
                lockFree.releaseThreadCache();
            } else if (lockedCached != null) {
                lockedCached.releaseThreadCache();
            }
        }

        private static MemorySpec spec(int threadCacheCapacity) {
            return new MemorySpec("bench", 0, POOL_SIZE, false, MAX_ORDER, threadCacheCapacity);
        }
    }

    /** Per-thread failure counter, reported by JMH as {@code allocFailures} (a total per iteration). */
    @State(Scope.Thread)
    @AuxCounters(AuxCounters.Type.EVENTS)
    public static class Failures {

        public long allocFailures;
        private long total;

        @Setup(Level.Iteration)
        public void reset() {
            total += allocFailures;
            allocFailures = 0;
        }

        @TearDown(Level.Trial)
        public void report(Pool pool) {
            total += allocFailures;
            if (total != 0) {
                System.err.println("WARNING " + pool.impl + " " + Thread.currentThread().getName()
                    + ": " + total + " allocs returned NONE during the trial");
            }
        }
    }

    /** The calling thread's share of {@link #allocFree4k} and the 16-block benchmarks: releases its cache at the end. */
    @State(Scope.Thread)
    public static class Worker {

        /** The blocks of one {@link #allocBulk16x4k} or {@link #alloc16x4k} op. */
        final long[] blocks = new long[BULK];
        final ByteBuf[] bufs = new ByteBuf[BULK];

        @Setup(Level.Trial)
        public void setUp(Pool pool) {
            pool.join();
        }

        @TearDown(Level.Trial)
        public void tearDown(Pool pool) {
            pool.releaseThreadCache();
            pool.leave();
        }
    }

    /**
     * The calling thread's window of {@value #RING} live blocks for {@link #allocFreeMixed}, and the fixed
     * sequence of orders it allocates.
     */
    @State(Scope.Thread)
    public static class Mix {

        /** Orders 0..MIX_MAX_ORDER uniformly, from SEED + the thread's index: reproducible, distinct per thread. */
        final int[] orders = new int[MIX_LENGTH];
        final long[] ring = new long[RING];
        final int[] ringOrder = new int[RING];
        final ByteBuf[] ringBufs = new ByteBuf[RING];
        /** Counts operations; slot = next % RING holds the oldest block, order = orders[next % MIX_LENGTH]. */
        int next;

        @Setup(Level.Trial)
        public void setUp(Pool pool, ThreadParams threads) {
            pool.join();
            var rnd = new SplittableRandom(SEED + threads.getThreadIndex());
            for (int i = 0; i < MIX_LENGTH; i++) {
                orders[i] = rnd.nextInt(MIX_MAX_ORDER + 1);
            }
            // fill the window so that every measured op frees one block and allocates one
            for (int i = 0; i < RING; i++) {
                int order = orders[i];
                ringOrder[i] = order;
                if (pool.netty != null) {
                    ringBufs[i] = pool.netty.directBuffer(4096 << order);
                } else {
                    ring[i] = pool.buddy.alloc(order);
                    if (ring[i] == BlockAllocator.NONE) {
                        throw new IllegalStateException(pool.impl + ": prefill alloc " + i + " failed");
                    }
                }
            }
            next = RING;
        }

        @TearDown(Level.Trial)
        public void tearDown(Pool pool) {
            for (int i = 0; i < RING; i++) {
                if (pool.netty != null) {
                    ringBufs[i].release();
                } else if (ring[i] != BlockAllocator.NONE) {
                    pool.buddy.free(ring[i], ringOrder[i]);
                }
            }
            pool.releaseThreadCache();
            pool.leave();
        }
    }

    /**
     * One 4 KiB (order 0) alloc immediately followed by its free, on the shared pool. With thread caches
     * this is the cache's pop and push; without, it is the shared structure's fast path (the pool has free
     * 4 KiB blocks, so no split and no merge). With {@code -t 2} both threads hammer the same pool.
     */
    @Benchmark
    public long allocFree4k(Pool pool, Worker worker, Failures failures) {
        final BlockAllocator buddy = pool.buddy;
        if (buddy == null) {
            ByteBuf b = pool.netty.directBuffer(4096);
            int cap = b.capacity();
            b.release();
            return cap;
        }
        long pa = buddy.alloc(0);
        if (pa == BlockAllocator.NONE) {
            failures.allocFailures++;
            return pa;
        }
        buddy.free(pa, 0);
        return pa;
    }

    /**
     * Sixteen 4 KiB blocks taken with one {@link BlockAllocator#allocBulk} call, then freed one by one:
     * compare with {@link #alloc16x4k} in the same run. For {@code lockfree-nocache} the blocks come from
     * one block word with one compare-and-set (the pre-fragmented pool has 16 free blocks in each word);
     * the cached variants serve their cached orders one pop at a time (the SPI default), and {@code locked}
     * uses the default too (16 lock acquisitions). Netty has no bulk call: its variants do 16
     * {@code directBuffer} calls in both benchmarks. One op is 16 allocs and 16 frees.
     */
    @Benchmark
    public long allocBulk16x4k(Pool pool, Worker worker, Failures failures) {
        final BlockAllocator buddy = pool.buddy;
        if (buddy == null) {
            return nettySixteen(pool, worker);
        }
        final long[] blocks = worker.blocks;
        int n = buddy.allocBulk(0, blocks, 0, BULK);
        failures.allocFailures += BULK - n;
        long sum = 0;
        for (int i = 0; i < n; i++) {
            sum += blocks[i];
            buddy.free(blocks[i], 0);
        }
        return sum;
    }

    /** Sixteen 4 KiB blocks taken with 16 {@link BlockAllocator#alloc} calls, then freed: the baseline of {@link #allocBulk16x4k}. */
    @Benchmark
    public long alloc16x4k(Pool pool, Worker worker, Failures failures) {
        final BlockAllocator buddy = pool.buddy;
        if (buddy == null) {
            return nettySixteen(pool, worker);
        }
        final long[] blocks = worker.blocks;
        int n = 0;
        for (int i = 0; i < BULK; i++) {
            long pa = buddy.alloc(0);
            if (pa == BlockAllocator.NONE) {
                failures.allocFailures++;
            } else {
                blocks[n++] = pa;
            }
        }
        long sum = 0;
        for (int i = 0; i < n; i++) {
            sum += blocks[i];
            buddy.free(blocks[i], 0);
        }
        return sum;
    }

    private static long nettySixteen(Pool pool, Worker worker) {
        final ByteBuf[] bufs = worker.bufs;
        for (int i = 0; i < BULK; i++) {
            bufs[i] = pool.netty.directBuffer(4096);
        }
        long sum = 0;
        for (int i = 0; i < BULK; i++) {
            sum += bufs[i].capacity();
            bufs[i].release();
            bufs[i] = null;
        }
        return sum;
    }

    /**
     * A steady state of mixed sizes: each op frees the oldest of the thread's {@value #RING} live blocks
     * and allocates the next order of a fixed pseudo-random sequence of orders 0..9 (4 KiB .. 2 MiB,
     * uniform) into its slot. Splits and merges happen at every order, and blocks outlive the thread's
     * next 63 operations, so caches see both hits and misses.
     */
    @Benchmark
    public long allocFreeMixed(Pool pool, Mix mix, Failures failures) {
        final int n = mix.next++;
        final int slot = n & (RING - 1);
        final int order = mix.orders[n & (MIX_LENGTH - 1)];
        final BlockAllocator buddy = pool.buddy;
        if (buddy == null) {
            mix.ringBufs[slot].release();
            ByteBuf b = pool.netty.directBuffer(4096 << order);
            mix.ringBufs[slot] = b;
            mix.ringOrder[slot] = order;
            return order;
        }
        final long old = mix.ring[slot];
        if (old != BlockAllocator.NONE) {
            buddy.free(old, mix.ringOrder[slot]);
        }
        final long pa = buddy.alloc(order);
        if (pa == BlockAllocator.NONE) {
            failures.allocFailures++;
        }
        mix.ring[slot] = pa;
        mix.ringOrder[slot] = order;
        return pa;
    }
}
