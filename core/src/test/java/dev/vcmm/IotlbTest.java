package dev.vcmm;

import dev.vcmm.pagetable.Attributes;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class IotlbTest {

    static final long K4 = 4096;
    static final long M2 = 2L << 20;

    static Iotlb.Entry page(long va, long pa) {
        return new Iotlb.Entry(va, K4, pa, 3, Attributes.RW);
    }

    @Test
    void shouldHitOnAnyAddressOfACachedLeafOfAnySize() {
        Iotlb t = new Iotlb(8, 2, K4, M2, 1L << 30);
        assertNull(t.lookup(0x4000_0000L));
        Iotlb.Entry block = new Iotlb.Entry(0x4020_0000L, M2, 0x8040_0000L, 2, Attributes.RW);
        assertTrue(t.insert(block, t.generation()));
        assertSame(block, t.lookup(0x4020_0000L + 12345));
        assertEquals(0x8040_0000L + 12345, block.pa(0x4020_0000L + 12345));
        assertNull(t.lookup(0x4040_0000L), "the next 2M is not cached");
        IotlbStats s = t.stats();
        assertEquals(1, s.hits());
        assertEquals(2, s.misses());
        assertEquals(1, s.valid());
    }

    @Test
    void shouldEvictTheLeastRecentlyUsedWayOfASet() {
        Iotlb t = new Iotlb(8, 2, K4); // 4 sets: pages 0, 4, 8 share set 0
        t.insert(page(0, 0x1000_0000L), t.generation());
        t.insert(page(4 * K4, 0x1000_1000L), t.generation());
        assertNotNull(t.lookup(0)); // page 0 becomes the most recently used
        t.insert(page(8 * K4, 0x1000_2000L), t.generation()); // evicts page 4
        assertNotNull(t.lookup(0));
        assertNull(t.lookup(4 * K4));
        assertNotNull(t.lookup(8 * K4));
        t.insert(page(K4, 0x1000_3000L), t.generation()); // another set: no eviction
        assertEquals(3, t.stats().valid());
    }

    @Test
    void shouldReplaceAnEntryForTheSameLeafInsteadOfDuplicatingIt() {
        Iotlb t = new Iotlb(4, 4, K4);
        t.insert(page(0, 0x1000_0000L), t.generation());
        t.insert(page(0, 0x2000_0000L), t.generation());
        assertEquals(1, t.stats().valid());
        assertEquals(0x2000_0000L, t.lookup(0).paBase());
    }

    @Test
    void shouldInvalidateEveryEntryThatOverlapsARange() {
        Iotlb t = new Iotlb(16, 4, K4, M2);
        t.insert(new Iotlb.Entry(0, M2, 0x8000_0000L, 2, Attributes.RW), t.generation());
        t.insert(page(M2, 0x9000_0000L), t.generation());
        t.insert(page(M2 + K4, 0x9000_1000L), t.generation());
        assertEquals(2, t.invalidate(M2 - K4, 2 * K4), "the block's last page and the first 4K page overlap");
        assertNull(t.lookup(5));
        assertNull(t.lookup(M2));
        assertNotNull(t.lookup(M2 + K4));
        assertEquals(1, t.stats().rangeInvalidations());
        assertEquals(1, t.flush());
        assertEquals(1, t.stats().flushes());
        assertEquals(3, t.stats().invalidatedEntries());
    }

    @Test
    void shouldRefuseAFillWhoseWalkRacedWithAnInvalidation() {
        Iotlb t = new Iotlb(4, 2, K4);
        long before = t.generation();
        t.invalidate(0, K4); // the unback that the walk raced with
        assertFalse(t.insert(page(0, 0x1000_0000L), before));
        assertNull(t.lookup(0));
        assertEquals(1, t.stats().staleFillsRefused());
    }

    @Test
    void shouldRefuseBadGeometryAndLeafSizes() {
        assertThrows(IllegalArgumentException.class, () -> new Iotlb(12, 4, K4), "3 sets");
        assertThrows(IllegalArgumentException.class, () -> new Iotlb(4, 0, K4));
        assertThrows(IllegalArgumentException.class, () -> new Iotlb(4, 8, K4));
        assertThrows(IllegalArgumentException.class, () -> new Iotlb(4, 4, 1000));
        assertThrows(IllegalArgumentException.class, () -> new Iotlb(4, 4));
        Iotlb t = new Iotlb(4, 4, K4);
        assertThrows(IllegalArgumentException.class, () -> t.insert(new Iotlb.Entry(0, M2, 0, 2, Attributes.RW), t.generation()));
        assertThrows(IllegalArgumentException.class, () -> DeviceOptions.iotlb(48, 4));
    }
}
