package dev.vcmm.ffm;

import dev.vcmm.spi.AllocatorStats;
import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemorySpec;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.atomic.LongAdder;

import static dev.vcmm.spi.BlockAllocator.NONE;
import static dev.vcmm.spi.BlockAllocator.orderSize;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link BlockAllocator#allocBulk}: the SPI's default (one alloc at a time) and the lock-free buddy's
 * override (a block word at a time, one compare-and-set for several blocks).
 */
class LockFreeBuddyBulkTest {

    private static final long MIB = 1L << 20;

    private static LockFreeBuddyAllocator create(long size, int maxOrder, int cache) {
        return LockFreeBuddyAllocator.create(new MemorySpec("bulk", 0, size, false, maxOrder, cache));
    }

    @AfterEach
    void clearPausePoint() {
        LockFreeBuddyAllocator.pausePoint = null;
    }

    /**
     * Single-threaded model check: a random sequence of bulk allocs (mostly 4 KiB, counts 0..39), single
     * allocs and frees, checked after every step against a model of the live address ranges: every block
     * aligned, inside the pool and overlapping no other; the allocated bytes those of the model; a bulk
     * short of its count only when an alloc of that order then fails too; and at the end every block
     * coalesces back. With caches on, cached orders take the default path.
     */
    @Test
    void shouldKeepTheModelThroughRandomBulksAllocsAndFrees() {
        for (int cache : new int[] {0, 16}) {
            long seed = new SplittableRandom().nextLong();
            String replay = "seed=" + seed + " cache=" + cache;
            var rnd = new SplittableRandom(seed);
            long size = 4 * MIB;
            try (LockFreeBuddyAllocator a = create(size, 6, cache)) {
                TreeMap<Long, Integer> live = new TreeMap<>(); // pa -> order
                long liveBytes = 0;
                int bulksOfMany = 0;
                int shortBulks = 0;
                for (int step = 0; step < 4000; step++) {
                    String at = replay + " step=" + step;
                    int op = rnd.nextInt(100);
                    if (live.isEmpty() || op < 50) {
                        int order = rnd.nextInt(100) < 70 ? 0 : rnd.nextInt(7);
                        int count = rnd.nextInt(40);
                        long[] got = new long[count + 2];
                        Arrays.fill(got, 7);
                        int n = a.allocBulk(order, got, 1, count);
                        assertTrue(n >= 0 && n <= count, at);
                        assertEquals(7, got[0], at + ": nothing written before offset");
                        for (int i = n + 1; i < got.length; i++) {
                            assertEquals(7, got[i], at + ": nothing written past the result");
                        }
                        if (n < count) {
                            shortBulks++;
                            assertEquals(NONE, a.alloc(order), at + ": a short bulk, but an alloc of order " + order + " succeeds");
                        }
                        bulksOfMany += n > 1 ? 1 : 0;
                        for (int i = 1; i <= n; i++) {
                            liveBytes += admit(live, got[i], order, size, at);
                        }
                    } else if (op < 60) {
                        int order = rnd.nextInt(7);
                        long pa = a.alloc(order);
                        if (pa != NONE) {
                            liveBytes += admit(live, pa, order, size, at);
                        }
                    } else {
                        Long[] keys = live.keySet().toArray(new Long[0]);
                        long pa = keys[rnd.nextInt(keys.length)];
                        int order = live.remove(pa);
                        a.free(pa, order);
                        liveBytes -= orderSize(order);
                    }
                    AllocatorStats s = a.stats();
                    assertEquals(liveBytes, s.allocatedBytes(), at);
                    assertEquals(size, s.freeBytes() + s.cachedBytes() + s.allocatedBytes(), at);
                }
                assertTrue(bulksOfMany > 200, replay + ": too few bulks took several blocks: " + bulksOfMany);
                assertTrue(shortBulks > 0, replay + ": the pool never ran short, the short path went untested");
                for (var e : live.entrySet()) {
                    a.free(e.getKey(), e.getValue());
                }
                a.releaseThreadCache();
                assertEquals(size, a.stats().freeBytes(), replay);
                assertEquals(0, a.unprovenFailures(), replay);
            }
        }
    }

    /** Checks a block handed out against the live ranges and adds it. @return its size */
    private static long admit(TreeMap<Long, Integer> live, long pa, int order, long size, String at) {
        long len = orderSize(order);
        assertEquals(0, pa & (len - 1), at + ": 0x" + Long.toHexString(pa) + " not aligned to order " + order);
        assertTrue(pa >= 0 && pa + len <= size, at);
        var below = live.floorEntry(pa + len - 1);
        assertTrue(below == null || below.getKey() + orderSize(below.getValue()) <= pa,
            () -> at + ": 0x" + Long.toHexString(pa) + " overlaps a live block");
        live.put(pa, order);
        return len;
    }

