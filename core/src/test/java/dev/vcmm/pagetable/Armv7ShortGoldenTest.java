package dev.vcmm.pagetable;

import dev.vcmm.heap.HeapPhysicalMemory;
import dev.vcmm.spi.PhysicalMemory;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Golden descriptors of {@code armv7-short}, each derived by hand from the Arm ARM (DDI 0406C) B3.5.1
 * figures B3-4 (level 1) and B3-5 (level 2), B3.7.1 table B3-8 (AP[2:0], SCTLR.AFE = 0) and B3.8.2 table
 * B3-10 (TEX[2:0] C B, SCTLR.TRE = 0), not from the codec: the derivation of every value sits next to it.
 * Memory types: WB = TEX 001 C1 B1, WT = TEX 000 C1 B0, NC = TEX 001 C0 B0, Device = TEX 000 C0 B1; S = 1
 * for normal memory, 0 for Device. Written entries have nG = NS = PXN = 0 and Domain 0.
 */
class Armv7ShortGoldenTest {

    private static final Armv7ShortFormat F = Armv7ShortFormat.INSTANCE;
    private static final LeafSize SUPER = F.leafSizes().get(0);
    private static final LeafSize SECTION = F.leafSizes().get(1);
    private static final LeafSize LARGE = F.leafSizes().get(2);
    private static final LeafSize SMALL = F.leafSizes().get(3);

    private static final Attributes RW = Attributes.RW;                                                    // AP 001, XN
    private static final Attributes R_XU_NC = new Attributes(true, false, true, true, CachePolicy.NON_CACHEABLE); // AP 111
    private static final Attributes R_U = new Attributes(true, false, false, true, CachePolicy.WRITE_BACK);        // AP 111, XN
    private static final Attributes RWX_WT = new Attributes(true, true, true, false, CachePolicy.WRITE_THROUGH);  // AP 001
    private static final Attributes RW_DEV = RW.with(CachePolicy.DEVICE);                                     // AP 001, XN

    /*
     * 4 KiB small page, pa 0x8000_1000, privileged RW, WB, XN:
     *   [31:12] base 0x80001          -> 0x8000_1000
     *   bit 11  nG = 0
     *   bit 10  S = 1 (normal)        -> 0x400
     *   bit 9   AP[2] = 0 (AP 001)
     *   [8:6]   TEX = 001             -> 0x040
     *   [5:4]   AP[1:0] = 01          -> 0x010
     *   bit 3   C = 1                 -> 0x008
     *   bit 2   B = 1                 -> 0x004
     *   bit 1   1 (small page)        -> 0x002
     *   bit 0   XN = 1                -> 0x001
     *   = 0x8000_1000 | 0x45F
     */
    static final long SMALL_RW_WB = 0x8000_145FL;

    /*
     * 4 KiB small page, pa 0xFEDC_B000, privileged RW, Device, XN:
     *   base 0xFEDC_B000; S = 0 (Device); AP[2] = 0; TEX = 000; AP[1:0] = 01 -> 0x010; C = 0; B = 1 -> 0x004;
     *   bit 1 -> 0x002; XN -> 0x001; = 0xFEDC_B000 | 0x017
     */
    static final long SMALL_RW_DEVICE = 0xFEDC_B017L;

    /*
     * 64 KiB large page (each of its 16 entries), pa 0x1234_0000, read + execute for privileged and user
     * (AP 111), non-cacheable:
     *   [31:16] base 0x1234           -> 0x1234_0000
     *   bit 15  XN = 0
     *   [14:12] TEX = 001             -> 0x1000
     *   bit 11  nG = 0
     *   bit 10  S = 1 (normal)        -> 0x0400
     *   bit 9   AP[2] = 1             -> 0x0200
     *   [8:6]   SBZ
     *   [5:4]   AP[1:0] = 11          -> 0x0030
     *   bit 3   C = 0, bit 2 B = 0
     *   [1:0]   01 (large page)       -> 0x0001
     *   = 0x1234_0000 | 0x1631
     */
    static final long LARGE_RXU_NC = 0x1234_1631L;

