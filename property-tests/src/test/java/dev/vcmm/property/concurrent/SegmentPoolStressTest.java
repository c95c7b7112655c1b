package dev.vcmm.property.concurrent;

import dev.vcmm.ffm.LeakLevel;
import dev.vcmm.ffm.SegmentPool;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.atomic.LongAdder;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Concurrent stress test of {@link SegmentPool}: four threads, started together by a barrier, allocate segments
 * of every range (slab objects, buddy blocks, large mapped segments, and arena segments), stamp each with a unique
 * id at both ends, and hand half of them to a shared queue from which any thread frees them (cross-thread frees).
 *
 * <p>Checked: no two live segments overlap (a skip-list claim map: every thread inserts its segment, then checks
 * both neighbours, so of two overlapping segments the later checker sees the other); a segment freed by another
 * thread still carries its stamps (no one else wrote into it); every operation succeeds; at the end the pool has
 * nothing live. {@code overlapped} counts operations that began while another thread was inside one: it must be
 * positive, or the run proved nothing about concurrency. Seeds are printed.
 */
class SegmentPoolStressTest {

    static final int THREADS = 4;

    @Test
    void shouldNeverOverlapNorCorruptWithCrossThreadFrees() throws Exception {
        try (SegmentPool pool = SegmentPool.open("stress", 128L << 20, 2L << 20, 16L << 20)) {
            run(pool);
        }
    }

    /**
     * The same with a decay time of zero: every 64th operation of each thread may run a decay pass that punches free
     * memory out of the memfd while the others allocate, write and free. A punched live page would read as zeros and
     * fail the stamp check.
     */
    @Test
    void shouldNeverPunchLiveMemoryWhileDecayingConstantly() throws Exception {
        try (SegmentPool pool = SegmentPool.builder(128L << 20).name("stress-decay").cacheBudget(16L << 20)
                .decay(Duration.ZERO).build()) {
            run(pool);
            SegmentPool.Stats stats = pool.stats();
            assertTrue(stats.decayPasses() >= 2, () -> "passes " + stats); // each ran inside an operation, among others
            assertTrue(stats.decayedBytes() > 0, () -> "nothing was punched: " + stats);
        }
    }

    /**
     * The same with leak detection tracking one allocation in four: tracked segments (scopes of their own) and
     * untracked ones are freed across threads alike; none is reported, as none is dropped.
     */
    @Test
    void shouldFreeTrackedAndUntrackedSegmentsAlikeAcrossThreads() throws Exception {
        java.util.concurrent.atomic.AtomicLong leaks = new java.util.concurrent.atomic.AtomicLong();
        try (SegmentPool pool = SegmentPool.builder(128L << 20).name("stress-leaks").cacheBudget(16L << 20)
                .leakDetection(LeakLevel.SIMPLE).leakSamplingInterval(4).leakListener(r -> leaks.incrementAndGet())
                .build()) {
            run(pool);
        }
        assertEquals(0, leaks.get());
    }

