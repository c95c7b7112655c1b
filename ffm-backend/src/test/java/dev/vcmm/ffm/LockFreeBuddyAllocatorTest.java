package dev.vcmm.ffm;

import dev.vcmm.spi.AllocatorStats;
import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemorySpec;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import static dev.vcmm.spi.BlockAllocator.NONE;
import static dev.vcmm.spi.BlockAllocator.orderSize;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** What the lock-free buddy adds to the {@link BlockAllocator} contract: caches, geometry, races. */
class LockFreeBuddyAllocatorTest {

    private static final long MIB = 1L << 20;
    private static final long GIB = 1L << 30;

    private static LockFreeBuddyAllocator create(long base, long size, int maxOrder, int cache) {
        return LockFreeBuddyAllocator.create(new MemorySpec("t", base, size, false, maxOrder, cache));
    }

    @Test
    void shouldBoundMaxOrderByThePool() {
        try (LockFreeBuddyAllocator a = create(0, 12 * 4096, 18, 0)) {
            assertEquals(3, a.maxOrder());
            assertEquals(12 * 4096, a.stats().freeBytes());
        }
    }

    @Test
    void shouldManage64GiBWithSmallMetadata() {
        long base = 0x8000_0000L;
        try (LockFreeBuddyAllocator a = create(base, 64 * GIB, 18, 0)) {
            assertTrue(a.metadataBytes() < 12 * MIB, () -> "metadata " + a.metadataBytes());
            AllocatorStats s = a.stats();
            assertEquals(64, s.freeBlocksByOrder()[18]);
            long k64 = orderSize(4);
            assertTrue(a.allocAt(base + 64 * GIB - k64, 4), "last 64 KiB block");
            long first = a.alloc(4);
            assertEquals(base + 64 * GIB - 2 * k64, first,
                "best fit above the spread orders: the free buddy of the last block, not a split of a 1 GiB block");
            assertEquals(base, a.alloc(18), "address order among equals: the lowest 1 GiB block");
            a.free(base, 18);
            a.free(base + 64 * GIB - k64, 4);
            a.free(first, 4);
            assertEquals(64, a.stats().freeBlocksByOrder()[18]);
        }
    }

    @Test
    void shouldParkSmallBlocksInTheThreadCacheAndReturnThemOnRelease() {
        try (LockFreeBuddyAllocator a = create(0, 4 * MIB, 9, 16)) {
            long p = a.alloc(0);
            AllocatorStats s = a.stats();
            assertEquals(4096, s.allocatedBytes());
            assertEquals(7 * 4096, s.cachedBytes(), "refilled half the cache (8 blocks) from one 32 KiB block");
            a.free(p, 0);
            assertEquals(8 * 4096, a.stats().cachedBytes());
            a.releaseThreadCache();
            AllocatorStats after = a.stats();
            assertEquals(0, after.cachedBytes());
            assertEquals(4 * MIB, after.freeBytes());
            assertEquals(2, after.freeBlocksByOrder()[9]);
        }
    }

    @Test
    void shouldDetectDoubleFreeOfACachedBlock() {
        try (LockFreeBuddyAllocator a = create(0, 4 * MIB, 9, 16)) {
            long p = a.alloc(1);
            a.free(p, 1);
            long cachedBefore = a.stats().cachedBytes();
            assertThrows(IllegalStateException.class, () -> a.free(p, 1));
            assertEquals(cachedBefore, a.stats().cachedBytes(), "nothing pushed twice");
        }
    }

    @Test
    void shouldReclaimTheCacheOfATerminatedThread() throws Exception {
        try (LockFreeBuddyAllocator a = create(0, 4 * MIB, 9, 16)) {
            Thread t = Thread.ofPlatform().start(() -> {
                long p = a.alloc(0);
                a.free(p, 0);
            });
            t.join();
            AllocatorStats s = a.stats(); // a slow path: it gives back the caches of ended threads
            assertEquals(0, s.cachedBytes());
            assertEquals(4 * MIB, s.freeBytes());
            assertEquals(0, a.registeredCaches(), "the registry keeps no cache of a dead thread");
        }
    }