    /*
     * 1 MiB section, pa 0x4560_0000, read-only for privileged and user (AP 111), WB, XN:
     *   [31:20] base 0x456            -> 0x4560_0000
     *   bit 19  NS = 0, bit 18 = 0 (section), bit 17 nG = 0
     *   bit 16  S = 1                 -> 0x1_0000
     *   bit 15  AP[2] = 1             -> 0x0_8000
     *   [14:12] TEX = 001             -> 0x0_1000
     *   [11:10] AP[1:0] = 11          -> 0x0_0C00
     *   bit 9 IMP = 0, [8:5] Domain = 0
     *   bit 4   XN = 1                -> 0x10
     *   bit 3   C = 1                 -> 0x08
     *   bit 2   B = 1                 -> 0x04
     *   [1:0]   10 (section, PXN = 0) -> 0x02
     *   = 0x4560_0000 | 0x1_9C1E
     */
    static final long SECTION_RU_WB = 0x4561_9C1EL;

    /*
     * 1 MiB section, pa 0x0010_0000, privileged RWX, WT:
     *   base 0x001 -> 0x0010_0000; S -> 0x1_0000; AP[2] = 0; TEX = 000; AP[1:0] = 01 -> 0x400; XN = 0;
     *   C = 1 -> 0x8; B = 0; type 10 -> 0x2; = 0x0010_0000 | 0x1_040A
     */
    static final long SECTION_RWX_WT = 0x0011_040AL;

    /*
     * 16 MiB supersection (each of its 16 entries), pa 0x1_2300_0000, privileged RW, WB, XN:
     *   [31:24] PA[31:24] = 0x23      -> 0x2300_0000
     *   [23:20] PA[35:32] = 0x1       -> 0x0010_0000
     *   bit 19  NS = 0
     *   bit 18  1 (supersection)      -> 0x0004_0000
     *   bit 17  nG = 0
     *   bit 16  S = 1                 -> 0x0001_0000
     *   bit 15  AP[2] = 0
     *   [14:12] TEX = 001             -> 0x1000
     *   [11:10] AP[1:0] = 01          -> 0x0400
     *   [8:5]   PA[39:36] = 0
     *   bit 4 XN -> 0x10, bit 3 C -> 0x08, bit 2 B -> 0x04, [1:0] 10 -> 0x02
     *   = 0x2315_141E
     */
    static final long SUPER_RW_WB = 0x2315_141EL;

    /*
     * 16 MiB supersection, pa 0xAB_CD00_0000, privileged RW, Device, XN:
     *   PA[31:24] = 0xCD -> 0xCD00_0000; PA[35:32] = 0xB -> 0x00B0_0000; bit 18 -> 0x0004_0000; S = 0;
     *   TEX = 000; AP[1:0] = 01 -> 0x400; PA[39:36] = 0xA at [8:5] -> 0x140; XN -> 0x10; C = 0; B -> 0x04;
     *   type 10 -> 0x02; = 0xCDB4_0000 | 0x556
     */
    static final long SUPER_RW_DEVICE = 0xCDB4_0556L;

    /*
     * Page-table descriptor at level 1 for a level-2 table at 0x4000_0400:
     *   [31:10] base -> 0x4000_0400; bit 9 IMP = 0, [8:5] Domain = 0, bit 4 SBZ, bit 3 NS = 0, bit 2 PXN = 0,
     *   [1:0] 01 -> 0x1; = 0x4000_0401
     */
    static final long TABLE_DESC = 0x4000_0401L;

    @Test
    void shouldEncodeSmallPages() {
        assertEquals(SMALL_RW_WB, F.leafEntry(SMALL, 0x8000_1000L, 0, RW));
        assertEquals(SMALL_RW_DEVICE, F.leafEntry(SMALL, 0xFEDC_B000L, 0, RW_DEV));
    }

