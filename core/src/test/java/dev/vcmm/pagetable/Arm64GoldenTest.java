package dev.vcmm.pagetable;

import dev.vcmm.heap.HeapPhysicalMemory;
import dev.vcmm.spi.PhysicalMemory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Golden descriptors of the VMSAv8-64 stage 1 formats ({@code arm64-4k}, {@code arm64-16k}, {@code arm64-64k}
 * and sized variants), each derived by hand from the Arm ARM (DDI 0487 K.a) D8 descriptor figures, D8
 * (AttrIndx into MAIR: 0 WB, 1 NC, 2 Device-nGnRE, 3 WT; SH = 11 for normal memory, 00 for Device), D8
 * (AP[2:1] at bits 7:6, PXN bit 53, UXN bit 54) and D8 (Contiguous bit 52), not from the codec. The walk
 * below reads the tables with index fields written from the manual's VA diagrams, not from the format's
 * geometry, so a shared bug in the geometry fails too.
 *
 * <p>Fixed parts of every written leaf: bit 0 valid; bit 1 = 1 for a level-3 page, 0 for a block; AF (bit
 * 10) = 1; nG = NS = 0. Privileged executable: PXN = 0, UXN = 1; user executable: UXN = 0, PXN = 1; not
 * executable: both 1 ({@code 0x0060_0000_0000_0000}).
 */
class Arm64GoldenTest {

    private PhysicalMemory memory;

    private PageTable open(PageTableFormat f) {
        memory = HeapPhysicalMemory.create(PageTableConformanceTest.PT_BASE, PageTableConformanceTest.PT_SIZE);
        return PageTable.create(f, memory, new TestBlockAllocator(PageTableConformanceTest.PT_BASE, PageTableConformanceTest.PT_SIZE));
    }

    @AfterEach
    void close() {
        if (memory != null) {
            memory.close();
        }
    }

    private static final Attributes RW = Attributes.RW;
    private static final Attributes R_XU_NC = new Attributes(true, false, true, true, CachePolicy.NON_CACHEABLE);
    private static final Attributes RWX_DEV = new Attributes(true, true, true, false, CachePolicy.DEVICE);
    private static final Attributes R_WT = new Attributes(true, false, false, false, CachePolicy.WRITE_THROUGH);

    /**
     * Reads the descriptor that maps {@code va} by hand: {@code fields[i] = {shift, width}} of the VA index at
     * each level, and the table-address field [47:g] as {@code addrMask}. Checks every table descriptor on the
     * way is the next table's address with bits 1:0 = 11 and nothing else (D8 "Table descriptor").
     */
    private long leafRaw(PageTable t, long va, int[][] fields, long addrMask, int leafLevel) {
        long table = t.root();
        for (int level = 0; ; level++) {
            long index = (va >>> fields[level][0]) & ((1L << fields[level][1]) - 1);
            long raw = memory.lpLong(table + index * 8);
            if (level == leafLevel) {
                return raw;
            }
            assertEquals(0b11, raw & ~addrMask, "table descriptor at level " + level + ": 0x" + Long.toHexString(raw));
            table = raw & addrMask;
        }
    }

    // ---------------------------------------------------------------- arm64-4k (48-bit, Arm levels 0-3)

    /** D8 Figure "4KB granule, 48-bit VA": L0 VA[47:39], L1 [38:30], L2 [29:21], L3 [20:12]. */
    private static final int[][] VA_4K_48 = {{39, 9}, {30, 9}, {21, 9}, {12, 9}};
    private static final long ADDR_4K = 0x0000_FFFF_FFFF_F000L;

