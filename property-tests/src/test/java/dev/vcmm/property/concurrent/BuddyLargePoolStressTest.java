package dev.vcmm.property.concurrent;

import dev.vcmm.ffm.LockFreeBuddyAllocator;
import dev.vcmm.property.AllocatorKind;
import dev.vcmm.spi.AllocatorStats;
import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemorySpec;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.atomic.LongAdder;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Spurious failing allocs and stranded caches under load, on a 128 MiB pool (so that, with caches on, threads carve private
 * 2 MiB arenas concurrently): eight threads allocate and free small blocks (orders 0..3, at most 16 held
 * each, so never more than 4 MiB), and thread 0 also repeatedly takes and returns half the pool (64 MiB,
 * order 14). At every instant at least 60 MiB are therefore free somewhere, in the shared pool or in some
 * thread's cache, so a small alloc that returns {@code NONE} cannot be linearizable: the test fails on
 * the first one. The overlap of small allocs with the big ones is counted and must be non-zero.
 *
 * <p>{@value #SECONDS} s per case, {@value #LONG_SECONDS} s with {@code -Dvcmm.long=true}; the seed is
 * printed and replayable with {@code -Dvcmm.seed=...} (timing still differs between runs).
 */
class BuddyLargePoolStressTest {

    static final int THREADS = 8;
    static final int SECONDS = 2;
    static final int LONG_SECONDS = 60;
    static final long SIZE = 128L << 20;
    static final int BIG_ORDER = 14;
    static final int HELD_LIMIT = 16;

    @ParameterizedTest(name = "cache={0}")
    @ValueSource(ints = {0, 64})
    void smallAllocsNeverFailWhileMostOfThePoolIsFree(int cacheCapacity) throws Exception {
        long seed = Long.getLong("vcmm.seed", System.nanoTime());
        int seconds = AllocatorKind.longRun() ? LONG_SECONDS : SECONDS;
        System.out.printf("BuddyLargePoolStressTest cache=%d threads=%d seconds=%d seed=%d (replay: -Dvcmm.seed=%d)%n",
            cacheCapacity, THREADS, seconds, seed, seed);
        try (LockFreeBuddyAllocator a = LockFreeBuddyAllocator.create(
                new MemorySpec("large", 0x1_0000_0000L, SIZE, false, 18, cacheCapacity))) {
            AtomicReference<Throwable> failure = new AtomicReference<>();
            LongAdder smallAllocs = new LongAdder();
            LongAdder overlaps = new LongAdder();
            LongAdder bigOk = new LongAdder();
            LongAdder bigNone = new LongAdder();
            java.util.concurrent.atomic.AtomicBoolean bigInFlight = new java.util.concurrent.atomic.AtomicBoolean();
            CyclicBarrier start = new CyclicBarrier(THREADS);
            long deadline = System.nanoTime() + seconds * 1_000_000_000L;
            List<Thread> threads = new ArrayList<>();
            for (int t = 0; t < THREADS; t++) {
                int id = t;
                threads.add(Thread.ofPlatform().name("large-" + t).start(() -> {
                    SplittableRandom rnd = new SplittableRandom(seed + id);
                    List<long[]> held = new ArrayList<>();
                    try {
                        start.await();
                        while (System.nanoTime() < deadline && failure.get() == null) {
                            if (id == 0 && rnd.nextInt(8) == 0) {
                                bigInFlight.set(true);
                                long big = a.alloc(BIG_ORDER);
                                bigInFlight.set(false);
                                if (big == BlockAllocator.NONE) {
                                    bigNone.increment();
                                } else {
                                    bigOk.increment();
                                    Thread.onSpinWait();
                                    a.free(big, BIG_ORDER);
                                }
                                continue;
                            }
                            if (!held.isEmpty() && (rnd.nextBoolean() || held.size() >= HELD_LIMIT)) {
                                long[] b = held.remove(rnd.nextInt(held.size()));
                                a.free(b[0], (int) b[1]);
                                continue;
                            }
                            int k = rnd.nextInt(4);
                            boolean during = bigInFlight.get();
                            long pa = a.alloc(k);
                            if (pa == BlockAllocator.NONE) {
                                throw new AssertionError("alloc(" + k + ") returned NONE while at least 60 MiB were free: "
                                    + a.stats() + " unproven=" + a.unprovenFailures());
                            }
                            smallAllocs.increment();
                            if (during) {
                                overlaps.increment();
                            }
                            held.add(new long[] {pa, k});
                        }
                    } catch (Throwable e) {
                        failure.compareAndSet(null, e);
                    } finally {
                        for (long[] b : held) {
                            a.free(b[0], (int) b[1]);
                        }
                        a.releaseThreadCache();
                    }
                }));
            }
            for (Thread t : threads) {
                t.join();
            }
            if (failure.get() != null) {
                throw new AssertionError("seed=" + seed + " cache=" + cacheCapacity + ": " + failure.get(), failure.get());
            }
            System.out.printf("  small allocs=%d (during a big alloc: %d), big ok=%d none=%d%n",
                smallAllocs.sum(), overlaps.sum(), bigOk.sum(), bigNone.sum());
            assertTrue(overlaps.sum() > 0, "no small alloc overlapped a big one: the test did not test the race");
            assertTrue(bigOk.sum() > 0, "the big alloc never succeeded");
            AllocatorStats s = a.stats();
            assertEquals(SIZE, s.freeBytes(), "seed=" + seed + ": bytes lost " + s);
            assertEquals(0, s.cachedBytes());
            assertEquals(0x1_0000_0000L, a.alloc(a.maxOrder()), "fully coalesced: the whole pool is one block");
        }
    }
}
