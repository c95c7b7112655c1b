package dev.vcmm.bench;

import dev.vcmm.spi.BlockAllocator;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.SplittableRandom;

import static dev.vcmm.spi.BlockAllocator.NONE;
import static dev.vcmm.spi.BlockAllocator.PAGE_SIZE;
import static dev.vcmm.spi.BlockAllocator.orderSize;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The benchmark's baseline must be correct before its numbers mean anything. */
class LockedBuddyAllocatorTest {

    private static final long MIB = 1L << 20;

    @Test
    void shouldStartWithOneFreeBlockPerMaximalAlignedRun() {
        try (var a = new LockedBuddyAllocator(0, 1L << 30, 18)) {
            assertEquals(18, a.maxOrder());
            var s = a.stats();
            assertEquals(1L << 30, s.freeBytes());
            assertEquals(1, s.freeBlocksByOrder()[18]);
            assertEquals(0.0, s.fragmentation());
        }
    }

    @Test
    void shouldLowerMaxOrderToFitThePool() {
        try (var a = new LockedBuddyAllocator(0, 3 * MIB, 18)) { // 768 pages: 512 + 256
            assertEquals(9, a.maxOrder());
            assertEquals(1, a.stats().freeBlocksByOrder()[9]);
            assertEquals(1, a.stats().freeBlocksByOrder()[8]);
        }
    }

    @Test
    void shouldSplitOnAllocAndCoalesceOnFree() {
        try (var a = new LockedBuddyAllocator(0, 4 * MIB, 18)) { // one order-10 block
            long p = a.alloc(0);
            assertEquals(0, p);
            var s = a.stats();
            for (int k = 0; k < 10; k++) {
                assertEquals(1, s.freeBlocksByOrder()[k], "order " + k);
            }
            assertEquals(0, s.freeBlocksByOrder()[10]);
            long q = a.alloc(0);
            assertEquals(PAGE_SIZE, q); // the buddy
            a.free(p, 0);
            a.free(q, 0);
            s = a.stats();
            assertEquals(1, s.freeBlocksByOrder()[10]);
            assertEquals(4 * MIB, s.freeBytes());
        }
    }

    @Test
    void shouldReturnNaturallyAlignedBlocksAtANonZeroBase() {
        long base = 6 * MIB; // 2 MiB-aligned but not 4 MiB-aligned
        try (var a = new LockedBuddyAllocator(base, 6 * MIB, 18)) {
            for (int k = 0; k <= a.maxOrder(); k++) {
                long p = a.alloc(k);
                if (p == NONE) {
                    continue;
                }
                assertEquals(0, p & (orderSize(k) - 1), "order " + k + " pa 0x" + Long.toHexString(p));
                assertTrue(p >= base && p + orderSize(k) <= base + 6 * MIB);
                a.free(p, k);
            }
            assertEquals(6 * MIB, a.stats().freeBytes());
        }
    }

    @Test
    void shouldReturnNoneWhenExhaustedAndChangeNothing() {
        try (var a = new LockedBuddyAllocator(0, 2 * MIB, 9)) {
            long p = a.alloc(9);
            assertEquals(0, p);
            assertEquals(NONE, a.alloc(0));
            assertEquals(0, a.stats().freeBytes());
            a.free(p, 9);
            assertNotEquals(NONE, a.alloc(0));
        }
    }

    @Test
    void shouldRejectDoubleFreeWrongOrderAndInteriorFreeWithoutChange() {
        try (var a = new LockedBuddyAllocator(0, 4 * MIB, 18)) {
            long p = a.alloc(2);
            var before = a.stats();
            assertThrows(IllegalStateException.class, () -> a.free(p, 1));
            assertThrows(IllegalStateException.class, () -> a.free(p + PAGE_SIZE, 0));
            assertThrows(IllegalStateException.class, () -> a.free(p + 4 * PAGE_SIZE, 2)); // free, never allocated
            assertEquals(before, a.stats());
            a.free(p, 2);
            var after = a.stats();
            assertThrows(IllegalStateException.class, () -> a.free(p, 2));
            assertEquals(after, a.stats());
        }
    }

    @Test
    void shouldRejectBadArguments() {
        try (var a = new LockedBuddyAllocator(0, 4 * MIB, 18)) {
            assertThrows(IllegalArgumentException.class, () -> a.alloc(-1));
            assertThrows(IllegalArgumentException.class, () -> a.alloc(11));
            assertThrows(IllegalArgumentException.class, () -> a.free(123, 0));
            assertThrows(IllegalArgumentException.class, () -> a.free(PAGE_SIZE, 1));
            assertThrows(IllegalArgumentException.class, () -> a.free(4 * MIB, 0));
            assertThrows(IllegalArgumentException.class, () -> a.allocAt(-PAGE_SIZE, 0));
        }
    }

