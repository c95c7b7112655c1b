package dev.vcmm.pagetable;

import dev.vcmm.heap.HeapPhysicalMemory;
import dev.vcmm.spi.PhysicalMemory;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Golden walk of {@link X86_64FiveLevelFormat}, derived by hand from Intel SDM Vol. 3A 4.5: linear-address
 * bits 56:48 index the PML5 table (4.5), a PML5E (Table 4-14) is address[51:12] | P | R/W | U/S as written,
 * and the leaves are those of 4-level paging one level further down (PDPTE 1 GiB at level 2, PDE 2 MiB at
 * level 3, PTE 4 KiB at level 4). Canonical: bits 63:57 equal bit 56 (4.5).
 */
class X86_64FiveLevelFormatTest {

    private static final X86_64FiveLevelFormat F = X86_64FiveLevelFormat.INSTANCE;

    @Test
    void shouldHaveTheGeometryOfFiveLevelPaging() {
        assertEquals("x86-64-5level", F.name());
        assertEquals(5, F.levels());
        assertEquals(57, F.vaBits());
        assertEquals(48, F.levelShift(0));
        assertEquals(12, F.levelShift(4));
        assertEquals(new LeafSize(1L << 30, 2, 1), F.leafSizes().get(0));
        assertEquals(new LeafSize(2L << 20, 3, 1), F.leafSizes().get(1));
        assertEquals(new LeafSize(4L << 10, 4, 1), F.leafSizes().get(2));
        assertTrue(F.isValidVa(0x00FF_FFFF_FFFF_F000L));
        assertTrue(F.isValidVa(0xFF00_0000_0000_0000L));
        assertFalse(F.isValidVa(0x0100_0000_0000_0000L), "bit 56 set, 63:57 clear");
        assertFalse(F.isValidVa(0xFE00_0000_0000_0000L), "bit 56 clear, 63:57 set");
        assertTrue(F.isValidVa(0x0000_8000_0000_0000L), "not canonical under 4-level paging, canonical under LA57");
    }

    @Test
    void shouldWalkFiveLevelsToHandDerivedEntries() {
        PhysicalMemory memory = HeapPhysicalMemory.create(PageTableConformanceTest.PT_BASE, PageTableConformanceTest.PT_SIZE);
        try (PageTable t = PageTable.create(F, memory, new TestBlockAllocator(PageTableConformanceTest.PT_BASE, PageTableConformanceTest.PT_SIZE))) {
            long va = 0x00AB_CDEF_1234_5000L;
            t.map(va, 0x1234_5000L, 4096, Attributes.RW.withUser(true));
            // indices: VA[56:48] = 0xAB, [47:39] = 0x19B, [38:30] = 0x1BC, [29:21] = 0x091, [20:12] = 0x145
            long[] idx = {0xAB, 0x19B, 0x1BC, 0x091, 0x145};
            long table = t.root();
            for (int level = 0; level < 4; level++) {
                long raw = memory.lpLong(table + idx[level] * 8);
                assertEquals(0x7, raw & 0xFFF, "P | R/W | U/S in the table entry at level " + level);
                assertEquals(0, raw & 0xFFF0_0000_0000_0000L, "XD and the ignored high bits clear");
                table = raw & 0x000F_FFFF_FFFF_F000L;
            }
            // PTE 4 KiB rw- user WB: 0x1234_5000 | P R/W U/S A D (0x67) | XD
            assertEquals(0x8000_0000_1234_5067L, memory.lpLong(table + idx[4] * 8));
            // PDPTE 1 GiB rw- privileged Device at 0xC000_0000: 0xFB (P R/W PWT PCD A D PS) | XD, VA[56:48] = 0x1FF
            long top = 0xFFFF_FFFF_C000_0000L;
            t.map(top, 0xC000_0000L, 1L << 30, Attributes.RW.with(CachePolicy.DEVICE));
            long l0 = memory.lpLong(t.root() + 0x1FF * 8) & 0x000F_FFFF_FFFF_F000L;
            long l1 = memory.lpLong(l0 + 0x1FF * 8) & 0x000F_FFFF_FFFF_F000L;
            assertEquals(0x8000_0000_C000_00FBL, memory.lpLong(l1 + 0x1FF * 8));
            assertEquals(0xC000_0123L, ((WalkResult.Translation) t.translate(top + 0x123)).pa());
            // PS is reserved in a PML5E: a fault at level 0
            long pml5e = memory.lpLong(t.root() + 0xAB * 8);
            memory.spLong(t.root() + 0xAB * 8, pml5e | 0x80);
            WalkResult.PageFault fault = (WalkResult.PageFault) t.translate(va);
            assertEquals(FaultReason.TRANSLATION, fault.reason());
            assertEquals(0, fault.level());
            memory.spLong(t.root() + 0xAB * 8, pml5e & ~0x2L); // R/W clear in the PML5E: no write below (4.6)
            assertFalse(((WalkResult.Translation) t.translate(va)).attributes().write());
            memory.spLong(t.root() + 0xAB * 8, pml5e);
        } finally {
            memory.close();
        }
    }
}