    /*
     * 4 KiB page, pa 0x8000_1000, privileged RW, WB:
     *   [1:0] 11 page -> 0x003; AttrIndx 0; AP[2:1] 00; SH 11 -> 0x300; AF -> 0x400
     *   OA[47:12] -> 0x8000_1000; PXN, UXN -> 0x0060_0000_0000_0000
     */
    static final long PAGE4K_RW_WB = 0x0060_0000_8000_1703L;
    /*
     * 2 MiB block (level 2), pa 0x4020_0000, user read + execute, NC:
     *   [1:0] 01 block -> 0x001; AttrIndx 1 -> 0x004; AP[1] EL0 -> 0x040; AP[2] RO -> 0x080; SH 0x300; AF 0x400
     *   OA[47:21] -> 0x4020_0000; UXN = 0 (user may execute); PXN = 1 -> 0x0020_0000_0000_0000
     */
    static final long BLOCK2M_RXU_NC = 0x0020_0000_4020_07C5L;
    /*
     * 1 GiB block (level 1), pa 0x1_C000_0000, privileged RWX, Device:
     *   [1:0] 01 -> 0x001; AttrIndx 2 -> 0x008; AP 00; SH 00 (Device); AF 0x400; OA[47:30] -> 0x1_C000_0000;
     *   PXN = 0; UXN -> 0x0040_0000_0000_0000
     */
    static final long BLOCK1G_RWX_DEV = 0x0040_0001_C000_0409L;
    /*
     * Entry 3 of a 64 KiB contiguous run of 4 KiB pages, run pa 0x1234_0000 (entry pa 0x1234_3000), privileged RO, WT:
     *   [1:0] 11 -> 0x003; AttrIndx 3 -> 0x00C; AP[2] -> 0x080; SH 0x300; AF 0x400 = 0x78F; Cont -> 0x0010_...;
     *   PXN, UXN -> 0x0060_... ; OA 0x1234_3000
     */
    static final long CONT64K_ENTRY3_RO_WT = 0x0070_0000_1234_378FL;

    @Test
    void shouldWriteTheHandDerivedArm64_4kDescriptors() {
        PageTable t = open(Arm64Lpae4kFormat.INSTANCE);
        t.map(0x0000_1234_5678_9000L, 0x8000_1000L, 4096, RW);
        t.map(0x0000_0000_0060_0000L, 0x4020_0000L, 2L << 20, R_XU_NC);
        t.map(0x0000_7F80_4000_0000L, 0x1_C000_0000L, 1L << 30, RWX_DEV);
        t.map(0x0000_0000_0123_0000L, 0x1234_0000L, 64L << 10, R_WT);
        assertEquals(PAGE4K_RW_WB, leafRaw(t, 0x0000_1234_5678_9000L, VA_4K_48, ADDR_4K, 3));
        assertEquals(BLOCK2M_RXU_NC, leafRaw(t, 0x0000_0000_0060_0000L, VA_4K_48, ADDR_4K, 2));
        assertEquals(BLOCK1G_RWX_DEV, leafRaw(t, 0x0000_7F80_4000_0000L, VA_4K_48, ADDR_4K, 1));
        assertEquals(CONT64K_ENTRY3_RO_WT, leafRaw(t, 0x0000_0000_0123_3000L, VA_4K_48, ADDR_4K, 3));
        // L0 index of 0x7F80_4000_0000 is VA[47:39] = 0xFF; of 0x1234_5678_9000 it is 0x24
        assertEquals(0b11, memory.lpLong(t.root() + 0xFF * 8) & 0b11);
        assertEquals(0b11, memory.lpLong(t.root() + 0x24 * 8) & 0b11);
        t.close();
    }

    // ---------------------------------------------------------------- arm64-16k (48-bit: Arm levels 0-3)

    /** D8 Figure "16KB granule, 48-bit VA": L0 VA[47] (2 entries), L1 [46:36], L2 [35:25], L3 [24:14]. */
    private static final int[][] VA_16K_48 = {{47, 1}, {36, 11}, {25, 11}, {14, 11}};
    private static final long ADDR_16K = 0x0000_FFFF_FFFF_C000L;