    @Test
    void shouldEncodeTheSameValueInEveryEntryOfALargePage() {
        for (int i = 0; i < 16; i++) {
            assertEquals(LARGE_RXU_NC, F.leafEntry(LARGE, 0x1234_0000L, i, R_XU_NC), "entry " + i);
        }
    }

    @Test
    void shouldEncodeSections() {
        assertEquals(SECTION_RU_WB, F.leafEntry(SECTION, 0x4560_0000L, 0, R_U));
        assertEquals(SECTION_RWX_WT, F.leafEntry(SECTION, 0x0010_0000L, 0, RWX_WT));
    }

    @Test
    void shouldEncodeTheSameValueInEveryEntryOfASupersection() {
        for (int i = 0; i < 16; i++) {
            assertEquals(SUPER_RW_WB, F.leafEntry(SUPER, 0x1_2300_0000L, i, RW), "entry " + i);
            assertEquals(SUPER_RW_DEVICE, F.leafEntry(SUPER, 0xAB_CD00_0000L, i, RW_DEV), "entry " + i);
        }
    }

    @Test
    void shouldEncodeAPageTableDescriptor() {
        assertEquals(TABLE_DESC, F.tableEntry(0, 0x4000_0400L));
    }

    @Test
    void shouldDecodeTheGoldenValuesBack() {
        assertLeaf(F.decode(1, SMALL_RW_WB, 0x0010_2123L), 0x8000_1123L, SMALL, RW);
        assertLeaf(F.decode(1, SMALL_RW_DEVICE, 0x0010_2FFFL), 0xFEDC_BFFFL, SMALL, RW_DEV);
        // any of the 16 entries, any offset inside the 64 KiB: base | VA[15:0]
        assertLeaf(F.decode(1, LARGE_RXU_NC, 0x0021_ABCDL), 0x1234_ABCDL, LARGE, R_XU_NC);
        assertLeaf(F.decode(0, SECTION_RU_WB, 0x1234_5678L), 0x4564_5678L, SECTION, R_U);
        assertLeaf(F.decode(0, SECTION_RWX_WT, 0x0000_0042L), 0x0010_0042L, SECTION, RWX_WT);
        // base | VA[23:0], PA[39:32] from bits [8:5] and [23:20]
        assertLeaf(F.decode(0, SUPER_RW_WB, 0x0345_6789L), 0x1_2345_6789L, SUPER, RW);
        assertLeaf(F.decode(0, SUPER_RW_DEVICE, 0xFFFF_FFFFL), 0xAB_CDFF_FFFFL, SUPER, RW_DEV);
        assertEquals(new Descriptor.Table(0x4000_0400L), F.decode(0, TABLE_DESC, 0x0010_0000L));
    }

    @Test
    void shouldDecodeReservedEncodingsAsInvalid() {
        // L1 bits[1:0] = 11: a section with PXN = 1, reserved without the PXN extension
        assertInstanceOf(Descriptor.Invalid.class, F.decode(0, SECTION_RU_WB | 0b11, 0));
        // fault entries at both levels
        assertInstanceOf(Descriptor.Invalid.class, F.decode(0, 0x4560_0000L, 0));
        assertInstanceOf(Descriptor.Invalid.class, F.decode(1, 0x8000_1000L, 0));
        // AP[2:0] = 100 (reserved): small page with AP[2] = 1, AP[1:0] = 00 -> 0x8000_1000 | 0x200 | 0x2
        assertInstanceOf(Descriptor.Invalid.class, F.decode(1, 0x8000_1202L, 0));
        // TEX = 011 (reserved) in a small page: TEX at [8:6] -> 0x0C0, AP 001 -> 0x010, type -> 0x2
        assertInstanceOf(Descriptor.Invalid.class, F.decode(1, 0x8000_10D2L, 0));
        // TEX 001 C1 B0 (IMPLEMENTATION DEFINED) in a section: 0x1000 | C 0x8 | AP 0x400 | type 0x2
        assertInstanceOf(Descriptor.Invalid.class, F.decode(0, 0x4560_140AL, 0));
    }