    private static void run(SegmentPool pool) throws Exception {
        long millis = Boolean.getBoolean("vcmm.long") ? 60_000 : 2_000;
        long seed = Long.getLong("vcmm.seed", System.nanoTime());
        System.out.println("SegmentPoolStressTest seed=" + seed + " threads=" + THREADS + " millis=" + millis + " " + pool);
        {
            ConcurrentSkipListMap<Long, Long> claims = new ConcurrentSkipListMap<>();
            ConcurrentLinkedQueue<long[]> handoff = new ConcurrentLinkedQueue<>();
            Map<Long, MemorySegment> segments = new java.util.concurrent.ConcurrentHashMap<>();
            AtomicInteger inside = new AtomicInteger();
            LongAdder overlapped = new LongAdder();
            LongAdder ops = new LongAdder();
            LongAdder crossFrees = new LongAdder();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            CyclicBarrier start = new CyclicBarrier(THREADS);
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(millis);
            List<Thread> threads = new ArrayList<>();
            for (int t = 0; t < THREADS; t++) {
                SplittableRandom rnd = new SplittableRandom(seed + t);
                long tid = t;
                threads.add(Thread.ofPlatform().start(() -> {
                    List<MemorySegment> mine = new ArrayList<>();
                    long serial = 0;
                    try {
                        start.await();
                        while (System.nanoTime() < deadline && failure.get() == null) {
                            if (inside.getAndIncrement() > 0) {
                                overlapped.increment();
                            }
                            try {
                                int r = rnd.nextInt(100);
                                if (r < 45 && mine.size() < 64) {
                                    long size = size(rnd);
                                    MemorySegment s;
                                    try {
                                        s = rnd.nextBoolean() ? pool.allocate(size, 8) : pool.allocateUninitialized(size, 8);
                                    } catch (OutOfMemoryError full) {
                                        continue;
                                    }
                                    long id = (tid << 48) | ++serial;
                                    claim(claims, s, id);
                                    stamp(s, id);
                                    segments.put(id, s);
                                    if (rnd.nextBoolean()) {
                                        handoff.add(new long[]{id, tid});
                                    } else {
                                        mine.add(s);
                                    }
                                } else if (r < 70 && !mine.isEmpty()) {
                                    MemorySegment s = mine.remove(rnd.nextInt(mine.size()));
                                    release(pool, claims, s, segments);
                                } else if (r < 92) {
                                    long[] h = handoff.poll();
                                    if (h != null) {
                                        MemorySegment s = segments.get(h[0]);
                                        check(s != null, "handed-off segment lost");
                                        if (h[1] != tid) {
                                            crossFrees.increment();
                                        }
                                        release(pool, claims, s, segments);
                                    }
                                } else {
                                    try (Arena a = pool.newArena()) {
                                        MemorySegment s = a.allocate(size(rnd), 8);
                                        long id = (tid << 48) | ++serial | (1L << 47);
                                        claim(claims, s, id);
                                        stamp(s, id);
                                        checkStamp(s, id);
                                        unclaim(claims, s);
                                    } catch (OutOfMemoryError full) {
                                        // the pool is full for now
                                    }
                                }
                                ops.increment();
                            } finally {
                                inside.decrementAndGet();
                            }
                        }
                        for (MemorySegment s : mine) {
                            release(pool, claims, s, segments);
                        }
                    } catch (Throwable e) {
                        failure.compareAndSet(null, e);
                    }
                }));
            }
            for (Thread t : threads) {
                t.join();
            }
            long[] h;
            while ((h = handoff.poll()) != null) {
                release(pool, claims, segments.get(h[0]), segments);
            }
            if (failure.get() != null) {
                throw new AssertionError("seed=" + seed + ": " + failure.get(), failure.get());
            }
            System.out.println("  ops=" + ops.sum() + " overlapped=" + overlapped.sum() + " crossThreadFrees=" + crossFrees.sum()
                + " " + pool.stats());
            assertTrue(overlapped.sum() > 0, "no operation overlapped another: the run proved nothing");
            assertTrue(crossFrees.sum() > 0, "no cross-thread free happened");
            assertEquals(0, pool.stats().liveSegments(), "seed=" + seed);
            assertEquals(0, pool.stats().allocatedBytes(), "seed=" + seed);
            assertTrue(claims.isEmpty());
        }
    }

    static long size(SplittableRandom rnd) {
        int r = rnd.nextInt(100);
        if (r < 60) {
            return 16 + rnd.nextInt(2033); // at least 16: the two stamps must not overlap
        } else if (r < 95) {
            return 2049 + rnd.nextInt((1 << 20) - 2049);
        }
        return (2L << 20) + 1 + rnd.nextInt(6 << 20);
    }

    static void claim(ConcurrentSkipListMap<Long, Long> claims, MemorySegment s, long id) {
        long a = s.address();
        check(claims.putIfAbsent(a, a + s.byteSize()) == null, "two live segments start at 0x" + Long.toHexString(a));
        Map.Entry<Long, Long> below = claims.lowerEntry(a);
        check(below == null || below.getValue() <= a, "segment 0x" + Long.toHexString(a) + " overlaps one below");
        Map.Entry<Long, Long> above = claims.higherEntry(a);
        check(above == null || above.getKey() >= a + s.byteSize(), "segment 0x" + Long.toHexString(a) + " overlaps one above");
    }

    static void unclaim(ConcurrentSkipListMap<Long, Long> claims, MemorySegment s) {
        check(claims.remove(s.address()) != null, "claim lost");
    }

    static void stamp(MemorySegment s, long id) {
        s.set(ValueLayout.JAVA_LONG_UNALIGNED, 0, id);
        s.set(ValueLayout.JAVA_LONG_UNALIGNED, s.byteSize() - 8, ~id);
    }

    static void checkStamp(MemorySegment s, long id) {
        check(s.get(ValueLayout.JAVA_LONG_UNALIGNED, 0) == id && s.get(ValueLayout.JAVA_LONG_UNALIGNED, s.byteSize() - 8) == ~id,
            "segment 0x" + Long.toHexString(s.address()) + " of id " + Long.toHexString(id) + " was written by someone else");
    }

    static void release(SegmentPool pool, ConcurrentSkipListMap<Long, Long> claims, MemorySegment s,
                        Map<Long, MemorySegment> segments) {
        long id = s.get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
        checkStamp(s, id);
        check(segments.remove(id) == s, "segment of id " + Long.toHexString(id) + " is not the one stamped");
        unclaim(claims, s);
        pool.free(s);
    }

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }
}
