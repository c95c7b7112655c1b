package dev.vcmm.pagetable;

import dev.vcmm.heap.HeapPhysicalMemory;
import dev.vcmm.spi.PhysicalMemory;
import org.junit.jupiter.api.Test;

import static dev.vcmm.pagetable.X86_64FormatTest.rawLe;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Golden encodings of {@link RiscvSv39Format}, derived by hand from the RISC-V privileged specification, 4.4
 * (Sv39 PTE: V0 R1 W2 X3 U4 G5 A6 D7 RSW[9:8] PPN[53:10] reserved[60:54] PBMT[62:61] N63) and Svpbmt
 * (PBMT 0 PMA, 1 NC, 2 IO).
 */
class RiscvSv39FormatTest {

    private static final RiscvSv39Format F = RiscvSv39Format.INSTANCE;
    private static final LeafSize GIGA = F.leafSizes().get(0);
    private static final LeafSize MEGA = F.leafSizes().get(1);
    private static final LeafSize PAGE = F.leafSizes().get(2);
    private static final Attributes RX_USER = new Attributes(true, false, true, true, CachePolicy.WRITE_BACK);
    private static final Attributes X_ONLY_USER_NC = new Attributes(false, false, true, true, CachePolicy.NON_CACHEABLE);

    @Test
    void shouldHaveTheGeometryOfSv39() {
        assertEquals("riscv-sv39", F.name());
        assertEquals(3, F.levels());
        assertEquals(39, F.vaBits());
        assertEquals(56, F.paBits());
        assertEquals(30, F.levelShift(0));
        assertEquals(21, F.levelShift(1));
        assertEquals(12, F.levelShift(2));
        assertEquals(java.util.List.of(new LeafSize(1L << 30, 0, 1), new LeafSize(2L << 20, 1, 1), new LeafSize(4096, 2, 1)),
            F.leafSizes());
    }

    @Test
    void shouldEncodeGoldenDescriptors() {
        // 4 KiB leaf, rw- privileged WB at 0x8020_0000: PPN = 0x8020_0000 >> 12 = 0x80200; << 10 = 0x2008_0000
        //   | V 0x1 | R 0x2 | W 0x4 | A 0x40 | D 0x80 (= 0xC7); X=0 U=0 G=0, PBMT 0
        assertEquals(0x0000_0000_2008_00C7L, F.leafEntry(PAGE, 0x8020_0000L, 0, Attributes.RW));
        // pointer PTE to a table at 0x4000_3000: PPN 0x40003 << 10 = 0x1000_0C00 | V 0x1; R=W=X=0, U=A=D=0
        assertEquals(0x0000_0000_1000_0C01L, F.tableEntry(0, 0x4000_3000L));
        assertEquals(0x0000_0000_1000_0C01L, F.tableEntry(1, 0x4000_3000L));
        // 2 MiB megapage, r-x user WB at 0x8020_0000 (= 0x401 << 21, aligned; PPN[0] = 0x80200 & 0x1FF = 0):
        //   0x2008_0000 | V 0x1 | R 0x2 | X 0x8 | U 0x10 | A 0x40 | D 0x80 (= 0xDB)
        assertEquals(0x0000_0000_2008_00DBL, F.leafEntry(MEGA, 0x8020_0000L, 0, RX_USER));
        // 1 GiB gigapage, rw- privileged DEVICE at 0x8000_0000: PPN 0x80000 << 10 = 0x2000_0000 | 0xC7
        //   | PBMT 2 (IO) << 61 = 0x4000_0000_0000_0000
        assertEquals(0x4000_0000_2000_00C7L, F.leafEntry(GIGA, 0x8000_0000L, 0, Attributes.RW.with(CachePolicy.DEVICE)));
        // 4 KiB leaf, execute-only user NON_CACHEABLE at 0x1000: PPN 1 << 10 = 0x400
        //   | V 0x1 | X 0x8 | U 0x10 | A 0x40 | D 0x80 (= 0xD9) | PBMT 1 (NC) << 61 = 0x2000_0000_0000_0000
        assertEquals(0x2000_0000_0000_04D9L, F.leafEntry(PAGE, 0x1000L, 0, X_ONLY_USER_NC));
        // 4 KiB leaf, rwx privileged WB at the highest page of the 56-bit space, 0x00FF_FFFF_FFFF_F000:
        //   PPN = 0xFFF_FFFF_FFFF (44 ones) << 10 = 0x003F_FFFF_FFFF_FC00 | V R W X A D (= 0xCF)
        assertEquals(0x003F_FFFF_FFFF_FCCFL, F.leafEntry(PAGE, 0x00FF_FFFF_FFFF_F000L, 0, Attributes.RWX));
    }