    @Test
    void shouldPutEntriesWhereTheHardwareLooks() {
        PhysicalMemory memory = HeapPhysicalMemory.create(PageTableConformanceTest.PT_BASE, PageTableConformanceTest.PT_SIZE);
        TestBlockAllocator allocator = new TestBlockAllocator(PageTableConformanceTest.PT_BASE, PageTableConformanceTest.PT_SIZE);
        try (PageTable table = PageTable.create(F, memory, allocator)) {
            long root = table.root();
            assertEquals(0, root & 0x3FFF, "the level-1 table is 16 KiB aligned (TTBR0 bits [13:0] are not an address)");

            table.map(0x1230_0000L, 0x4560_0000L, 1L << 20, R_U);
            table.map(0x0300_0000L, 0x1_2300_0000L, 16L << 20, RW);
            table.map(0x0010_2000L, 0x8000_1000L, 4096, RW);
            table.map(0x0021_0000L, 0x1234_0000L, 64L << 10, R_XU_NC);

            // level 1 is indexed by VA[31:20]
            assertEquals(SECTION_RU_WB, word(memory, root + 4 * 0x123));
            for (int i = 0x030; i <= 0x03F; i++) {
                assertEquals(SUPER_RW_WB, word(memory, root + 4L * i), "supersection copy at L1 index 0x" + Integer.toHexString(i));
            }
            assertEquals(0, word(memory, root + 4 * 0x02F));
            assertEquals(0, word(memory, root + 4 * 0x040));

            // level 2 is indexed by VA[19:12], through 1 KiB tables
            long l1Small = word(memory, root + 4 * 0x001);
            assertEquals(0b01, l1Small & 0x3FF, "page-table descriptor, NS = 0, Domain = 0, PXN = 0");
            long l2Small = l1Small & ~0x3FFL;
            assertEquals(SMALL_RW_WB, word(memory, l2Small + 4 * 0x02));
            long l2Large = word(memory, root + 4 * 0x002) & ~0x3FFL;
            for (int i = 0x10; i <= 0x1F; i++) {
                assertEquals(LARGE_RXU_NC, word(memory, l2Large + 4L * i), "large-page copy at L2 index 0x" + Integer.toHexString(i));
            }
            assertEquals(0, word(memory, l2Large + 4 * 0x0F));
            assertEquals(0, word(memory, l2Large + 4 * 0x20));
            assertEquals(1024, Math.abs(l2Large - l2Small), "two 1 KiB tables side by side in one slab page");
            assertEquals((16 << 10) + 2 * 1024, table.tableBytes());
            assertEquals((16 << 10) + 4096, allocator.usedBytes(), "the root and one 4 KiB slab page");

            assertEquals(0x1_2345_6789L, ((WalkResult.Translation) table.translate(0x0345_6789L)).pa());
            assertEquals(0x1234_ABCDL, ((WalkResult.Translation) table.translate(0x0021_ABCDL)).pa());
            assertTrue(table.unmap(0, 1L << 32) > 0);
            assertEquals(1, table.tableCount());
        } finally {
            assertEquals(0, allocator.usedBytes());
            memory.close();
        }
    }

    /** @return the 32-bit little-endian word at {@code pa}, assembled from bytes as the walker's bus sees them */
    private static long word(PhysicalMemory memory, long pa) {
        byte[] b = new byte[4];
        memory.copyOut(pa, b, 0, 4);
        return (b[0] & 0xFFL) | (b[1] & 0xFFL) << 8 | (b[2] & 0xFFL) << 16 | (b[3] & 0xFFL) << 24;
    }

    private static void assertLeaf(Descriptor d, long pa, LeafSize leaf, Attributes a) {
        Descriptor.Leaf l = assertInstanceOf(Descriptor.Leaf.class, d);
        assertEquals(pa, l.pa(), () -> "pa 0x" + Long.toHexString(l.pa()));
        assertEquals(leaf, l.leaf());
        assertEquals(a, l.attributes());
    }
}
