package dev.vcmm.pagetable;

import dev.vcmm.heap.HeapPhysicalMemory;
import dev.vcmm.spi.PhysicalMemory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What {@code armv7-short} does beyond the conformance suite: physical addresses above 4 GiB (reachable only
 * through supersections), the decoding of the AP and TEX:C:B encodings the mapper never writes, and 1 KiB
 * level-2 tables carved four to a page.
 */
class Armv7ShortFormatTest {

    private static final Armv7ShortFormat F = Armv7ShortFormat.INSTANCE;
    private static final long ROOT_BYTES = 16 << 10;

    PhysicalMemory memory;
    TestBlockAllocator allocator;
    PageTable table;

    @BeforeEach
    void open() {
        memory = HeapPhysicalMemory.create(PageTableConformanceTest.PT_BASE, PageTableConformanceTest.PT_SIZE);
        allocator = new TestBlockAllocator(PageTableConformanceTest.PT_BASE, PageTableConformanceTest.PT_SIZE);
        table = PageTable.create(F, memory, allocator);
    }

    @AfterEach
    void closeTable() {
        table.close();
        assertEquals(0, allocator.usedBytes());
        memory.close();
    }

    // ---------------------------------------------------------------------------------------------
    // physical addresses above 4 GiB

    @Test
    void shouldMapSupersectionsAboveFourGib() {
        long va = 0x1000_0000L;
        long pa = 0xFF_FE00_0000L; // the last two supersections of the 40-bit space
        assertEquals(32L << 20, table.map(va, pa, 32L << 20, Attributes.RW));
        WalkResult.Translation t = (WalkResult.Translation) table.translate(va + (16L << 20) + 42);
        assertEquals(pa + (16L << 20) + 42, t.pa());
        assertEquals(16L << 20, t.leafSize());
        assertEquals(32L << 20, table.unmap(va, 32L << 20));
    }

    @Test
    void shouldMapARangeThatCrossesFourGibWithSupersections() {
        long va = 0x2000_0000L;
        assertEquals(32L << 20, table.map(va, 0xFF00_0000L, 32L << 20, Attributes.RW));
        assertEquals(0xFFFF_FFFFL, ((WalkResult.Translation) table.translate(va + (16L << 20) - 1)).pa());
        assertEquals(0x1_0000_0000L, ((WalkResult.Translation) table.translate(va + (16L << 20))).pa());
        assertEquals(32L << 20, table.unmap(va, 32L << 20));
    }

    @Test
    void shouldMapRunsOfSupersectionsAcrossTheCarriesIntoTheExtendedBaseFields() {
        // PA[32] and PA[36] live in bits [23:20] and [8:5]: encodings are not linear across those carries, so the
        // mapper must not extrapolate a run of supersections from its first two entries
        for (long pa : new long[] {0xFE00_0000L, 0xF_FE00_0000L, 0x7F_FD00_0000L}) {
            long va = 0x4000_0000L;
            long length = 5 * (16L << 20);
            table.map(va, pa, length, Attributes.RW);
            for (long off = 0; off < length; off += 16L << 20) {
                WalkResult.Translation t = (WalkResult.Translation) table.translate(va + off + 0x123456);
                assertEquals(pa + off + 0x123456, t.pa(), () -> "pa 0x" + Long.toHexString(pa) + " +0x" + Long.toHexString(t.va() - va));
            }
            assertEquals(length, table.unmap(va, length));
        }
    }

    @Test
    void shouldRefuseSmallerLeavesAboveFourGibAndChangeNothing() {
        // 4 KiB pages: only a 32-bit base fits a small page descriptor
        AddressRangeException e = assertThrows(AddressRangeException.class,
            () -> table.map(0x0010_0000L, 0x1_0000_0000L, 4096, Attributes.RW));
        assertTrue(e.getMessage().contains("armv7-short") && e.getMessage().contains("supersection"), e.getMessage());
        // a run of pages whose last one crosses 4 GiB
        assertThrows(AddressRangeException.class, () -> table.map(0x0010_0000L, 0xFFFF_E000L, 16 << 10, Attributes.RW));
        // 1 MiB sections, va and pa not 16 MiB congruent
        assertThrows(AddressRangeException.class, () -> table.map(0x0010_0000L, 0x1_0010_0000L, 1 << 20, Attributes.RW));
        // 16 MiB-aligned but shorter than a supersection
        assertThrows(AddressRangeException.class, () -> table.map(0x0100_0000L, 0x1_0000_0000L, 8 << 20, Attributes.RW));
        assertEquals(1, table.tableCount(), "a refused leaf leaves no empty level-2 table behind");
        assertEquals(ROOT_BYTES, allocator.usedBytes());
        assertEquals(0, table.unmap(0, 1L << 32));
    }