    @Test
    void shouldDecodeGoldenDescriptors() {
        assertEquals(new Descriptor.Leaf(0x8020_0ABCL, PAGE, Attributes.RW), F.decode(2, 0x2008_00C7L, 0x0ABC));
        assertEquals(new Descriptor.Table(0x4000_3000L), F.decode(0, 0x1000_0C01L, 0));
        assertEquals(new Descriptor.Table(0x4000_3000L), F.decode(1, 0x1000_0C01L, 0));
        // megapage at offset 0x1F_FFFF (its last byte)
        assertEquals(new Descriptor.Leaf(0x803F_FFFFL, MEGA, RX_USER), F.decode(1, 0x2008_00DBL, 0x001F_FFFFL));
        // gigapage looked up through a negative (upper-half) address: the offset is va[29:0] = 0x1234_5678
        assertEquals(new Descriptor.Leaf(0xB234_5678L, GIGA, Attributes.RW.with(CachePolicy.DEVICE)),
            F.decode(0, 0x4000_0000_2000_00C7L, 0xFFFF_FFFF_F234_5678L));
        assertEquals(new Descriptor.Leaf(0x1000L, PAGE, X_ONLY_USER_NC), F.decode(2, 0x2000_0000_0000_04D9L, 0));
        assertEquals(new Descriptor.Leaf(0x00FF_FFFF_FFFF_F000L, PAGE, Attributes.RWX), F.decode(2, 0x003F_FFFF_FFFF_FCCFL, 0));
        // RSW (bits 9:8) and G are ignored by the decoder: 0x300 | 0x20 added to the 4 KiB leaf
        assertEquals(new Descriptor.Leaf(0x8020_0000L, PAGE, Attributes.RW), F.decode(2, 0x2008_03E7L, 0));
    }

    @Test
    void shouldDecodeReservedEncodingsAsInvalid() {
        // V=0
        assertEquals(Descriptor.INVALID, F.decode(2, 0x2008_00C6L, 0));
        // R=0 W=1 (V|W|A|D = 0xC5), and R=0 W=1 X=1 (0xCD): reserved
        assertInstanceOf(Descriptor.Invalid.class, F.decode(2, 0x2008_00C5L, 0));
        assertInstanceOf(Descriptor.Invalid.class, F.decode(2, 0x2008_00CDL, 0));
        // bit 54 and bit 60 (reserved 60:54)
        assertInstanceOf(Descriptor.Invalid.class, F.decode(2, 0x0040_0000_2008_00C7L, 0));
        assertInstanceOf(Descriptor.Invalid.class, F.decode(2, 0x1000_0000_2008_00C7L, 0));
        // PBMT = 3 (reserved)
        assertInstanceOf(Descriptor.Invalid.class, F.decode(2, 0x6000_0000_2008_00C7L, 0));
        // N set (Svnapot, not used by this format)
        assertInstanceOf(Descriptor.Invalid.class, F.decode(2, 0x8000_0000_2008_00C7L, 0));
        // a pointer PTE at the last level (step 4: i < 0)
        assertInstanceOf(Descriptor.Invalid.class, F.decode(2, 0x1000_0C01L, 0));
        // a pointer PTE with A (0x40), D (0x80), U (0x10) or PBMT set: reserved in non-leaf PTEs
        for (long bit : new long[] {0x40, 0x80, 0x10, 1L << 61}) {
            assertInstanceOf(Descriptor.Invalid.class, F.decode(0, 0x1000_0C01L | bit, 0), () -> Long.toHexString(bit));
        }
        // A=0 in a leaf (Svade: page fault)
        assertInstanceOf(Descriptor.Invalid.class, F.decode(2, 0x2008_0087L, 0));
    }

