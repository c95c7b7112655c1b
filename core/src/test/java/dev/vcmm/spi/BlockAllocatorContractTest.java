package dev.vcmm.spi;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.AtomicReference;

import static dev.vcmm.spi.BlockAllocator.NONE;
import static dev.vcmm.spi.BlockAllocator.orderSize;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The contract every {@link BlockAllocator} keeps (JCTools' QueueSanityTest style): subclasses supply
 * a factory and, for allocators with caches, a way to return cached blocks before a stats check.
 */
public abstract class BlockAllocatorContractTest {

    private static final long MIB = 1L << 20;
    private final List<BlockAllocator> opened = new ArrayList<>();

    /** @return a new, entirely free allocator over {@code [base, base + size)} with orders up to {@code maxOrder}. */
    protected abstract BlockAllocator create(long base, long size, int maxOrder);

    /** Returns blocks parked in the calling thread's caches (and dead threads') to the shared pool. */
    protected void quiesce(BlockAllocator allocator) {
    }

    private BlockAllocator open(long base, long size, int maxOrder) {
        BlockAllocator a = create(base, size, maxOrder);
        opened.add(a);
        return a;
    }

    @AfterEach
    void closeAll() {
        opened.forEach(BlockAllocator::close);
    }

    private AllocatorStats quiescentStats(BlockAllocator a) {
        quiesce(a);
        AllocatorStats s = a.stats();
        assertEquals(s.totalBytes(), s.freeBytes() + s.cachedBytes() + s.allocatedBytes(), () -> "free+cached+allocated != total: " + s);
        return s;
    }

    @Test
    void shouldStartEntirelyFreeInMaximalBlocks() {
        BlockAllocator a = open(0x4000_0000L, 8 * MIB, 9);
        assertEquals(9, a.maxOrder());
        assertEquals(0x4000_0000L, a.base());
        assertEquals(8 * MIB, a.size());
        AllocatorStats s = quiescentStats(a);
        assertEquals(8 * MIB, s.freeBytes());
        assertEquals(0, s.allocatedBytes());
        assertEquals(4, s.freeBlocksByOrder()[9]);
        assertEquals(2 * MIB, s.largestFreeBlock());
        assertEquals(0.0, s.fragmentation());
    }

    @Test
    void shouldHandOutNaturallyAlignedDistinctBlocksUntilExhausted() {
        BlockAllocator a = open(0x10_0000L, 4 * MIB, 8);
        Set<Long> seen = new HashSet<>();
        long pa;
        while ((pa = a.alloc(2)) != NONE) {
            assertEquals(0, pa % orderSize(2), "aligned");
            assertTrue(pa >= a.base() && pa + orderSize(2) <= a.base() + a.size(), "inside");
            assertTrue(seen.add(pa), "distinct");
        }
        assertEquals(4 * MIB / orderSize(2), seen.size());
        assertEquals(NONE, a.alloc(0));
        AllocatorStats s = quiescentStats(a);
        assertEquals(0, s.freeBytes());
        assertEquals(4 * MIB, s.allocatedBytes());
        for (long b : seen) {
            a.free(b, 2);
        }
        AllocatorStats after = quiescentStats(a);
        assertEquals(4 * MIB, after.freeBytes());
        assertEquals(orderSize(8), after.largestFreeBlock(), "fully coalesced");
        assertEquals(4, after.freeBlocksByOrder()[8]);
    }

    @Test
    void shouldSplitAndCoalesce() {
        BlockAllocator a = open(0, 2 * MIB, 9);
        long p = a.alloc(0);
        assertEquals(0, p);
        AllocatorStats s = quiescentStats(a);
        assertEquals(2 * MIB - 4096, s.freeBytes() + s.cachedBytes());
        assertEquals(4096, s.allocatedBytes());
        a.free(p, 0);
        AllocatorStats back = quiescentStats(a);
        assertEquals(1, back.freeBlocksByOrder()[9]);
        assertEquals(2 * MIB, back.largestFreeBlock());
        assertEquals(0, a.alloc(9));
    }

    @Test
    void shouldAllocateSpecificBlocks() {
        BlockAllocator a = open(0, 2 * MIB, 9);
        assertTrue(a.allocAt(0x3000, 0));
        assertFalse(a.allocAt(0x3000, 0), "already taken");
        assertFalse(a.allocAt(0, 2), "overlaps a taken block");
        assertTrue(a.allocAt(0x4000, 2));
        assertTrue(a.allocAt(0x10_0000, 8));
        AllocatorStats s = quiescentStats(a);
        assertEquals(4096 + 16384 + MIB, s.allocatedBytes());
        long p = a.alloc(8);
        assertEquals(NONE, p, "the only other 1 MiB block is split");
        a.free(0x3000, 0);
        a.free(0x4000, 2);
        a.free(0x10_0000, 8);
        assertEquals(2 * MIB, quiescentStats(a).largestFreeBlock());
        assertTrue(a.allocAt(0, 9));
    }

    @Test
    void shouldHandleUnalignedBaseAndOddSize() {
        long base = 0x8000_3000L;
        long size = 3 * MIB + 5 * 4096;
        BlockAllocator a = open(base, size, 9);
        AllocatorStats s = quiescentStats(a);
        assertEquals(size, s.freeBytes());
        List<Long> blocks = new ArrayList<>();
        long pa;
        while ((pa = a.alloc(0)) != NONE) {
            assertTrue(pa >= base && pa < base + size, () -> "outside: " + Long.toHexString(a.base()));
            blocks.add(pa);
        }
        assertEquals(size / 4096, blocks.size());
        for (long b : blocks) {
            a.free(b, 0);
        }
        AllocatorStats after = quiescentStats(a);
        assertEquals(s.freeBlocksByOrder().length, after.freeBlocksByOrder().length);
        for (int k = 0; k < s.freeBlocksByOrder().length; k++) {
            assertEquals(s.freeBlocksByOrder()[k], after.freeBlocksByOrder()[k], "order " + k + " coalesced back");
        }
    }

    @Test
    void shouldRejectBadInputAndChangeNothing() {
        BlockAllocator a = open(0x10_0000L, 4 * MIB, 8);
        long p = a.alloc(4);
        long q = a.alloc(0);
        AllocatorStats before = quiescentStats(a);
        assertThrows(IllegalArgumentException.class, () -> a.alloc(-1));
        assertThrows(IllegalArgumentException.class, () -> a.alloc(a.maxOrder() + 1));
        assertThrows(IllegalArgumentException.class, () -> a.free(p + 4096, 4), "misaligned");
        assertThrows(IllegalArgumentException.class, () -> a.free(0, 0), "below base");
        assertThrows(IllegalArgumentException.class, () -> a.free(0x10_0000L + 4 * MIB, 0), "at end");
        assertThrows(IllegalArgumentException.class, () -> a.free(Long.MAX_VALUE & -4096L, 0), "far outside");
        assertThrows(IllegalArgumentException.class, () -> a.free(-4096, 0), "negative");
        assertThrows(IllegalArgumentException.class, () -> a.allocAt(0x10_0000L + 4 * MIB - 4096, 1), "crosses the end");
        assertThrows(IllegalArgumentException.class, () -> a.free(p, 99));
        IllegalStateException wrongOrder = assertThrows(IllegalStateException.class, () -> a.free(p, 3));
        assertTrue(wrongOrder.getMessage().contains("order"), wrongOrder.getMessage());
        assertThrows(IllegalStateException.class, () -> a.free(p + orderSize(4), 4), "never allocated");
        a.free(q, 0);
        assertThrows(IllegalStateException.class, () -> a.free(q, 0), "double free");
        AllocatorStats after = quiescentStats(a);
        assertEquals(before.allocatedBytes() - 4096, after.allocatedBytes());
        assertEquals(before.freeBytes() + before.cachedBytes() + 4096, after.freeBytes() + after.cachedBytes());
        a.free(p, 4);
        assertEquals(4 * MIB, quiescentStats(a).freeBytes());
    }

    @Test
    void shouldFailClearlyAfterClose() {
        BlockAllocator a = open(0, 2 * MIB, 9);
        long p = a.alloc(0);
        a.close();
        a.close(); // idempotent
        assertTrue(a.isClosed());
        assertTrue(assertThrows(IllegalStateException.class, () -> a.alloc(0)).getMessage().contains("closed"));
        assertThrows(IllegalStateException.class, () -> a.free(p, 0));
        assertThrows(IllegalStateException.class, () -> a.allocAt(0x10_0000, 0));
        assertThrows(IllegalStateException.class, a::stats);
    }

    @Test
    void shouldNeverHandOutABlockTwiceUnderContention() throws Exception {
        int threads = 6;
        long size = 8 * MIB;
        BlockAllocator a = open(0, size, 8);
        AtomicLongArray claims = new AtomicLongArray((int) (size >>> 12));
        AtomicReference<Throwable> failure = new AtomicReference<>();
        CyclicBarrier start = new CyclicBarrier(threads);
        List<Thread> workers = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            int seed = t;
            workers.add(Thread.ofPlatform().start(() -> {
                Random rnd = new Random(seed);
                long[] live = new long[64];
                int[] orders = new int[64];
                int n = 0;
                try {
                    start.await();
                    for (int i = 0; i < 20_000 && failure.get() == null; i++) {
                        if (n == live.length || (n > 0 && rnd.nextBoolean())) {
                            int j = rnd.nextInt(n);
                            release(claims, live[j], orders[j]);
                            a.free(live[j], orders[j]);
                            live[j] = live[--n];
                            orders[j] = orders[n];
                        } else {
                            int order = rnd.nextInt(6);
                            long pa = a.alloc(order);
                            if (pa != NONE) {
                                claim(claims, pa, order);
                                live[n] = pa;
                                orders[n++] = order;
                            }
                        }
                    }
                    for (int j = 0; j < n; j++) {
                        release(claims, live[j], orders[j]);
                        a.free(live[j], orders[j]);
                    }
                    quiesce(a);
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            }));
        }
        for (Thread w : workers) {
            w.join();
        }
        assertNull(failure.get(), () -> "worker failed: " + failure.get());
        AllocatorStats s = quiescentStats(a);
        assertEquals(0, s.allocatedBytes());
        assertEquals(size, s.freeBytes());
        assertEquals(orderSize(8), s.largestFreeBlock(), "coalesced back to max blocks");
        assertEquals(8, s.freeBlocksByOrder()[8]);
        for (int i = 0; i < 8; i++) {
            assertNotEquals(NONE, a.alloc(8), "max-order block " + i);
        }
    }

    private static void claim(AtomicLongArray claims, long pa, int order) {
        for (long page = pa >>> 12, n = orderSize(order) >>> 12; n > 0; n--, page++) {
            if (!claims.compareAndSet((int) page, 0, 1)) {
                throw new AssertionError("page 0x" + Long.toHexString(page << 12) + " handed out twice");
            }
        }
    }

    private static void release(AtomicLongArray claims, long pa, int order) {
        for (long page = pa >>> 12, n = orderSize(order) >>> 12; n > 0; n--, page++) {
            claims.set((int) page, 0);
        }
    }
}