    /**
     * One pass, one atomic step for many blocks: in a pool fragmented like BuddyBenchmark's (every second
     * page of 512 free), a bulk of 16 pages is one claim of 16 bits of one block word; in a fresh pool it
     * is one 64 KiB block cut into its 16 pages.
     */
    @Test
    void shouldTakeSixteenPagesInOnePass() {
        try (LockFreeBuddyAllocator a = create(64 * MIB, 14, 0)) {
            List<String> passes = new ArrayList<>();
            LockFreeBuddyAllocator.pausePoint = (where, k, n) -> {
                if (where.startsWith("bulk")) {
                    passes.add(where + " order=" + k + " blocks=" + n);
                }
            };
            long[] out = new long[16];
            assertEquals(16, a.allocBulk(0, out, 0, 16));
            assertEquals(List.of("bulk-cut order=0 blocks=16"), passes, "fresh pool");
            for (int i = 0; i < 16; i++) {
                assertEquals(out[0] + i * 4096L, out[i], "the pieces of one 64 KiB block, in address order");
            }
            assertEquals(0, out[0] & (64 * 1024 - 1));
            for (long pa : out) {
                a.free(pa, 0);
            }
            long[] background = new long[512];
            assertEquals(512, a.allocBulk(0, background, 0, 512));
            for (int i = 0; i < 512; i += 2) {
                a.free(background[i], 0);
            }
            passes.clear();
            assertEquals(16, a.allocBulk(0, out, 0, 16));
            assertEquals(List.of("bulk-claim order=0 blocks=16"), passes, "fragmented pool");
            for (long pa : out) {
                assertTrue(Arrays.stream(background).anyMatch(b -> b == pa), "one of the freed background pages");
                a.free(pa, 0);
            }
            for (int i = 1; i < 512; i += 2) {
                a.free(background[i], 0);
            }
            assertEquals(64 * MIB, a.stats().freeBytes());
        }
    }

    @Test
    void shouldReturnFewerBlocksOnlyWhenThePoolHasNoMore() {
        try (LockFreeBuddyAllocator a = create(64 * 1024, 4, 0)) { // 16 pages
            long[] out = new long[20];
            assertEquals(16, a.allocBulk(0, out, 0, 20));
            assertEquals(16, Arrays.stream(out, 0, 16).distinct().count());
            assertEquals(0, out[16], "nothing written past the result");
            assertEquals(0, a.allocBulk(0, out, 16, 4), "an exhausted pool gives nothing");
            assertEquals(NONE, a.alloc(0));
            for (int i = 0; i < 16; i++) {
                a.free(out[i], 0);
            }
            assertEquals(1, a.stats().freeBlocksByOrder()[4], "all 16 pages coalesced back into one block");
            assertEquals(1, a.allocBulk(4, out, 0, 3), "one 64 KiB block, then a proven failure");
            assertEquals(0, a.unprovenFailures());
        }
    }

    @Test
    void shouldRefuseBadArgumentsAndChangeNothing() {
        try (LockFreeBuddyAllocator a = create(MIB, 8, 0)) {
            AllocatorStats before = a.stats();
            long[] out = new long[4];
            assertThrows(IllegalArgumentException.class, () -> a.allocBulk(-1, out, 0, 1));
            assertThrows(IllegalArgumentException.class, () -> a.allocBulk(9, out, 0, 1));
            assertThrows(IndexOutOfBoundsException.class, () -> a.allocBulk(0, out, 2, 3));
            assertThrows(IndexOutOfBoundsException.class, () -> a.allocBulk(0, out, -1, 1));
            assertThrows(IndexOutOfBoundsException.class, () -> a.allocBulk(0, out, 0, -1));
            assertThrows(NullPointerException.class, () -> a.allocBulk(0, null, 0, 1));
            assertEquals(0, a.allocBulk(0, out, 4, 0));
            assertEquals(before, a.stats());
            a.close();
            assertThrows(IllegalStateException.class, () -> a.allocBulk(0, out, 0, 1));
        }
    }