    /* 16 KiB page, pa 0x8000_4000, privileged RW, WB: 0x703 as the 4K page, OA[47:14] -> 0x8000_4000, PXN|UXN. */
    static final long PAGE16K_RW_WB = 0x0060_0000_8000_4703L;
    /* 32 MiB block (level 2), pa 0x4200_0000, user r-x, NC: 0x7C5 as the 2 MiB block above, OA[47:25], PXN only. */
    static final long BLOCK32M_RXU_NC = 0x0020_0000_4200_07C5L;
    /*
     * Entry 5 of a 2 MiB run of 128 16 KiB pages (D8: 128 entries at level 3), run pa 0x1240_0000, entry pa
     * 0x1240_0000 + 5 * 0x4000 = 0x1241_4000, privileged RO WT: 0x78F, Cont, PXN|UXN.
     */
    static final long CONT2M_ENTRY5_RO_WT = 0x0070_0000_1241_478FL;
    /*
     * Entry 31 of a 1 GiB run of 32 32 MiB blocks (D8: 32 entries at level 2), run pa 0x8000_0000, entry pa
     * 0x8000_0000 + 31 * 0x200_0000 = 0xBE00_0000, privileged RW WB: [1:0] 01, SH 0x300, AF 0x400 -> 0x701,
     * Cont 0x0010_..., PXN|UXN 0x0060_...
     */
    static final long CONT1G_ENTRY31_RW_WB = 0x0070_0000_BE00_0701L;

    @Test
    void shouldWriteTheHandDerivedArm64_16kDescriptors() {
        PageTable t = open(PageTableFormats.byName("arm64-16k"));
        assertEquals(4, t.format().levels());
        t.map(0x0000_8123_4567_4000L, 0x8000_4000L, 16 << 10, RW);
        t.map(0x0000_0000_0200_0000L, 0x4200_0000L, 32L << 20, R_XU_NC);
        t.map(0x0000_0000_1240_0000L, 0x1240_0000L, 2L << 20, R_WT);
        t.map(0x0000_0040_0000_0000L, 0x8000_0000L, 1L << 30, RW);
        assertEquals(PAGE16K_RW_WB, leafRaw(t, 0x0000_8123_4567_4000L, VA_16K_48, ADDR_16K, 3));
        assertEquals(BLOCK32M_RXU_NC, leafRaw(t, 0x0000_0000_0200_0000L, VA_16K_48, ADDR_16K, 2));
        assertEquals(CONT2M_ENTRY5_RO_WT, leafRaw(t, 0x0000_0000_1241_4000L, VA_16K_48, ADDR_16K, 3));
        assertEquals(CONT1G_ENTRY31_RW_WB, leafRaw(t, 0x0000_0040_3E00_0000L, VA_16K_48, ADDR_16K, 2));
        // VA bit 47 set: the second of the root's two entries
        assertEquals(0b11, memory.lpLong(t.root() + 8) & 0b11);
        assertEquals(0x8000_4123L, ((WalkResult.Translation) t.translate(0x0000_8123_4567_4123L)).pa());
        t.close();
    }

    // ---------------------------------------------------------------- arm64-64k (48-bit: Arm levels 1-3)

    /** D8 Figure "64KB granule, 48-bit VA": L1 VA[47:42] (64 entries), L2 [41:29], L3 [28:16]. */
    private static final int[][] VA_64K_48 = {{42, 6}, {29, 13}, {16, 13}};
    private static final long ADDR_64K = 0x0000_FFFF_FFFF_0000L;

    /* 64 KiB page, pa 0x8001_0000, privileged RW WB: 0x703, OA[47:16], PXN|UXN. */
    static final long PAGE64K_RW_WB = 0x0060_0000_8001_0703L;
    /* 512 MiB block (level 2), pa 0x6000_0000, privileged RWX Device: [1:0] 01, AttrIndx 2 -> 0x008, AF 0x400, UXN. */
    static final long BLOCK512M_RWX_DEV = 0x0040_0000_6000_0409L;
    /*
     * Entry 31 of a 2 MiB run of 32 64 KiB pages, run pa 0x1260_0000, entry pa 0x127F_0000, user r-x NC:
     * [1:0] 11, AttrIndx 1 -> 0x004, AP 11 -> 0x0C0, SH 0x300, AF 0x400 = 0x7C7; Cont 0x0010_...; PXN 0x0020_...
     */
    static final long CONT2M_ENTRY31_RXU_NC = 0x0030_0000_127F_07C7L;