    @Test
    void shouldAllocAtOnlyWhollyFreeBlocks() {
        try (var a = new LockedBuddyAllocator(0, 4 * MIB, 18)) {
            assertTrue(a.allocAt(5 * PAGE_SIZE, 0));
            assertFalse(a.allocAt(5 * PAGE_SIZE, 0));
            assertFalse(a.allocAt(4 * PAGE_SIZE, 2)); // covers page 5
            assertTrue(a.allocAt(6 * PAGE_SIZE, 1));
            assertEquals(0, a.alloc(2)); // pages 0..3 are still one free order-2 block
            a.free(5 * PAGE_SIZE, 0);
            a.free(6 * PAGE_SIZE, 1);
            a.free(0, 2);
            assertEquals(1, a.stats().freeBlocksByOrder()[10]);
        }
    }

    @Test
    void shouldFailEveryOperationAfterCloseAndCloseIdempotently() {
        var a = new LockedBuddyAllocator(0, 4 * MIB, 18);
        long p = a.alloc(0);
        a.close();
        a.close();
        assertTrue(a.isClosed());
        assertThrows(IllegalStateException.class, () -> a.alloc(0));
        assertThrows(IllegalStateException.class, () -> a.free(p, 0));
        assertThrows(IllegalStateException.class, () -> a.allocAt(0, 0));
        assertThrows(IllegalStateException.class, a::stats);
    }

    /** Random alloc/free/allocAt against a page bitmap: no overlap, alignment, and full coalescing at the end. */
    @Test
    void shouldAgreeWithAPageBitmapUnderRandomOperations() {
        long seed = 0x5eedL;
        var rnd = new SplittableRandom(seed);
        long size = 5 * MIB + 64 * PAGE_SIZE; // not a power of two
        try (BlockAllocator a = new LockedBuddyAllocator(2 * MIB, size, 18)) {
            int pages = (int) (size / PAGE_SIZE);
            var used = new BitSet(pages);
            List<long[]> live = new ArrayList<>();
            for (int step = 0; step < 20_000; step++) {
                int op = rnd.nextInt(10);
                if (op < 5 || live.isEmpty()) {
                    int k = rnd.nextInt(a.maxOrder() + 1);
                    long p = a.alloc(k);
                    if (p != NONE) {
                        int first = (int) ((p - a.base()) / PAGE_SIZE);
                        int n = 1 << k;
                        assertEquals(0, p & (orderSize(k) - 1), "seed " + seed + " step " + step);
                        assertTrue(used.get(first, first + n).isEmpty(), "overlap, seed " + seed + " step " + step);
                        used.set(first, first + n);
                        live.add(new long[] {p, k});
                    }
                } else if (op < 6) {
                    int k = rnd.nextInt(4);
                    int n = 1 << k;
                    int first = rnd.nextInt(pages / n) * n;
                    long p = a.base() + first * PAGE_SIZE;
                    boolean free = used.get(first, first + n).isEmpty();
                    assertEquals(free, a.allocAt(p, k), "seed " + seed + " step " + step);
                    if (free) {
                        used.set(first, first + n);
                        live.add(new long[] {p, k});
                    }
                } else {
                    long[] b = live.remove(rnd.nextInt(live.size()));
                    a.free(b[0], (int) b[1]);
                    int first = (int) ((b[0] - a.base()) / PAGE_SIZE);
                    used.clear(first, first + (1 << b[1]));
                }
                assertEquals((long) used.cardinality() * PAGE_SIZE, a.stats().allocatedBytes(), "seed " + seed + " step " + step);
            }
            for (long[] b : live) {
                a.free(b[0], (int) b[1]);
            }
            var fresh = new LockedBuddyAllocator(2 * MIB, size, 18).stats();
            assertEquals(fresh, a.stats(), "everything must coalesce back");
        }
    }

    @Test
    void shouldCacheSmallBlocksPerThreadAndGiveThemBackOnRelease() throws Exception {
        var spec = new dev.vcmm.spi.MemorySpec("t", 0, 4 * MIB, false, 10, 0);
        try (var a = LockedBuddyAllocator.cached(spec, 8)) {
            long p = a.alloc(0);
            assertNotEquals(NONE, p);
            assertEquals(4 * 4096, a.stats().allocatedBytes(), "a batch of half the cache, held as allocated inside");
            a.free(p, 0);
            long[] q = new long[1];
            Thread other = Thread.ofPlatform().start(() -> {
                q[0] = a.alloc(0);
                a.free(q[0], 0);
                a.releaseThreadCache();
            });
            other.join();
            assertNotEquals(NONE, q[0]);
            assertNotEquals(p, q[0], "another thread does not see this thread's cache");
            long big = a.alloc(3);
            assertNotEquals(NONE, big, "32 KiB blocks are served");
            a.free(big, 3);
            a.releaseThreadCache();
            assertEquals(4 * MIB, a.stats().freeBytes(), "everything back and coalesced");
        }
    }
}