    @Test
    void shouldDecodeMisalignedSuperpagesAsInvalid() {
        // PPN 0x80201 (pa 0x8020_1000): PPN[0] = 1 != 0 -> a megapage leaf is misaligned; a 4 KiB leaf is fine
        long raw = 0x80201L << 10 | 0xC7; // = 0x2008_04C7
        assertEquals(0x2008_04C7L, raw);
        Descriptor.Invalid mega = assertInstanceOf(Descriptor.Invalid.class, F.decode(1, raw, 0));
        assertTrue(mega.why().contains("misaligned superpage"), mega.why());
        assertInstanceOf(Descriptor.Invalid.class, F.decode(0, raw, 0));
        assertEquals(new Descriptor.Leaf(0x8020_1000L, PAGE, Attributes.RW), F.decode(2, raw, 0));
        // PPN 0x80200 is 2 MiB aligned but not 1 GiB aligned (PPN[1] = 1): misaligned as a gigapage
        assertInstanceOf(Descriptor.Invalid.class, F.decode(0, 0x2008_00C7L, 0));
    }

    @Test
    void shouldDecodeAClearDirtyBitAsNotWritable() {
        // rw- leaf with D=0 (0xC7 - 0x80 = 0x47): a store faults under Svade, loads do not
        assertEquals(new Descriptor.Leaf(0x8020_0000L, PAGE, Attributes.RO), F.decode(2, 0x2008_0047L, 0));
    }

    @Test
    void shouldExpressExactlyTheSupportedAttributes() {
        for (Attributes a : PageTableConformanceTest.allAttributes()) {
            boolean expressible = (a.read() || a.execute()) && !(a.write() && !a.read()) && a.cache() != CachePolicy.WRITE_THROUGH;
            if (expressible) {
                F.checkAttributes(a);
                assertEquals(new Descriptor.Leaf(0x5000, PAGE, a), F.decode(2, F.leafEntry(PAGE, 0x5000, 0, a), 0), a::toString);
            } else {
                UnsupportedAttributeException e = assertThrows(UnsupportedAttributeException.class, () -> F.checkAttributes(a));
                assertTrue(e.getMessage().contains("riscv-sv39"), e.getMessage());
            }
        }
    }

    @Test
    void shouldAcceptOnlySignExtendedAddresses() {
        assertTrue(F.isValidVa(0x0000_003F_FFFF_FFFFL));
        assertFalse(F.isValidVa(0x0000_0040_0000_0000L));
        assertFalse(F.isValidVa(0xFFFF_FFBF_FFFF_FFFFL));
        assertTrue(F.isValidVa(0xFFFF_FFC0_0000_0000L));
        assertTrue(F.isValidVa(-1L));
    }