    @Test
    void shouldRollBackTheLowPartOfARefusedMapAcrossFourGib() {
        // pages below 4 GiB map in a first batch, the part above is refused: the first batch is rolled back
        long va = 0x0030_0000L;
        assertThrows(AddressRangeException.class, () -> table.map(va, 0xFFF0_0000L + (1 << 20) - (64 << 10), 128 << 10, Attributes.RW));
        assertFalse(table.translate(va).isMapped());
        assertEquals(0, table.unmap(0, 1L << 32));
    }

    @Test
    void shouldRefuseToSplitASupersectionAboveFourGibAndKeepItWhole() {
        long va = 0x0400_0000L;
        long pa = 0x3_0000_0000L;
        table.map(va, pa, 16L << 20, Attributes.RW);
        AddressRangeException e = assertThrows(AddressRangeException.class, () -> table.unmap(va + (1 << 20), 4096));
        assertTrue(e.getMessage().contains("supersection"), e.getMessage());
        for (long off = 0; off < (16L << 20); off += 1 << 20) {
            WalkResult.Translation t = (WalkResult.Translation) table.translate(va + off + 4096);
            assertEquals(pa + off + 4096, t.pa());
            assertEquals(16L << 20, t.leafSize(), "still one supersection");
        }
        assertEquals(16L << 20, table.unmap(va, 16L << 20));
    }

    @Test
    void shouldSplitALowSupersectionDownToSmallPages() {
        long va = 0x0500_0000L;
        long pa = 0xA000_0000L;
        table.map(va, pa, 16L << 20, Attributes.RW);
        long hole = va + (3L << 20) + (64 << 10) + 4096;
        assertEquals(4096, table.unmap(hole, 4096));
        assertEquals(1L << 20, ((WalkResult.Translation) table.translate(va)).leafSize(), "other MiBs became sections");
        assertEquals(64L << 10, ((WalkResult.Translation) table.translate(va + (3L << 20))).leafSize(), "the MiB became large pages");
        assertEquals(4096, ((WalkResult.Translation) table.translate(hole + 4096)).leafSize(), "the 64K became small pages");
        assertEquals(pa + (hole + 4096 - va) + 5, ((WalkResult.Translation) table.translate(hole + 4096 + 5)).pa());
        assertFalse(table.translate(hole).isMapped());
        assertEquals((16L << 20) - 4096, table.unmap(va, 16L << 20));
        assertEquals(1, table.tableCount());
    }

    @Test
    void shouldRefuseTablesAboveFourGib() {
        assertThrows(AddressRangeException.class, () -> F.tableEntry(0, 0x1_0000_0000L));
        assertThrows(AddressRangeException.class, () -> F.tableEntry(0, 0x4000_0200L), "not 1 KiB aligned");
    }

    // ---------------------------------------------------------------------------------------------
    // decoding what the mapper never writes

    /** A small page at pa 0x8000_1000 with AP[2:0] = {@code ap}, TEX:C:B = {@code texcb}, XN = {@code xn}. */
    private static long small(int ap, int texcb, boolean xn) {
        return 0x8000_1000L | (ap >> 2) << 9 | (ap & 3) << 4 | (texcb >> 2) << 6 | (texcb & 3) << 2 | 0b10 | (xn ? 1 : 0);
    }

    private static Attributes attributes(long raw) {
        return assertInstanceOf(Descriptor.Leaf.class, F.decode(1, raw, 0)).attributes();
    }

    @Test
    void shouldDecodeNoAccessAsALeafThatFaultsOnPermission() {
        assertEquals(new Attributes(false, false, false, false, CachePolicy.WRITE_BACK), attributes(small(0b000, 0b001_11, false)),
            "AP 000: no access at all; not executable either, a fetch needs read permission (B3.7.2)");
        memory.spInt(table.root() + 4, (int) F.tableEntry(0, PageTableConformanceTest.PT_BASE + (1 << 20)));
        memory.spInt(PageTableConformanceTest.PT_BASE + (1 << 20), (int) small(0b000, 0b001_11, false));
        for (Access access : Access.values()) {
            for (boolean user : new boolean[] {false, true}) {
                WalkResult.PageFault fault = assertInstanceOf(WalkResult.PageFault.class,
                    Walker.translate(F, memory, table.root(), 0x0010_0000L, access, user));
                assertEquals(FaultReason.PERMISSION, fault.reason(), access + " user=" + user);
            }
        }
        memory.spInt(table.root() + 4, 0);
    }

    @Test
    void shouldDecodePrivilegedWriteUserReadOnlyAsReadOnlyForBoth() {
        // AP 010: PL1 RW, PL0 RO; Attributes has one permission set, so the decode never grants more than the
        // hardware: readable by both, writable by neither (only the privileged write is lost)
        assertEquals(new Attributes(true, false, false, true, CachePolicy.WRITE_BACK), attributes(small(0b010, 0b001_11, true)));
        // AP 110: deprecated encoding of read-only for both, same as 111
        assertEquals(attributes(small(0b111, 0b001_11, false)), attributes(small(0b110, 0b001_11, false)));
    }

