package dev.vcmm.heap;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.vcmm.spi.MemorySpec;
import org.junit.jupiter.api.Test;

/** What is particular to {@link HeapPhysicalMemory}: lazy 64 KiB pages and its argument checks. */
class HeapPhysicalMemoryPagesTest {

    private static final long BASE = 0x8000_0000L;
    private static final long SIZE = 64L << 30;

    @Test
    void shouldAllocateNoPageForReadsOrZeroFills() {
        try (HeapPhysicalMemory mem = HeapPhysicalMemory.create(BASE, SIZE)) {
            mem.lpLong(BASE);
            mem.laInt(BASE + SIZE - 4);
            mem.copyOut(BASE + 12345, new byte[200_000], 0, 200_000);
            mem.fill(BASE, 1L << 30, (byte) 0);
            assertEquals(0, mem.touchedPages());
        }
    }

    @Test
    void shouldAllocateOnePagePerTouched64KiB() {
        try (HeapPhysicalMemory mem = HeapPhysicalMemory.create(BASE, SIZE)) {
            mem.spLong(BASE, 1L);
            mem.soLong(BASE + HeapPhysicalMemory.PAGE_BYTES - 8, 2L); // same page
            mem.casInt(BASE + SIZE - 4, 0, 3);
            mem.fill(BASE + (5L << 30) - 1, 2, (byte) 7); // straddles two pages
            assertEquals(4, mem.touchedPages());
        }
    }

    @Test
    void shouldDropTheWholePagesAZeroCoversAndKeepThePartialOnes() {
        try (HeapPhysicalMemory mem = HeapPhysicalMemory.create(BASE, SIZE)) {
            int page = HeapPhysicalMemory.PAGE_BYTES;
            mem.fill(BASE, 4L * page, (byte) 9); // 4 pages touched
            assertEquals(4, mem.touchedPages());
            mem.zero(BASE + page / 2, 3L * page); // half of page 0, pages 1 and 2 whole, half of page 3
            assertEquals(2, mem.touchedPages(), "the two whole pages are given back");
            assertEquals(0x0909_0909_0909_0909L, mem.lpLong(BASE + page / 2 - 8), "before the range: kept");
            assertEquals(0L, mem.lpLong(BASE + page / 2));
            assertEquals(0L, mem.lpLong(BASE + 2L * page));
            assertEquals(0L, mem.lpLong(BASE + 3L * page + page / 2 - 8));
            assertEquals(0x0909_0909_0909_0909L, mem.lpLong(BASE + 3L * page + page / 2), "after the range: kept");
            mem.zero(BASE + (1L << 30), 1L << 30); // untouched memory: nothing to do, nothing allocated
            assertEquals(2, mem.touchedPages());
        }
    }

    @Test
    void shouldRejectBadGeometryNamingTheField() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> HeapPhysicalMemory.create(100, 4096));
        assertTrue(e.getMessage().contains("base=0x64"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> HeapPhysicalMemory.create(0, 0));
        assertTrue(e.getMessage().contains("size=0"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> HeapPhysicalMemory.create(0, 4097));
        assertTrue(e.getMessage().contains("size=4097"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> HeapPhysicalMemory.create(0, 1L << 47));
        assertTrue(e.getMessage().contains("size="), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> HeapPhysicalMemory.create(Long.MAX_VALUE & ~4095L, 1L << 20));
        assertTrue(e.getMessage().contains("overflows"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> HeapPhysicalMemory.create(-4096, 4096));
    }

    @Test
    void shouldNameTheMemoryFromItsSpecInMessages() {
        HeapPhysicalMemory mem = HeapPhysicalMemory.create(new MemorySpec("ddr", 0, 1L << 20, false, 9, 0));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> mem.lpLong(1L << 20));
        assertTrue(e.getMessage().contains("'ddr'"), e.getMessage());
        mem.close();
        IllegalStateException s = assertThrows(IllegalStateException.class, () -> mem.lpLong(0));
        assertEquals("physical memory 'ddr' is closed", s.getMessage());
    }
}
