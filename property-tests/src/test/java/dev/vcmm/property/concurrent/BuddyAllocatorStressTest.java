package dev.vcmm.property.concurrent;

import dev.vcmm.property.AllocatorKind;
import dev.vcmm.property.BuddyModel;
import dev.vcmm.spi.AllocatorStats;
import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemorySpec;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.atomic.LongAdder;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Concurrent stress test of buddy allocators: more threads than cores allocate ({@code alloc} and
 * {@code allocAt}) and free blocks of mixed orders 0..10 on a pool small enough to run out, for a fixed
 * time.
 *
 * <p>What is checked, independently of the allocator's own bookkeeping:
 * <ul>
 *   <li><b>No block is held twice.</b> A claim map with one bit per 4 KiB page: every block an allocation
 *       returns is claimed bit by bit with CAS, and finding a bit already set fails the test naming both
 *       holders; the holder clears its bits before it frees.</li>
 *   <li>Every returned block is naturally aligned and inside the pool; no operation throws.</li>
 *   <li><b>Nothing is lost</b>: when every thread has freed all it holds and released its thread cache,
 *       the stats say all is free ({@code freeBytes == totalBytes}, nothing allocated or cached) and the
 *       free blocks are the pool's canonical top-level blocks.</li>
 *   <li><b>Full coalescing</b>: every top-level block, the max-order ones first, is allocatable again.</li>
 * </ul>
 * A ninth thread reads {@code stats()} throughout and checks each figure is in range (a snapshot under
 * load is best effort, so only ranges are checked).
 *
 * <p>Duration: {@value #SECONDS} s per case by default, {@value #LONG_SECONDS} s with
 * {@code -Dvcmm.long=true}. The random seed of each thread is printed; a failure depends on timing as
 * well, so a seed makes a rerun similar, not identical.
 */
class BuddyAllocatorStressTest {

    static final int THREADS = 8;
    static final int SECONDS = 2;
    static final int LONG_SECONDS = 60;
    /** 8 MiB + 20 KiB at a base that is not 4 MiB aligned: one order-10 block, blocks of every smaller order. */
    static final long BASE = 0x8000_3000L;
    static final long SIZE = (8L << 20) + 0x5000;
    static final int MAX_ORDER = 10;
    static final int HELD_LIMIT = 48;

    static Stream<Arguments> cases() {
        return Arrays.stream(AllocatorKind.values()).flatMap(k -> Stream.of(Arguments.of(k, 0), Arguments.of(k, 8)));
    }

    @ParameterizedTest(name = "{0} cache={1}")
    @MethodSource("cases")
    void shouldNeverHandOutABlockTwiceNorLoseOne(AllocatorKind kind, int cacheCapacity) throws Exception {
        BlockAllocator a = kind.create(new MemorySpec("stress", BASE, SIZE, false, MAX_ORDER, cacheCapacity));
        try {
            run(kind, a, cacheCapacity);
        } finally {
            a.close();
        }
    }

    private static void run(AllocatorKind kind, BlockAllocator a, int cacheCapacity) throws Exception {
        long seed = Long.getLong("vcmm.seed", System.nanoTime());
        int seconds = AllocatorKind.longRun() ? LONG_SECONDS : SECONDS;
        int maxOrder = a.maxOrder();
        System.out.printf("BuddyAllocatorStressTest %s cache=%d threads=%d cores=%d seconds=%d seed=%d maxOrder=%d%n",
            kind, cacheCapacity, THREADS, Runtime.getRuntime().availableProcessors(), seconds, seed, maxOrder);

        ClaimMap claims = new ClaimMap(BASE, SIZE);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        LongAdder allocs = new LongAdder();
        LongAdder nones = new LongAdder();
        LongAdder allocAtOk = new LongAdder();
        LongAdder allocAtFalse = new LongAdder();
        LongAdder frees = new LongAdder();
        CyclicBarrier start = new CyclicBarrier(THREADS + 2); // the workers, the stats observer and this thread
        long[] deadline = new long[1];
        List<Thread> threads = new ArrayList<>();
        for (int t = 0; t < THREADS; t++) {
            final int id = t;
            threads.add(Thread.ofPlatform().name("stress-" + t).start(() -> {
                SplittableRandom rnd = new SplittableRandom(seed + id);
                List<long[]> held = new ArrayList<>();
                try {
                    start.await();
                    while (System.nanoTime() < deadline[0] && failure.get() == null) {
                        int r = rnd.nextInt(100);
                        if (!held.isEmpty() && (r < 45 || held.size() >= HELD_LIMIT)) {
                            long[] b = held.remove(rnd.nextInt(held.size()));
                            claims.release(b[0], (int) b[1], id);
                            a.free(b[0], (int) b[1]);
                            frees.increment();
                        } else if (r < 55) {
                            int k = order(rnd, maxOrder);
                            long pa = slot(rnd, k);
                            if (pa >= 0 && a.allocAt(pa, k)) {
                                allocAtOk.increment();
                                claims.claim(pa, k, id, "allocAt");
                                held.add(new long[] {pa, k});
                            } else {
                                allocAtFalse.increment();
                            }
                        } else if (r < 99) {
                            int k = order(rnd, maxOrder);
                            long pa = a.alloc(k);
                            if (pa == BlockAllocator.NONE) {
                                nones.increment();
                            } else {
                                allocs.increment();
                                claims.claim(pa, k, id, "alloc");
                                held.add(new long[] {pa, k});
                            }
                        } else {
                            kind.releaseThreadCache(a);
                        }
                    }
                } catch (Throwable e) {
                    failure.compareAndSet(null, new AssertionError("thread " + id + ": " + e, e));
                } finally {
                    try {
                        for (long[] b : held) {
                            claims.release(b[0], (int) b[1], id);
                            a.free(b[0], (int) b[1]);
                        }
                        kind.releaseThreadCache(a);
                    } catch (Throwable e) {
                        failure.compareAndSet(null, new AssertionError("thread " + id + " while returning its blocks: " + e, e));
                    }
                }
            }));
        }
        Thread observer = Thread.ofPlatform().name("stress-stats").start(() -> {
            try {
                start.await();
                while (System.nanoTime() < deadline[0] && failure.get() == null) {
                    AllocatorStats s = a.stats();
                    if (s.totalBytes() != SIZE || s.freeBytes() < 0 || s.freeBytes() > SIZE || s.cachedBytes() < 0
                        || s.cachedBytes() > SIZE || s.allocatedBytes() < 0 || s.allocatedBytes() > SIZE
                        || Arrays.stream(s.freeBlocksByOrder()).anyMatch(n -> n < 0)) {
                        failure.compareAndSet(null, new AssertionError("stats out of range under load: " + s));
                    }
                    Thread.sleep(1);
                }
            } catch (Throwable e) {
                failure.compareAndSet(null, new AssertionError("stats observer: " + e, e));
            }
        });
        deadline[0] = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        start.await();
        for (Thread t : threads) {
            t.join();
        }
        observer.join();
        System.out.printf("  alloc ok=%d none=%d, allocAt ok=%d false=%d, frees=%d%n",
            allocs.sum(), nones.sum(), allocAtOk.sum(), allocAtFalse.sum(), frees.sum());
        if (failure.get() != null) {
            throw new AssertionError("seed=" + seed + " " + kind + " cache=" + cacheCapacity + ": " + failure.get().getMessage(),
                failure.get());
        }
        assertTrue(nones.sum() > 0, "the pool never ran out: the test did not exercise exhaustion");
        assertEquals(-1, claims.firstClaimedPage(), "claim map not empty after every thread returned its blocks");

        kind.releaseThreadCache(a);
        AllocatorStats s = a.stats();
        String where = "seed=" + seed + " " + kind + " cache=" + cacheCapacity + ": ";
        assertEquals(SIZE, s.freeBytes(), where + "bytes lost: " + s);
        assertEquals(0, s.allocatedBytes(), where + "allocated after all freed: " + s);
        assertEquals(0, s.cachedBytes(), where + "cached after every thread released its cache: " + s);
        long[] canonical = BuddyModel.canonicalFreeBlocks(BASE, SIZE, maxOrder);
        assertArrayEquals(canonical, Arrays.copyOf(s.freeBlocksByOrder(), canonical.length),
            where + "not fully coalesced: " + s);

        for (int k = maxOrder; k >= 0; k--) {
            for (long i = 0; i < canonical[k]; i++) {
                long pa = a.alloc(k);
                assertNotEquals(BlockAllocator.NONE, pa, where + "alloc(" + k + ") #" + i + " of " + canonical[k]
                    + " failed after everything was freed: " + a.stats());
                claims.claim(pa, k, -1, "refill alloc");
            }
            assertEquals(BlockAllocator.NONE, a.alloc(k), where + "alloc(" + k + ") succeeded beyond the pool");
        }
        AllocatorStats full = a.stats();
        assertEquals(0, full.freeBytes(), where + "pool not full after refill: " + full);
        assertEquals(SIZE, full.allocatedBytes(), where + "pool not full after refill: " + full);
    }

    /** Orders skewed small: 70 % in 0..2, 25 % in 3..6, 5 % in 7..10, capped at the pool's max order. */
    static int order(SplittableRandom rnd, int maxOrder) {
        int r = rnd.nextInt(100);
        int k = r < 70 ? rnd.nextInt(3) : r < 95 ? 3 + rnd.nextInt(4) : 7 + rnd.nextInt(4);
        return Math.min(k, maxOrder);
    }

    /** @return a random naturally aligned block of order {@code k} inside the pool, or -1 if none fits. */
    static long slot(SplittableRandom rnd, int k) {
        long s = BlockAllocator.orderSize(k);
        long first = (BASE + s - 1) & -s;
        if (first + s > BASE + SIZE) {
            return -1;
        }
        return first + rnd.nextLong((BASE + SIZE - first) / s) * s;
    }

    /**
     * One bit per 4 KiB page of the pool, set while some thread holds a block covering the page. Words
     * are aligned to 64 pages of physical address, so big blocks take whole words.
     */
    static final class ClaimMap {
        private final long origin;
        private final long base;
        private final long end;
        private final AtomicLongArray bits;
        private final Map<Long, String> holders = new ConcurrentHashMap<>();

        ClaimMap(long base, long size) {
            this.origin = base & -(64 * BlockAllocator.PAGE_SIZE);
            this.base = base;
            this.end = base + size;
            this.bits = new AtomicLongArray((int) (((end - origin) >>> BlockAllocator.PAGE_SHIFT) + 63) >>> 6);
        }

        void claim(long pa, int order, int thread, String how) {
            long s = BlockAllocator.orderSize(order);
            String block = BuddyModel.block(pa, order);
            if ((pa & (s - 1)) != 0 || pa < base || pa + s > end) {
                throw new AssertionError(how + " returned " + block + ": not aligned or outside the pool");
            }
            long first = (pa - origin) >>> BlockAllocator.PAGE_SHIFT;
            long last = first + (s >>> BlockAllocator.PAGE_SHIFT) - 1;
            for (long w = first >>> 6; w <= last >>> 6; w++) {
                long mask = mask(w, first, last);
                long old;
                do {
                    old = bits.get((int) w);
                    if ((old & mask) != 0) {
                        throw new AssertionError(how + " by thread " + thread + " returned " + block
                            + ", which overlaps a block held by another thread: " + overlapping(pa, s));
                    }
                } while (!bits.compareAndSet((int) w, old, old | mask));
            }
            holders.put(pa, "thread " + thread + " holds " + block + " (" + how + ")");
        }

        void release(long pa, int order, int thread) {
            long s = BlockAllocator.orderSize(order);
            holders.remove(pa);
            long first = (pa - origin) >>> BlockAllocator.PAGE_SHIFT;
            long last = first + (s >>> BlockAllocator.PAGE_SHIFT) - 1;
            for (long w = first >>> 6; w <= last >>> 6; w++) {
                long mask = mask(w, first, last);
                long old = bits.getAndUpdate((int) w, v -> v & ~mask);
                if ((old & mask) != mask) {
                    throw new AssertionError("thread " + thread + " releases " + BuddyModel.block(pa, order)
                        + " but some of its pages were not claimed: the claim map itself is inconsistent");
                }
            }
        }

        long firstClaimedPage() {
            for (int w = 0; w < bits.length(); w++) {
                if (bits.get(w) != 0) {
                    return ((long) w << 6) + Long.numberOfTrailingZeros(bits.get(w));
                }
            }
            return -1;
        }

        private static long mask(long w, long first, long last) {
            long lo = Math.max(first, w << 6) & 63;
            long hi = Math.min(last, (w << 6) + 63) & 63;
            return (-1L >>> (63 - hi)) & (-1L << lo);
        }

        private String overlapping(long pa, long s) {
            StringBuilder sb = new StringBuilder();
            holders.forEach((p, who) -> {
                if (p < pa + s && pa < p + BlockAllocator.PAGE_SIZE) {
                    sb.append(who).append("; ");
                }
            });
            holders.forEach((p, who) -> {
                if (p < pa && who.contains("/o")) {
                    int o = Integer.parseInt(who.replaceAll(".*/o(\\d+).*", "$1"));
                    if (p + BlockAllocator.orderSize(o) > pa) {
                        sb.append(who).append("; ");
                    }
                }
            });
            return sb.length() == 0 ? "(holder not recorded yet)" : sb.toString();
        }
    }
}
