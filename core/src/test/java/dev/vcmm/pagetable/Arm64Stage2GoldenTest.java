package dev.vcmm.pagetable;

import dev.vcmm.heap.HeapPhysicalMemory;
import dev.vcmm.spi.PhysicalMemory;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * Golden descriptors of {@code arm64-s2-4k}, derived by hand from the Arm ARM (DDI 0487 K.a) D8 stage 2
 * block/page layout: bits 1:0 (01 block, 11 page), MemAttr[3:0] at 5:2 (D8, FEAT_S2FWB off: 1111 Normal WB,
 * 1010 WT, 0101 NC, 0001 Device-nGnRE), S2AP at 7:6 (01 read, 10 write), SH 9:8 (11 for normal), AF 10,
 * Contiguous 52, XN 54; and from D8's concatenation rule: a 40-bit IPA walks from level 1 with two
 * concatenated 512-entry tables, IPA[39:30] indexing the 1024-entry root.
 */
class Arm64Stage2GoldenTest {

    private static final Attributes RW_U = Attributes.RW.withUser(true);

    /* 1 GiB block at level 1, pa 0x1_C000_0000, rw, WB: 0x1 | MemAttr 0x3C | S2AP 0xC0 | SH 0x300 | AF 0x400 = 0x7FD; XN. */
    static final long BLOCK1G_RW_WB = 0x0040_0001_C000_07FDL;
    /* 4 KiB page, pa 0x8000_1000, execute-only, Device: 0x3 | MemAttr 0001 -> 0x4 | S2AP 00 | SH 00 | AF 0x400; XN = 0. */
    static final long PAGE_X_DEV = 0x0000_0000_8000_1407L;
    /* Entry 15 of a 64 KiB run, entry pa 0x1234_F000, write-only, NC: 0x3 | 0x14 | S2AP 10 -> 0x80 | 0x300 | 0x400 = 0x797; Cont; XN. */
    static final long CONT64K_ENTRY15_W_NC = 0x0050_0000_1234_F797L;

    @Test
    void shouldHaveAConcatenatedRootForAFortyBitIpa() {
        Arm64Stage2Format f = Arm64Stage2Format.INSTANCE;
        assertEquals(3, f.levels());
        assertEquals(1, f.armLevel(0));
        assertEquals(2, f.concatenatedTables());
        assertEquals(8192, f.tableBytes(0));
        assertEquals(2, Arm64Stage2Format.withIpaBits(32).levels(), "32-bit IPA: level 2 start, 4 tables");
        assertEquals(4, Arm64Stage2Format.withIpaBits(32).concatenatedTables());
        assertEquals(16, Arm64Stage2Format.withIpaBits(43).concatenatedTables());
        assertEquals(4, Arm64Stage2Format.withIpaBits(44).levels(), "44 bits need a level-0 start");
        assertThrows(IllegalArgumentException.class, () -> Arm64Stage2Format.withIpaBits(31));
        assertThrows(UnsupportedAttributeException.class, () -> f.checkAttributes(Attributes.RW), "privileged-only");
    }

    @Test
    void shouldWriteTheHandDerivedStage2Descriptors() {
        PhysicalMemory memory = HeapPhysicalMemory.create(PageTableConformanceTest.PT_BASE, PageTableConformanceTest.PT_SIZE);
        try (PageTable t = PageTable.create(Arm64Stage2Format.INSTANCE, memory,
            new TestBlockAllocator(PageTableConformanceTest.PT_BASE, PageTableConformanceTest.PT_SIZE))) {
            t.map(0x80_4000_0000L, 0x1_C000_0000L, 1L << 30, RW_U);
            t.map(0x1234_5000L, 0x8000_1000L, 4096, new Attributes(false, false, true, true, CachePolicy.DEVICE));
            t.map(0x40_0000L, 0x1234_0000L, 64 << 10, new Attributes(false, true, false, true, CachePolicy.NON_CACHEABLE));
            long root = t.root();
            assertEquals(0, root & 8191, "the concatenated root is aligned to its 8 KiB");
            assertEquals(BLOCK1G_RW_WB, memory.lpLong(root + 0x201 * 8), "IPA[39:30] = 0x201: the second table");
            long l2 = memory.lpLong(root) & 0x0000_FFFF_FFFF_F000L; // IPA[39:30] = 0 for both small mappings
            assertEquals(0b11, memory.lpLong(root) & ~0x0000_FFFF_FFFF_F000L);
            long l3 = memory.lpLong(l2 + 0x91 * 8) & 0x0000_FFFF_FFFF_F000L; // IPA[29:21] of 0x1234_5000
            assertEquals(PAGE_X_DEV, memory.lpLong(l3 + 0x145 * 8));          // IPA[20:12]
            long l3b = memory.lpLong(l2 + 0x2 * 8) & 0x0000_FFFF_FFFF_F000L;  // IPA[29:21] of 0x40_0000
            assertEquals(CONT64K_ENTRY15_W_NC, memory.lpLong(l3b + 0xF * 8));
            WalkResult.Translation tr = (WalkResult.Translation) t.translate(0x80_4000_0123L);
            assertEquals(0x1_C000_0123L, tr.pa());
            assertEquals(RW_U, tr.attributes());
            // read from an execute-only page faults on permission, fetch does not
            assertEquals(FaultReason.PERMISSION, ((WalkResult.PageFault) Walker.translate(t.format(), memory, root, 0x1234_5000L,
                Access.READ, false)).reason());
            assertEquals(0x8000_1000L, ((WalkResult.Translation) Walker.translate(t.format(), memory, root, 0x1234_5000L,
                Access.EXECUTE, true)).pa());
            // AF = 0: an Access flag fault at level 3 (interface level 2)
            memory.spLong(l3 + 0x145 * 8, PAGE_X_DEV & ~(1L << 10));
            WalkResult.PageFault af = (WalkResult.PageFault) t.translate(0x1234_5000L);
            assertEquals(FaultReason.ACCESS_FLAG, af.reason());
            assertEquals(2, af.level());
            memory.spLong(l3 + 0x145 * 8, PAGE_X_DEV);
        } finally {
            memory.close();
        }
    }
}
