package dev.vcmm.pagetable;

import dev.vcmm.heap.HeapPhysicalMemory;
import dev.vcmm.spi.PhysicalMemory;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Golden walk of {@link RiscvSv57Format}, derived by hand from the RISC-V privileged spec, "Sv57": VPN[4] =
 * VA[56:48] indexes the root, then VPN[3..0] = VA[47:39], [38:30], [29:21], [20:12]; a PTE holds PPN = PA >> 12
 * at bits 53:10, and D7 A6 G5 U4 X3 W2 R1 V0 (4.3.1). Pointer PTEs are PPN | V; leaves set A and D.
 */
class RiscvSv57FormatTest {

    private static final RiscvSv57Format F = RiscvSv57Format.INSTANCE;

    @Test
    void shouldHaveTheGeometryOfSv57() {
        assertEquals("riscv-sv57", F.name());
        assertEquals(5, F.levels());
        assertEquals(57, F.vaBits());
        assertEquals(56, F.paBits());
        assertEquals(new LeafSize(1L << 48, 0, 1), F.leafSizes().get(0), "256 TiB petapage at the root");
        assertEquals(new LeafSize(1L << 39, 1, 1), F.leafSizes().get(1), "512 GiB terapage");
        assertEquals(new LeafSize(64L << 10, 4, 16), F.leafSizes().get(4), "Svnapot 64 KiB: 16 last-level PTEs");
        assertTrue(F.isValidVa(0xFF00_0000_0000_0000L));
        assertFalse(F.isValidVa(0x0100_0000_0000_0000L), "bits 63:57 must equal bit 56");
    }

    @Test
    void shouldWalkToHandDerivedEntries() {
        PhysicalMemory memory = HeapPhysicalMemory.create(PageTableConformanceTest.PT_BASE, PageTableConformanceTest.PT_SIZE);
        try (PageTable t = PageTable.create(F, memory, new TestBlockAllocator(PageTableConformanceTest.PT_BASE, PageTableConformanceTest.PT_SIZE))) {
            long va = 0x00AB_CDEF_1234_5000L;
            t.map(va, 0x8000_1000L, 4096, Attributes.RW);
            long[] idx = {0xAB, 0x19B, 0x1BC, 0x091, 0x145};
            long table = t.root();
            for (int level = 0; level < 4; level++) {
                long raw = memory.lpLong(table + idx[level] * 8);
                assertEquals(0x001, raw & 0x3FF, "pointer PTE: V only (U=A=D=0, R=W=X=0) at level " + level);
                table = (raw >>> 10) << 12;
            }
            // leaf 4 KiB rw- privileged PMA at 0x8000_1000: PPN 0x80001 << 10 = 0x2000_0400; V R W A D = 0xC7
            assertEquals(0x0000_0000_2000_04C7L, memory.lpLong(table + idx[4] * 8));
            // 256 TiB petapage at VA 2^48 (VPN[4] = 1), PA 2^48, user r-x: PPN 2^36 << 10 = 2^46; V R X U A D = 0xDB
            t.map(1L << 48, 1L << 48, 1L << 48, new Attributes(true, false, true, true, CachePolicy.WRITE_BACK));
            assertEquals(0x0000_4000_0000_00DBL, memory.lpLong(t.root() + 8));
            assertEquals((1L << 48) + 0x1234_5678L, ((WalkResult.Translation) t.translate((1L << 48) + 0x1234_5678L)).pa());
            // a petapage whose PPN[3:0] is not zero is a misaligned superpage: a page fault at level 0
            memory.spLong(t.root() + 8, 0x0000_4000_0000_04DBL);
            WalkResult.PageFault fault = (WalkResult.PageFault) t.translate(1L << 48);
            assertEquals(FaultReason.TRANSLATION, fault.reason());
            assertEquals(0, fault.level());
            memory.spLong(t.root() + 8, 0x0000_4000_0000_00DBL);
        } finally {
            memory.close();
        }
    }

    /*
     * Svnapot 64 KiB page, pa 0x1234_0000, rw- privileged PMA: PPN = 0x12340 with PPN[3:0] replaced by 1000 ->
     * 0x12348; << 10 = 0x48D_2000; V R W A D = 0xC7; N = bit 63. All 16 PTEs are this value.
     */
    static final long NAPOT64K_RW = 0x8000_0000_048D_20C7L;

    @Test
    void shouldWriteSixteenIdenticalNapotPtes() {
        PhysicalMemory memory = HeapPhysicalMemory.create(PageTableConformanceTest.PT_BASE, PageTableConformanceTest.PT_SIZE);
        try (PageTable t = PageTable.create(F, memory, new TestBlockAllocator(PageTableConformanceTest.PT_BASE, PageTableConformanceTest.PT_SIZE))) {
            long va = 0x0000_0000_0005_0000L; // VPN[0] = VA[20:12] = 0x50..0x5F; every upper VPN 0
            t.map(va, 0x1234_0000L, 64 << 10, Attributes.RW);
            long table = t.root();
            for (int level = 0; level < 4; level++) {
                table = (memory.lpLong(table) >>> 10) << 12;
            }
            for (int i = 0; i < 16; i++) {
                assertEquals(NAPOT64K_RW, memory.lpLong(table + (0x50 + i) * 8), "PTE " + i);
            }
            WalkResult.Translation tr = (WalkResult.Translation) t.translate(va + 0xABCD);
            assertEquals(0x1234_ABCDL, tr.pa());
            assertEquals(64 << 10, tr.leafSize());
            // PPN[3:0] other than 1000 with N = 1 is reserved: a page fault
            memory.spLong(table + 0x50 * 8, NAPOT64K_RW ^ (0b1100L << 10));
            assertEquals(FaultReason.TRANSLATION, ((WalkResult.PageFault) t.translate(va)).reason());
            memory.spLong(table + 0x50 * 8, NAPOT64K_RW);
            // a partial unmap splits the NAPOT page into 4 KiB pages
            assertEquals(4096, t.unmap(va + 0x3000, 4096));
            assertEquals(0x1234_4000L, ((WalkResult.Translation) t.translate(va + 0x4000)).pa());
            assertEquals(4096, ((WalkResult.Translation) t.translate(va + 0x4000)).leafSize());
        } finally {
            memory.close();
        }
    }
}