    @Test
    void shouldTakeBlocksBackFromALiveIdleThreadsCacheWithoutItsHelp() throws Exception {
        MemorySpec spec = new MemorySpec("t", 0, 64 * 4096, false, 6, 16);
        try (LockFreeBuddyAllocator a = LockFreeBuddyAllocator.create(spec, 64 * 4096)) {
            CountDownLatch cached = new CountDownLatch(1);
            CountDownLatch finish = new CountDownLatch(1);
            Thread holder = Thread.ofPlatform().start(() -> {
                long p = a.alloc(0);
                a.free(p, 0); // 8 blocks parked here
                cached.countDown();
                try {
                    finish.await(); // idle: never touches the allocator again until the end
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            });
            cached.await();
            assertEquals(8 * 4096, a.stats().cachedBytes());
            assertEquals(0, a.alloc(6), "the whole pool, taken back from the idle holder's cache");
            assertEquals(0, a.stats().cachedBytes());
            finish.countDown();
            holder.join();
            a.free(0, 6);
        }
    }

    @Test
    void shouldBoundTheBytesOfAllCachesTogether() throws Exception {
        MemorySpec spec = new MemorySpec("t", 0, 4 * MIB, false, 9, 16);
        try (LockFreeBuddyAllocator a = LockFreeBuddyAllocator.create(spec, 64 * 1024)) {
            CountDownLatch done = new CountDownLatch(8);
            CountDownLatch finish = new CountDownLatch(1);
            List<Thread> threads = new ArrayList<>();
            for (int t = 0; t < 8; t++) {
                threads.add(Thread.ofPlatform().start(() -> {
                    long[] p = new long[16];
                    for (int i = 0; i < p.length; i++) {
                        p[i] = a.alloc(i & 3);
                    }
                    for (int i = 0; i < p.length; i++) {
                        a.free(p[i], i & 3);
                    }
                    done.countDown();
                    try {
                        finish.await();
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                }));
            }
            done.await();
            long cached = a.stats().cachedBytes();
            finish.countDown();
            for (Thread t : threads) {
                t.join();
            }
            assertTrue(cached <= 64 * 1024, () -> "cached " + cached + " > budget 65536");
            assertEquals(4 * MIB, a.stats().freeBytes());
        }
    }

    @Test
    void shouldFindABlockParkedInTheCallersOwnCacheForAllocAt() {
        try (LockFreeBuddyAllocator a = create(0, 4 * MIB, 9, 16)) {
            long p = a.alloc(0);
            a.free(p, 0);
            assertTrue(a.allocAt(0, 3), "flushes the own cache and retries");
            a.free(0, 3);
        }
    }

    @Test
    void shouldKeepBuddiesInOneWordForAnUnalignedBase() {
        BuddyLayout layout = new BuddyLayout(0x8000_3000L, 5 * MIB, 9, false);
        assertEquals(0, layout.origin & (4 * MIB - 1));
        for (int k = 0; k <= 9; k++) {
            long i = layout.index(0x8000_3000L, k);
            assertEquals(layout.word(k, i), layout.word(k, i ^ 1), "order " + k);
        }
    }

    @Test
    void shouldLetExactlyOneOfTwoRacingFreesOfOneBlockSucceed() throws Exception {
        try (LockFreeBuddyAllocator a = create(0, 4 * MIB, 9, 0)) {
            for (int round = 0; round < 200; round++) {
                long p = a.alloc(round % 4);
                int order = round % 4;
                CyclicBarrier start = new CyclicBarrier(2);
                AtomicInteger ok = new AtomicInteger();
                AtomicInteger refused = new AtomicInteger();
                Runnable r = () -> {
                    try {
                        start.await();
                        a.free(p, order);
                        ok.incrementAndGet();
                    } catch (IllegalStateException e) {
                        refused.incrementAndGet();
                    } catch (Exception e) {
                        throw new AssertionError(e);
                    }
                };
                Thread t1 = Thread.ofPlatform().start(r);
                Thread t2 = Thread.ofPlatform().start(r);
                t1.join();
                t2.join();
                assertEquals(1, ok.get());
                assertEquals(1, refused.get());
            }
            assertEquals(4 * MIB, a.stats().freeBytes());
        }
    }

    @Test
    void shouldFailRacingOperationsCleanlyWhenClosed() throws Exception {
        LockFreeBuddyAllocator a = create(0, 64 * MIB, 12, 8);
        AtomicReference<Throwable> unexpected = new AtomicReference<>();
        CountDownLatch running = new CountDownLatch(2);
        List<Thread> threads = new ArrayList<>();
        for (int t = 0; t < 2; t++) {
            threads.add(Thread.ofPlatform().start(() -> {
                running.countDown();
                try {
                    for (long i = 0; ; i++) {
                        long p = a.alloc((int) (i % 6));
                        if (p != NONE) {
                            a.free(p, (int) (i % 6));
                        }
                    }
                } catch (IllegalStateException expected) {
                    // the allocator closed under us: the documented outcome
                } catch (Throwable e) {
                    unexpected.set(e);
                }
            }));
        }
        running.await();
        Thread.sleep(20);
        a.close();
        for (Thread t : threads) {
            t.join();
        }
        assertNull(unexpected.get());
        assertTrue(a.isClosed());
    }

    @Test
    void shouldRecoverEveryMaxBlockAfterAFragmentingRun() {
        try (LockFreeBuddyAllocator a = create(0, 16 * MIB, 10, 0)) {
            List<long[]> live = new ArrayList<>();
            java.util.Random rnd = new java.util.Random(7);
            for (int i = 0; i < 5000; i++) {
                if (!live.isEmpty() && rnd.nextInt(3) == 0) {
                    long[] b = live.remove(rnd.nextInt(live.size()));
                    a.free(b[0], (int) b[1]);
                } else {
                    int order = rnd.nextInt(8);
                    long p = a.alloc(order);
                    if (p != NONE) {
                        live.add(new long[] {p, order});
                    }
                }
            }
            assertTrue(a.stats().fragmentation() > 0.0);
            for (long[] b : live) {
                a.free(b[0], (int) b[1]);
            }
            for (int i = 0; i < 4; i++) {
                assertNotEquals(NONE, a.alloc(10));
            }
            assertEquals(NONE, a.alloc(0));
            assertFalse(a.allocAt(0, 0));
        }
    }

    @Test
    void shouldDescribeItself() {
        try (LockFreeBuddyAllocator a = create(0x1000_0000L, 4 * MIB, 9, 4)) {
            assertTrue(a.toString().contains("0x10000000"), a.toString());
            assertEquals(4, a.threadCacheCapacity());
            assertEquals("t", a.name());
            assertEquals(orderSize(9), a.stats().largestFreeBlock());
        }
    }

    @Test
    void shouldCacheLargerOrdersOnlyWhereThePoolCanAffordIt() {
        assertEquals(0, LockFreeBuddyAllocator.cacheCapacities(0, 18, GIB).length, "caching off");
        assertArrayEquals(new int[] {16, 16, 16, 16}, LockFreeBuddyAllocator.cacheCapacities(16, 9, 4 * MIB),
            "a small pool caches only the small orders");
        int[] big = LockFreeBuddyAllocator.cacheCapacities(64, 18, 256 * MIB);
        assertArrayEquals(new int[] {64, 64, 64, 64, 32, 16}, big, "halving per order while within 1/64 of 256 MiB (4 MiB)");
        long parked = 0;
        for (int k = 4; k < big.length; k++) {
            parked += big[k] * orderSize(k);
        }
        assertTrue(parked <= 256 * MIB / LockFreeBuddyAllocator.CACHE_POOL_SHARE);
        assertArrayEquals(new int[] {64, 64, 64, 64, 32, 16, 8, 4, 2, 2}, LockFreeBuddyAllocator.cacheCapacities(64, 18, GIB),
            "up to 2 MiB (14 MiB parked at most) in a 1 GiB pool");
        assertEquals(2, LockFreeBuddyAllocator.cacheCapacities(64, 1, GIB).length, "bounded by maxOrder");
    }

    @Test
    void shouldServeLargerOrdersFromTheCacheAndCoalesceOnRelease() {
        try (LockFreeBuddyAllocator a = create(0, GIB, 18, 64)) {
            long p = a.alloc(6);
            a.free(p, 6);
            assertTrue(a.stats().cachedBytes() >= orderSize(6), "a 256 KiB block parked in the cache");
            assertEquals(p, a.alloc(6), "LIFO: the same block comes back");
            a.free(p, 6);
            a.releaseThreadCache();
            assertEquals(GIB, a.stats().freeBytes());
            assertEquals(1, a.stats().freeBlocksByOrder()[18]);
        }
    }

    @Test
    void shouldCarveEachThreadsSmallBlocksFromItsOwnArena() throws Exception {
        try (LockFreeBuddyAllocator a = create(0, GIB, 18, 64)) {
            long[] first = new long[2];
            CountDownLatch finish = new CountDownLatch(1);
            List<Thread> threads = new ArrayList<>();
            for (int t = 0; t < 2; t++) { // one after the other, the first keeping its cache and arena
                int id = t;
                CountDownLatch done = new CountDownLatch(1);
                threads.add(Thread.ofPlatform().start(() -> {
                    first[id] = a.alloc(0);
                    a.free(first[id], 0);
                    done.countDown();
                    try {
                        finish.await(); // alive, so its cache is not reclaimed
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                }));
                done.await();
            }
            assertTrue(Math.abs(first[0] - first[1]) >= LockFreeBuddyAllocator.ARENA_SIZE,
                "different 2 MiB arenas, so no shared allocated-bitmap line: 0x" + Long.toHexString(first[0]) + " 0x" + Long.toHexString(first[1]));
            assertTrue(a.stats().cachedBytes() >= 2 * LockFreeBuddyAllocator.ARENA_SIZE - 8192, "two arenas parked");
            finish.countDown();
            for (Thread t : threads) {
                t.join();
            }
            a.releaseThreadCache(); // reclaims the caches and arenas of the two terminated threads
            AllocatorStats s = a.stats();
            assertEquals(0, s.cachedBytes());
            assertEquals(GIB, s.freeBytes(), "arenas coalesced back");
            assertEquals(1, s.freeBlocksByOrder()[18]);
        }
    }
}