    /** The SPI's default, seen through an allocator that does not override it. */
    @Test
    void shouldTakeBlocksOneAtATimeByDefault() {
        try (LockFreeBuddyAllocator inner = create(64 * 1024, 4, 0)) {
            BlockAllocator plain = new Delegating(inner);
            long[] out = new long[24];
            assertEquals(10, plain.allocBulk(0, out, 2, 10));
            assertEquals(0, out[0]);
            assertEquals(0, out[1]);
            assertEquals(0, out[12]);
            assertEquals(6, plain.allocBulk(0, out, 12, 12), "the 6 pages left, then NONE");
            assertEquals(16, Arrays.stream(out, 2, 18).distinct().count());
            assertEquals(64 * 1024, inner.stats().allocatedBytes());
            assertThrows(IllegalArgumentException.class, () -> plain.allocBulk(5, out, 0, 1));
            assertThrows(IndexOutOfBoundsException.class, () -> plain.allocBulk(0, out, 20, 5));
            for (int i = 2; i < 18; i++) {
                plain.free(out[i], 0);
            }
            assertEquals(64 * 1024, inner.stats().freeBytes());
        }
    }

    /**
     * Threads started at a barrier take 16 pages at a time from a pool with room for all of them, from
     * the same few block words, and give them back. Every page is claimed in a shared owner table when
     * handed out: a page handed out twice, a bulk short of 16 (the pool never ran out) or a pool not whole
     * at the end fails; bulks that overlapped in time are counted and must have happened.
     */
    @Test
    void shouldNeverHandOutAPageTwiceUnderConcurrentBulks() throws Exception {
        int threads = 4;
        int rounds = Boolean.getBoolean("vcmm.long") ? 100_000 : 10_000;
        long size = MIB; // 256 pages, 8 block words of order 0; at most 64 pages held at once
        for (int cache : new int[] {0, 16}) {
            try (LockFreeBuddyAllocator a = create(size, 8, cache)) {
                AtomicIntegerArray owner = new AtomicIntegerArray((int) (size / 4096));
                CyclicBarrier start = new CyclicBarrier(threads);
                AtomicInteger inside = new AtomicInteger();
                LongAdder overlaps = new LongAdder();
                LongAdder taken = new LongAdder();
                AtomicReference<Throwable> failure = new AtomicReference<>();
                List<Thread> workers = new ArrayList<>();
                for (int t = 0; t < threads; t++) {
                    final int id = t + 1;
                    workers.add(Thread.ofPlatform().start(() -> {
                        long[] out = new long[16];
                        try {
                            start.await();
                            for (int r = 0; r < rounds && failure.get() == null; r++) {
                                if (inside.getAndIncrement() > 0) {
                                    overlaps.increment();
                                }
                                int n = a.allocBulk(0, out, 0, 16);
                                inside.decrementAndGet();
                                if (n != 16) {
                                    throw new AssertionError("bulk of 16 got " + n + " with room for all threads");
                                }
                                for (int i = 0; i < n; i++) {
                                    int page = (int) (out[i] >>> 12);
                                    int was = owner.compareAndExchange(page, 0, id);
                                    if (was != 0) {
                                        throw new AssertionError("page 0x" + Long.toHexString(out[i])
                                            + " handed to thread " + id + " while thread " + was + " held it");
                                    }
                                }
                                taken.add(n);
                                for (int i = 0; i < n; i++) {
                                    owner.set((int) (out[i] >>> 12), 0);
                                    a.free(out[i], 0);
                                }
                            }
                            a.releaseThreadCache();
                        } catch (Throwable e) {
                            failure.compareAndSet(null, e);
                        }
                    }));
                }
                for (Thread w : workers) {
                    w.join();
                }
                assertNull(failure.get(), () -> "cache=" + cache + ": " + failure.get());
                assertEquals((long) threads * rounds * 16, taken.sum());
                assertTrue(overlaps.sum() > 0, "cache=" + cache + ": the bulks never overlapped");
                AllocatorStats s = a.stats();
                assertEquals(0, s.allocatedBytes(), "cache=" + cache);
                assertEquals(size, s.freeBytes(), "cache=" + cache + ": every page came back");
                assertEquals(1, s.freeBlocksByOrder()[8], "cache=" + cache + ": and coalesced into one block");
            }
        }
    }

    /** Delegates everything except {@code allocBulk}, so the interface's default runs. */
    private record Delegating(BlockAllocator inner) implements BlockAllocator {
        @Override public long base() { return inner.base(); }
        @Override public long size() { return inner.size(); }
        @Override public int maxOrder() { return inner.maxOrder(); }
        @Override public long alloc(int order) { return inner.alloc(order); }
        @Override public boolean allocAt(long pa, int order) { return inner.allocAt(pa, order); }
        @Override public void free(long pa, int order) { inner.free(pa, order); }
        @Override public AllocatorStats stats() { return inner.stats(); }
        @Override public boolean isClosed() { return inner.isClosed(); }
        @Override public void close() { inner.close(); }
    }
}