    @Test
    void shouldWriteTheHandDerivedArm64_64kDescriptors() {
        PageTable t = open(PageTableFormats.byName("arm64-64k"));
        assertEquals(3, t.format().levels());
        assertEquals(512, t.format().tableBytes(0), "64 root entries of 8 bytes");
        t.map(0x0000_FC00_0001_0000L, 0x8001_0000L, 64 << 10, RW);
        t.map(0x0000_0000_6000_0000L, 0x6000_0000L, 512L << 20, RWX_DEV);
        t.map(0x0000_0000_0060_0000L, 0x1260_0000L, 2L << 20, R_XU_NC);
        assertEquals(PAGE64K_RW_WB, leafRaw(t, 0x0000_FC00_0001_0000L, VA_64K_48, ADDR_64K, 2));
        assertEquals(BLOCK512M_RWX_DEV, leafRaw(t, 0x0000_0000_6000_0000L, VA_64K_48, ADDR_64K, 1));
        assertEquals(CONT2M_ENTRY31_RXU_NC, leafRaw(t, 0x0000_0000_007F_0000L, VA_64K_48, ADDR_64K, 2));
        // VA[47:42] of 0xFC00_0001_0000 is 0x3F: the root's last entry
        assertEquals(0b11, memory.lpLong(t.root() + 63 * 8) & 0b11);
        t.close();
    }

    // ---------------------------------------------------------------- sized and upper-half variants

    /** 16K granule, T0SZ = 28 (36-bit VA): the walk starts at level 2, VA[35:25] (2048 entries), then [24:14]. */
    @Test
    void shouldStartA36BitSixteenKWalkAtLevelTwo() {
        PageTable t = open(PageTableFormats.byName("arm64-16k-va36"));
        assertEquals(2, t.format().levels());
        assertEquals(16 << 10, t.format().tableBytes(0));
        t.map(0x0000_000F_FE00_0000L, 0x4200_0000L, 32L << 20, R_XU_NC);
        assertEquals(BLOCK32M_RXU_NC, memory.lpLong(t.root() + 0x7FF * 8), "VA[35:25] = 0x7FF: the last root entry");
        assertEquals(WalkResult.PageFault.class, t.translate(0x0000_0010_0000_0000L).getClass(), "bit 36 is outside");
        t.close();
    }

    /**
     * 64K granule, TTBR1 with T1SZ = 22 (42-bit): VA 0xFFFF_FFFF_E000_0000 has bits 63:42 all ones, VA[41:29] =
     * 0x1FFF, the last entry of the level-2 root; a TTBR0 address (bit 63 clear) is an address-size fault.
     */
    @Test
    void shouldIndexAnUpperHalfTableByItsOwnVaWidth() {
        PageTable t = open(PageTableFormats.byName("arm64-64k-va42-ttbr1"));
        assertEquals(2, t.format().levels());
        t.map(0xFFFF_FFFF_E000_0000L, 0x6000_0000L, 512L << 20, RWX_DEV);
        assertEquals(BLOCK512M_RWX_DEV, memory.lpLong(t.root() + 0x1FFF * 8));
        assertEquals(0x6000_0000L + 0x1FFF_FFFFL, ((WalkResult.Translation) t.translate(-1L)).pa());
        WalkResult.PageFault low = assertInstanceOf(WalkResult.PageFault.class, t.translate(0x1000));
        assertEquals(FaultReason.ADDRESS_SIZE, low.reason());
        assertThrows(AddressRangeException.class, () -> t.map(0xFFFF_FBFF_F000_0000L, 0, 64 << 10, RW), "bit 42 clear");
        t.close();
    }

    // ---------------------------------------------------------------- fault kinds and hierarchical limits

