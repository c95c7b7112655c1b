package dev.vcmm.testing;

import dev.vcmm.spi.AllocatorStats;
import dev.vcmm.spi.BlockAllocator;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The reference model must itself be right: checked here against a page bitmap. */
class SimpleBuddyAllocatorTest {

    private static final long BASE = 0x8000_0000L;
    private static final long MIB = 1L << 20;

    @Test
    void shouldHandOutLowestBlockAndCoalesceBackToOneBlock() {
        SimpleBuddyAllocator a = new SimpleBuddyAllocator(BASE, 16 * MIB, 18);
        assertEquals(12, a.maxOrder(), "maxOrder lowered to the pool");
        long x = a.alloc(0);
        long y = a.alloc(0);
        long z = a.alloc(4);
        assertEquals(BASE, x);
        assertEquals(BASE + 4096, y);
        assertEquals(BASE + 64 * 1024, z);
        assertEquals(16 * MIB - 8192 - 65536, a.stats().freeBytes());
        a.free(y, 0);
        a.free(z, 4);
        a.free(x, 0);
        AllocatorStats s = a.stats();
        assertEquals(16 * MIB, s.freeBytes());
        assertEquals(16 * MIB, s.largestFreeBlock());
        assertEquals(1, s.freeBlocksByOrder()[12]);
    }

    @Test
    void shouldTakeSpecificBlockWithAllocAtAndRefuseItWhenInUse() {
        SimpleBuddyAllocator a = new SimpleBuddyAllocator(BASE, 4 * MIB, 18);
        assertTrue(a.allocAt(BASE + 3 * MIB + 8192, 1));
        assertFalse(a.allocAt(BASE + 3 * MIB, 8), "1M block overlapping an allocated one");
        assertFalse(a.allocAt(BASE + 3 * MIB + 8192, 0), "part of an allocated block");
        assertEquals(BASE, a.alloc(9)); // the lower 2M half is still whole
        a.free(BASE, 9);
        a.free(BASE + 3 * MIB + 8192, 1);
        assertEquals(4 * MIB, a.stats().largestFreeBlock());
    }

    @Test
    void shouldDetectDoubleFreeWrongOrderAndBadInput() {
        SimpleBuddyAllocator a = new SimpleBuddyAllocator(BASE, 4 * MIB, 18);
        long pa = a.alloc(2);
        assertThrows(IllegalStateException.class, () -> a.free(pa, 1));
        a.free(pa, 2);
        assertThrows(IllegalStateException.class, () -> a.free(pa, 2));
        assertThrows(IllegalArgumentException.class, () -> a.alloc(11));
        assertThrows(IllegalArgumentException.class, () -> a.alloc(-1));
        assertThrows(IllegalArgumentException.class, () -> a.allocAt(BASE + 4096, 1));
        assertThrows(IllegalArgumentException.class, () -> a.free(BASE + 4 * MIB, 0));
        assertEquals(4 * MIB, a.stats().freeBytes());
        a.close();
        assertThrows(IllegalStateException.class, () -> a.alloc(0));
    }

    @Test
    void shouldCutUnalignedPoolIntoAlignedBlocksAndNeverCoalesceOutsideIt() {
        // [12K, 12K + 40K): 4K@12K, 16K@16K, 16K@32K, 4K@48K
        SimpleBuddyAllocator a = new SimpleBuddyAllocator(3 * 4096, 10 * 4096, 18);
        AllocatorStats s = a.stats();
        assertEquals(2, s.freeBlocksByOrder()[0]);
        assertEquals(2, s.freeBlocksByOrder()[2]);
        List<Long> pages = new ArrayList<>();
        for (long pa; (pa = a.alloc(0)) != BlockAllocator.NONE; ) {
            pages.add(pa);
        }
        assertEquals(10, pages.size());
        for (long pa : pages) {
            a.free(pa, 0);
        }
        assertEquals(s, a.stats());
    }

    @Test
    void shouldMatchPageBitmapUnderRandomOperations() {
        long size = 8 * MIB + 12 * 4096;
        SimpleBuddyAllocator a = new SimpleBuddyAllocator(BASE + 4096, size, 18);
        BitSet used = new BitSet();
        List<long[]> live = new ArrayList<>();
        Random rnd = new Random(42);
        for (int step = 0; step < 20_000; step++) {
            if (live.isEmpty() || rnd.nextInt(3) != 0) {
                int order = rnd.nextInt(a.maxOrder() + 1) / (1 + rnd.nextInt(3));
                long pa = a.alloc(order);
                if (pa != BlockAllocator.NONE) {
                    int first = (int) ((pa - a.base()) >> 12);
                    int pages = 1 << order;
                    assertEquals(0, pa & (BlockAllocator.orderSize(order) - 1), "aligned");
                    assertTrue(used.get(first, first + pages).isEmpty(), "handed out twice at step " + step);
                    used.set(first, first + pages);
                    live.add(new long[] {pa, order});
                }
            } else {
                long[] b = live.remove(rnd.nextInt(live.size()));
                a.free(b[0], (int) b[1]);
                int first = (int) ((b[0] - a.base()) >> 12);
                used.clear(first, first + (1 << b[1]));
            }
            assertEquals(size - (long) used.cardinality() * 4096, a.stats().freeBytes());
        }
        for (long[] b : live) {
            a.free(b[0], (int) b[1]);
        }
        assertEquals(new SimpleBuddyAllocator(BASE + 4096, size, 18).stats(), a.stats());
    }
}