    @Test
    void shouldDecodeOtherMemoryTypesToTheNearestPolicy() {
        assertEquals(CachePolicy.DEVICE, attributes(small(0b001, 0b000_00, true)).cache(), "strongly-ordered");
        assertEquals(CachePolicy.DEVICE, attributes(small(0b001, 0b010_00, true)).cache(), "non-shareable Device");
        assertEquals(CachePolicy.WRITE_BACK, attributes(small(0b001, 0b000_11, true)).cache(), "WB, no write-allocate");
        // TEX = 1BB, C:B = AA: outer BB, inner AA; decoded by the inner policy
        assertEquals(CachePolicy.NON_CACHEABLE, attributes(small(0b001, 0b101_00, true)).cache(), "outer WB-WA, inner NC");
        assertEquals(CachePolicy.WRITE_BACK, attributes(small(0b001, 0b100_01, true)).cache(), "outer NC, inner WB-WA");
        assertEquals(CachePolicy.WRITE_THROUGH, attributes(small(0b001, 0b111_10, true)).cache(), "outer WB, inner WT");
        assertEquals(CachePolicy.WRITE_BACK, attributes(small(0b001, 0b110_11, true)).cache(), "outer WT, inner WB");
        for (int reserved : new int[] {0b001_01, 0b001_10, 0b010_01, 0b010_10, 0b010_11, 0b011_00, 0b011_11}) {
            assertInstanceOf(Descriptor.Invalid.class, F.decode(1, small(0b001, reserved, true), 0), Integer.toBinaryString(reserved));
        }
    }

    @Test
    void shouldRefuseMappingsWithoutReadPermission() {
        UnsupportedAttributeException e = assertThrows(UnsupportedAttributeException.class,
            () -> F.checkAttributes(new Attributes(false, true, false, false, CachePolicy.WRITE_BACK)));
        assertTrue(e.getMessage().contains("armv7-short"), e.getMessage());
    }

    // ---------------------------------------------------------------------------------------------
    // 1 KiB level-2 tables

    @Test
    void shouldCarveLevelTwoTablesFourToAPage() {
        for (int mib = 0; mib < 5; mib++) {
            table.map((long) mib << 20, 0x8000_0000L, 4096, Attributes.RW);
        }
        assertEquals(6, table.tableCount());
        assertEquals(ROOT_BYTES + 5 * 1024, table.tableBytes());
        assertEquals(ROOT_BYTES + 2 * 4096, allocator.usedBytes(), "five 1 KiB tables in two pages");
        assertEquals(allocator.usedBytes(), table.heldBytes());
        for (int mib = 0; mib < 5; mib++) {
            assertEquals(0x8000_0042L, ((WalkResult.Translation) table.translate(((long) mib << 20) + 0x42)).pa());
        }
        assertEquals(5 * 4096, table.unmap(0, 1L << 32));
        assertEquals(1, table.tableCount());
        assertEquals(ROOT_BYTES + 4096, allocator.usedBytes(), "slab pages go back when their last table is freed, but one kept");
        assertEquals(allocator.usedBytes(), table.heldBytes());
        long before = allocator.usedBytes();
        for (int round = 0; round < 3; round++) { // a table freed and allocated again reuses the spare page
            table.map(0, 0x8000_0000L, 1L << 20, Attributes.RW); // a section: no table
            table.map(1L << 20, 0x8000_0000L, 4096, Attributes.RW);
            assertEquals(before, allocator.usedBytes(), "round " + round);
            assertEquals(4096 + (1L << 20), table.unmap(0, 2L << 20));
        }
        table.close();
        assertEquals(0, allocator.usedBytes(), "close gives back the spare page too");
    }

    @Test
    void shouldReuseFreedSlotsAndKeepAtMostOneEmptyPage() {
        int n = 64;
        for (int mib = 0; mib < n; mib++) {
            table.map((long) mib << 20, 0x8000_0000L, 4096, Attributes.RW);
        }
        assertEquals(ROOT_BYTES + n / 4 * 4096, allocator.usedBytes());
        for (int mib = 0; mib < n; mib += 2) { // free every other table: every page half empty
            assertEquals(4096, table.unmap((long) mib << 20, 1L << 20));
        }
        assertEquals(ROOT_BYTES + n / 4 * 4096, allocator.usedBytes(), "no page is empty yet");
        for (int mib = 0; mib < n; mib += 2) { // the freed slots are reused before any new page
            table.map((long) mib << 20, 0x9000_0000L, 4096, Attributes.RW);
        }
        assertEquals(ROOT_BYTES + n / 4 * 4096, allocator.usedBytes(), "the holes were filled");
        assertEquals(n * 4096L, table.unmap(0, (long) n << 20));
        assertEquals(ROOT_BYTES + 4096, allocator.usedBytes(), "every page emptied: one kept, the rest returned");
        assertEquals(allocator.usedBytes(), table.heldBytes());
        assertEquals(1, table.tableCount());
    }
}