    @Test
    void shouldPlaceEntriesWhereTheHartLooks() {
        try (PhysicalMemory memory = HeapPhysicalMemory.create(0x4000_0000L, 1L << 20);
             PageTable table = PageTable.create(F, memory, new TestBlockAllocator(0x4000_0000L, 1L << 20))) {
            // va 0x4000_5000: VPN[2] = 1, VPN[1] = 0, VPN[0] = 5
            table.map(0x4000_5000L, 0x8020_0000L, 4096, Attributes.RW);
            long l1 = pointer(memory, table.root() + 8 * 1);
            long l2 = pointer(memory, l1);
            assertEquals(0x2008_00C7L, rawLe(memory, l2 + 8 * 5));
            // the last GiB of the space, va -2^30 = 0xFFFF_FFFF_C000_0000: VPN[2] = 511
            table.map(0xFFFF_FFFF_C000_0000L, 0x8000_0000L, 1L << 30, Attributes.RW.with(CachePolicy.DEVICE));
            assertEquals(0x4000_0000_2000_00C7L, rawLe(memory, table.root() + 8 * 511));
            // the first 2 MiB of the upper half, va -2^38 = 0xFFFF_FFC0_0000_0000: VPN[2] = 256, VPN[1] = 0
            table.map(0xFFFF_FFC0_0000_0000L, 0x8020_0000L, 2L << 20, RX_USER);
            assertEquals(0x2008_00DBL, rawLe(memory, pointer(memory, table.root() + 8 * 256)));
            assertEquals(0x8020_1234L, ((WalkResult.Translation) table.translate(0xFFFF_FFC0_0000_1234L)).pa());
            assertEquals(0xBFFF_FFFFL, ((WalkResult.Translation) table.translate(-1L)).pa());
        }
    }

    @Test
    void shouldFaultOnAddressesThatAreNotSignExtended() {
        try (PhysicalMemory memory = HeapPhysicalMemory.create(0x4000_0000L, 1L << 20);
             PageTable table = PageTable.create(F, memory, new TestBlockAllocator(0x4000_0000L, 1L << 20))) {
            table.map(0x0000_003F_FFFF_F000L, 0x1000L, 4096, Attributes.RW);
            for (long va : new long[] {0x0000_0040_0000_0000L, 0xFFFF_FFBF_FFFF_F000L, 0x0000_7FFF_FFFF_F000L}) {
                WalkResult.PageFault fault = assertInstanceOf(WalkResult.PageFault.class, table.translate(va));
                assertEquals(FaultReason.ADDRESS_SIZE, fault.reason(), fault::toString);
            }
            assertThrows(AddressRangeException.class, () -> table.map(0x0000_0040_0000_0000L, 0, 4096, Attributes.RW));
        }
    }

    @Test
    void shouldMapAndTranslateExecuteOnly() {
        try (PhysicalMemory memory = HeapPhysicalMemory.create(0x4000_0000L, 1L << 20);
             PageTable table = PageTable.create(F, memory, new TestBlockAllocator(0x4000_0000L, 1L << 20))) {
            table.map(0x1000, 0x1000, 4096, X_ONLY_USER_NC);
            long root = table.root();
            assertTrue(Walker.translate(F, memory, root, 0x1000, Access.EXECUTE, true).isMapped());
            assertEquals(FaultReason.PERMISSION,
                ((WalkResult.PageFault) Walker.translate(F, memory, root, 0x1000, Access.READ, true)).reason());
            assertThrows(UnsupportedAttributeException.class,
                () -> table.map(0x2000, 0x2000, 4096, new Attributes(false, true, false, false, CachePolicy.WRITE_BACK)));
            assertThrows(UnsupportedAttributeException.class,
                () -> table.map(0x2000, 0x2000, 4096, Attributes.RW.with(CachePolicy.WRITE_THROUGH)));
        }
    }

    /** @return the table address of the Sv39 pointer PTE at {@code pa}, checking it is exactly V with a PPN */
    static long pointer(PhysicalMemory memory, long pa) {
        long raw = rawLe(memory, pa);
        assertEquals(0x1L, raw & 0x3FF, () -> "pointer PTE at 0x" + Long.toHexString(pa) + ": 0x" + Long.toHexString(raw));
        assertEquals(0L, raw & ~0x003F_FFFF_FFFF_FFFFL, "no PBMT, N or reserved bits");
        return (raw >>> 10) << 12;
    }
}