    /** D8: a page with AF = 0 raises an Access flag fault at its level, not a translation fault. */
    @Test
    void shouldRaiseAnAccessFlagFaultForAfZero() {
        for (PageTableFormat f : new PageTableFormat[] {Arm64Lpae4kFormat.INSTANCE, PageTableFormats.byName("arm64-16k"),
            PageTableFormats.byName("arm64-64k")}) {
            PageTable t = open(f);
            long page = f.leafSizes().getLast().size();
            t.map(page * 3, 0x8000_0000L, page, RW);
            long at = leafAddress(t, page * 3);
            memory.spLong(at, memory.lpLong(at) & ~(1L << 10));
            WalkResult.PageFault fault = assertInstanceOf(WalkResult.PageFault.class, t.translate(page * 3), f::name);
            assertEquals(FaultReason.ACCESS_FLAG, fault.reason(), f::name);
            assertEquals(f.levels() - 1, fault.level(), f::name);
            memory.spLong(at, 0);
            t.close();
            memory.close();
            memory = null;
        }
    }

    /**
     * D8: APTable = 10 forbids writes below, 01 EL0 access; UXNTable forbids EL0 execution, PXNTable
     * privileged execution. Set by hand in the level-0 table descriptor of a 4K table whose leaf is user RWX.
     */
    @Test
    void shouldLimitLeavesByTheTableDescriptorsAbove() {
        PageTable t = open(Arm64Lpae4kFormat.INSTANCE);
        Attributes rwxu = new Attributes(true, true, true, true, CachePolicy.WRITE_BACK);
        t.map(0x5000, 0x8000_0000L, 4096, rwxu);
        long l0 = t.root(); // VA[47:39] = 0
        long desc = memory.lpLong(l0);
        assertEquals(rwxu, ((WalkResult.Translation) t.translate(0x5000)).attributes());
        memory.spLong(l0, desc | 2L << 61); // APTable = 10
        assertEquals(new Attributes(true, false, true, true, CachePolicy.WRITE_BACK), ((WalkResult.Translation) t.translate(0x5000)).attributes());
        assertEquals(FaultReason.PERMISSION, ((WalkResult.PageFault) Walker.translate(t.format(), memory, t.root(), 0x5000, Access.WRITE, false)).reason());
        memory.spLong(l0, desc | 1L << 61); // APTable = 01
        assertEquals(FaultReason.PERMISSION, ((WalkResult.PageFault) Walker.translate(t.format(), memory, t.root(), 0x5000, Access.READ, true)).reason());
        memory.spLong(l0, desc | 1L << 60); // UXNTable
        assertEquals(FaultReason.PERMISSION, ((WalkResult.PageFault) Walker.translate(t.format(), memory, t.root(), 0x5000, Access.EXECUTE, true)).reason());
        memory.spLong(l0, desc | 1L << 59); // PXNTable: a user leaf's EL0 execute is not limited by it
        assertTrue(Walker.translate(t.format(), memory, t.root(), 0x5000, Access.EXECUTE, true).isMapped());
        memory.spLong(l0, desc);
        t.close();
    }

    /** An output address at or above the IPS size is an Address size fault (D8). */
    @Test
    void shouldRaiseAnAddressSizeFaultForAnOutputAboveIps() {
        PageTable t = open(PageTableFormats.byName("arm64-64k-pa40"));
        t.map(0x10000, 0xFF_FFFF_0000L, 64 << 10, RW);
        assertThrows(AddressRangeException.class, () -> t.map(0x20000, 1L << 40, 64 << 10, RW));
        long at = leafAddress(t, 0x10000);
        memory.spLong(at, memory.lpLong(at) | 1L << 40);
        assertEquals(FaultReason.ADDRESS_SIZE, ((WalkResult.PageFault) t.translate(0x10000)).reason());
        memory.spLong(at, 0);
        t.close();
    }

    private long leafAddress(PageTable t, long va) {
        PageTableFormat f = t.format();
        long table = t.root();
        for (int level = 0; ; level++) {
            long at = table + ((va >>> f.levelShift(level)) & ((1L << f.levelBits(level)) - 1)) * 8;
            if (level == f.levels() - 1) {
                return at;
            }
            table = f.tableAddress(level, memory.lpLong(at));
        }
    }
}
