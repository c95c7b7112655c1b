package dev.vcmm.pagetable;

import dev.vcmm.heap.HeapPhysicalMemory;
import dev.vcmm.spi.PhysicalMemory;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Golden encodings of {@link X86_64Format}, derived by hand from Intel SDM Vol. 3A Tables 4-15..4-20 (bit
 * positions: P0 R/W1 U/S2 PWT3 PCD4 A5 D6 PS7(PAT in a PTE) G8 PAT12(large pages) address[51:12] XD63) and
 * the default IA32_PAT (index PAT:PCD:PWT; 0 WB, 1 WT, 2 UC-, 3 UC).
 */
class X86_64FormatTest {

    private static final X86_64Format F = X86_64Format.INSTANCE;
    private static final LeafSize PAGE_4K = F.leafSizes().get(2);
    private static final LeafSize PAGE_2M = F.leafSizes().get(1);
    private static final LeafSize PAGE_1G = F.leafSizes().get(0);
    private static final Attributes RW_USER = Attributes.RW.withUser(true);
    private static final Attributes RX = new Attributes(true, false, true, false, CachePolicy.WRITE_BACK);

    @Test
    void shouldHaveTheGeometryOfFourLevelPaging() {
        assertEquals("x86-64", F.name());
        assertEquals(4, F.levels());
        assertEquals(48, F.vaBits());
        assertEquals(52, F.paBits());
        assertEquals(8, F.entryBytes());
        assertEquals(39, F.levelShift(0));
        assertEquals(12, F.levelShift(3));
        assertEquals(4096, F.tableBytes(0));
        assertEquals(new LeafSize(1L << 30, 1, 1), PAGE_1G);
        assertEquals(new LeafSize(2L << 20, 2, 1), PAGE_2M);
        assertEquals(new LeafSize(4L << 10, 3, 1), PAGE_4K);
    }

    @Test
    void shouldEncodeGoldenDescriptors() {
        // PTE, 4 KiB, rw- user WB at 0x1234_5000:
        //   address 0x1234_5000 | P 0x1 | R/W 0x2 | U/S 0x4 | A 0x20 | D 0x40 (= 0x67) | XD 1<<63 (no execute)
        //   PWT=PCD=PAT=0 -> PAT index 0 = WB
        assertEquals(0x8000_0000_1234_5067L, F.leafEntry(PAGE_4K, 0x1234_5000L, 0, RW_USER));
        // PDE, 2 MiB, r-x privileged WB at 0x4020_0000 (2 MiB aligned: 0x201 << 21):
        //   address 0x4020_0000 | P 0x1 | A 0x20 | D 0x40 | PS 0x80 (= 0xE1); R/W=0, U/S=0, XD=0
        assertEquals(0x0000_0000_4020_00E1L, F.leafEntry(PAGE_2M, 0x4020_0000L, 0, RX));
        // PDPTE, 1 GiB, rw- privileged DEVICE at 0xC000_0000 (3 << 30):
        //   address 0xC000_0000 | P 0x1 | R/W 0x2 | PWT 0x8 | PCD 0x10 (index 3 = UC) | A 0x20 | D 0x40 | PS 0x80
        //   = 0xFB | XD 1<<63
        assertEquals(0x8000_0000_C000_00FBL, F.leafEntry(PAGE_1G, 0xC000_0000L, 0, Attributes.RW.with(CachePolicy.DEVICE)));
        // PTE, 4 KiB, rwx privileged WT at the highest page of a 52-bit space, 0x000F_FFFF_FFFF_F000:
        //   address bits 51:12 all ones | P 0x1 | R/W 0x2 | PWT 0x8 (index 1 = WT) | A 0x20 | D 0x40 = 0x6B; XD=0
        assertEquals(0x000F_FFFF_FFFF_F06BL, F.leafEntry(PAGE_4K, 0x000F_FFFF_FFFF_F000L, 0,
            Attributes.RWX.with(CachePolicy.WRITE_THROUGH)));
        // PTE, 4 KiB, r-- user NON_CACHEABLE at 0x2000:
        //   address 0x2000 | P 0x1 | U/S 0x4 | PCD 0x10 (index 2 = UC-) | A 0x20 | D 0x40 = 0x75 | XD 1<<63
        assertEquals(0x8000_0000_0000_2075L, F.leafEntry(PAGE_4K, 0x2000L, 0,
            Attributes.RO.withUser(true).with(CachePolicy.NON_CACHEABLE)));
        // Table entry (any level) to a table at 0x4000_1000: address | P 0x1 | R/W 0x2 | U/S 0x4 = 0x7;
        //   A=0, PWT=PCD=0, PS=0, XD=0 (permissive: the leaf decides)
        for (int level = 0; level < 3; level++) {
            assertEquals(0x0000_0000_4000_1007L, F.tableEntry(level, 0x4000_1000L));
        }
    }

    @Test
    void shouldDecodeGoldenDescriptors() {
        // the PTE above, looked up at offset 0xABC of its page
        assertEquals(new Descriptor.Leaf(0x1234_5ABCL, PAGE_4K, RW_USER),
            F.decode(3, 0x8000_0000_1234_5067L, 0x0000_7000_0000_0ABCL));
        // the 2 MiB PDE at offset 0x12_3456: pa = 0x4020_0000 + 0x12_3456
        assertEquals(new Descriptor.Leaf(0x4032_3456L, PAGE_2M, RX), F.decode(2, 0x0000_0000_4020_00E1L, 0x0012_3456L));
        // the 1 GiB PDPTE at offset 0x3FFF_FFFF (the last byte of the page)
        assertEquals(new Descriptor.Leaf(0xFFFF_FFFFL, PAGE_1G, Attributes.RW.with(CachePolicy.DEVICE)),
            F.decode(1, 0x8000_0000_C000_00FBL, 0xFFFF_FFFF_FFFF_FFFFL));
        assertEquals(new Descriptor.Leaf(0x2000L, PAGE_4K, Attributes.RO.withUser(true).with(CachePolicy.NON_CACHEABLE)),
            F.decode(3, 0x8000_0000_0000_2075L, 0));
        assertEquals(new Descriptor.Leaf(0x000F_FFFF_FFFF_F000L, PAGE_4K, Attributes.RWX.with(CachePolicy.WRITE_THROUGH)),
            F.decode(3, 0x000F_FFFF_FFFF_F06BL, 0));
        for (int level = 0; level < 3; level++) {
            assertEquals(new Descriptor.Table(0x4000_1000L), F.decode(level, 0x4000_1007L, 0));
        }
    }

    @Test
    void shouldDecodeThePatBitAsTheDefaultPatsUpperHalf() {
        // 2 MiB PDE with bit 12 (PAT) set: 0x4020_1000 is not an address bit, PAT index 4 = WB (PA4 = PA0)
        assertEquals(new Descriptor.Leaf(0x4020_0000L, PAGE_2M, RX), F.decode(2, 0x4020_10E1L, 0));
        // 4 KiB PTE with bit 7 (PAT) and PCD set: index 6 = UC- (PA6 = PA2)
        assertEquals(new Descriptor.Leaf(0x5000L, PAGE_4K, Attributes.RO.with(CachePolicy.NON_CACHEABLE)),
            F.decode(3, 0x8000_0000_0000_50F1L, 0));
    }

    @Test
    void shouldDecodeReservedEncodingsAsInvalid() {
        // P=0: not present, whatever else is set
        assertEquals(Descriptor.INVALID, F.decode(3, 0x8000_0000_1234_5066L, 0));
        assertEquals(Descriptor.INVALID, F.decode(0, 0L, 0));
        // PS=1 in a PML4E (bit 7 reserved, Table 4-15)
        assertInstanceOf(Descriptor.Invalid.class, F.decode(0, 0x4000_1087L, 0));
        // 1 GiB PDPTE with bit 13 set (bits 29:13 reserved)
        assertInstanceOf(Descriptor.Invalid.class, F.decode(1, 0x8000_0000_C000_20FBL, 0));
        // 1 GiB PDPTE with bit 29 set
        assertInstanceOf(Descriptor.Invalid.class, F.decode(1, 0x8000_0000_E000_00FBL, 0));
        // 2 MiB PDE with bit 13 set, and with bit 20 set (bits 20:13 reserved)
        assertInstanceOf(Descriptor.Invalid.class, F.decode(2, 0x4020_20E1L, 0));
        assertInstanceOf(Descriptor.Invalid.class, F.decode(2, 0x4030_00E1L, 0));
    }

    @Test
    void shouldAcceptOnlyCanonicalAddresses() {
        assertTrue(F.isValidVa(0));
        assertTrue(F.isValidVa(0x0000_7FFF_FFFF_FFFFL));
        assertFalse(F.isValidVa(0x0000_8000_0000_0000L));
        assertFalse(F.isValidVa(0xFFFF_7FFF_FFFF_FFFFL));
        assertTrue(F.isValidVa(0xFFFF_8000_0000_0000L));
        assertTrue(F.isValidVa(-1L));
        assertFalse(F.isValidVa(0x8000_0000_0000_0000L));
    }

    @Test
    void shouldRefuseMappingsWithoutRead() {
        for (Attributes a : PageTableConformanceTest.allAttributes()) {
            if (a.read()) {
                F.checkAttributes(a);
            } else {
                UnsupportedAttributeException e = assertThrows(UnsupportedAttributeException.class, () -> F.checkAttributes(a));
                assertTrue(e.getMessage().contains("x86-64"), e.getMessage());
            }
        }
    }

    @Test
    void shouldPlaceEntriesWhereTheCpuLooks() {
        try (PhysicalMemory memory = HeapPhysicalMemory.create(0x4000_0000L, 1L << 20);
             PageTable table = PageTable.create(F, memory, new TestBlockAllocator(0x4000_0000L, 1L << 20))) {
            // the last page of the lower half: indices 255 (PML4), 511, 511, 511
            long low = 0x0000_7FFF_FFFF_F000L;
            table.map(low, 0x1234_5000L, 4096, RW_USER);
            long pdpt = walkTable(memory, table.root() + 8 * 255);
            long pd = walkTable(memory, pdpt + 8 * 511);
            long pt = walkTable(memory, pd + 8 * 511);
            assertEquals(0x8000_0000_1234_5067L, rawLe(memory, pt + 8 * 511));
            // the last GiB of the upper half, 0xFFFF_FFFF_C000_0000: PML4 index 511, PDPT index 511
            table.map(0xFFFF_FFFF_C000_0000L, 0xC000_0000L, 1L << 30, Attributes.RW.with(CachePolicy.DEVICE));
            long pdptHigh = walkTable(memory, table.root() + 8 * 511);
            assertEquals(0x8000_0000_C000_00FBL, rawLe(memory, pdptHigh + 8 * 511));
            // the first 2 MiB of the upper half, 0xFFFF_8000_0000_0000: PML4 index 256, then 0, 0
            table.map(0xFFFF_8000_0000_0000L, 0x4020_0000L, 2L << 20, RX);
            long pdHigh = walkTable(memory, walkTable(memory, table.root() + 8 * 256));
            assertEquals(0x0000_0000_4020_00E1L, rawLe(memory, pdHigh));
            assertEquals(4 + 1 + 2, table.tableCount(), "root, 3 tables low, 1 PDPT high at 511, PDPT + PD at 256");
            assertEquals(0x4020_0000L + 0x1234L, ((WalkResult.Translation) table.translate(0xFFFF_8000_0000_1234L)).pa());
        }
    }

    @Test
    void shouldFaultOnNonCanonicalAddresses() {
        try (PhysicalMemory memory = HeapPhysicalMemory.create(0x4000_0000L, 1L << 20);
             PageTable table = PageTable.create(F, memory, new TestBlockAllocator(0x4000_0000L, 1L << 20))) {
            table.map(0x0000_7FFF_FFFF_F000L, 0x1000L, 4096, Attributes.RW);
            table.map(0xFFFF_8000_0000_0000L, 0x2000L, 4096, Attributes.RW);
            for (long va : new long[] {0x0000_8000_0000_0000L, 0xFFFF_7FFF_FFFF_F000L, 0x0001_0000_0000_0000L}) {
                WalkResult.PageFault fault = assertInstanceOf(WalkResult.PageFault.class, table.translate(va));
                assertEquals(FaultReason.ADDRESS_SIZE, fault.reason(), fault::toString);
            }
            assertThrows(AddressRangeException.class, () -> table.map(0x0000_8000_0000_0000L, 0, 4096, Attributes.RW));
            // a range running from the top of the lower half into the hole
            assertThrows(AddressRangeException.class, () -> table.map(0x0000_7FFF_FFFF_E000L, 0, 0x3000, Attributes.RW));
        }
    }

    @Test
    void shouldSplitABlockInTheUpperHalf() {
        try (PhysicalMemory memory = HeapPhysicalMemory.create(0x4000_0000L, 1L << 20);
             PageTable table = PageTable.create(F, memory, new TestBlockAllocator(0x4000_0000L, 1L << 20))) {
            long va = 0xFFFF_FFFF_FFE0_0000L; // the last 2 MiB of the space
            table.map(va, 0x4020_0000L, 2L << 20, RW_USER);
            assertEquals(4096, table.unmap(0xFFFF_FFFF_FFFF_E000L, 4096)); // the second-to-last page
            assertFalse(table.translate(0xFFFF_FFFF_FFFF_E000L).isMapped());
            WalkResult.Translation last = (WalkResult.Translation) table.translate(-1L);
            assertEquals(0x4040_0000L - 1, last.pa());
            assertEquals(4096, last.leafSize());
            assertEquals(0x4020_0000L, ((WalkResult.Translation) table.translate(va)).pa());
            assertEquals((2L << 20) - 4096, table.unmap(va, 2L << 20));
            assertEquals(3, table.tableCount(), "the split-off page table is freed; the PDPT and PD span more and stay");
            assertEquals(0, table.unmap(0xFFFF_8000_0000_0000L, 1L << 47));
            assertEquals(1, table.tableCount());
        }
    }

    @Test
    void shouldAndTheRightsOfTableEntriesAlongTheWalk() {
        // the table entry decodes its R/W, U/S and XD as hierarchical limits
        assertEquals(new Descriptor.Table(0x4000_1000L, false, false, false), F.decode(1, 0x8000_0000_4000_1001L, 0));
        assertEquals(new Descriptor.Table(0x4000_1000L, true, true, true), F.decode(2, 0x4000_1007L, 0));
        try (PhysicalMemory memory = HeapPhysicalMemory.create(0x4000_0000L, 1L << 20);
             PageTable table = PageTable.create(F, memory, new TestBlockAllocator(0x4000_0000L, 1L << 20))) {
            long va = 0x0000_0000_0020_0000L; // PML4 0, PDPT 0, PD 1, PT 0
            table.map(va, 0x1234_5000L, 4096, Attributes.RWX.withUser(true));
            long pdpt = walkTable(memory, table.root());
            long pdeAddress = walkTable(memory, pdpt) + 8;
            long pde = rawLe(memory, pdeAddress);
            assertEquals(Attributes.RWX.withUser(true), ((WalkResult.Translation) table.translate(va)).attributes());
            // clear R/W and U/S and set XD in the PDE by hand (as another OS could have written it)
            memory.spLong(pdeAddress, (pde & ~0x6L) | 0x8000_0000_0000_0000L);
            WalkResult.Translation t = (WalkResult.Translation) table.translate(va);
            assertEquals(Attributes.RO, t.attributes(), "the leaf's rwxu limited by a read-only supervisor no-execute PDE");
            long root = table.root();
            assertEquals(FaultReason.PERMISSION, fault(Walker.translate(F, memory, root, va, Access.WRITE, false)));
            assertEquals(FaultReason.PERMISSION, fault(Walker.translate(F, memory, root, va, Access.READ, true)));
            assertEquals(FaultReason.PERMISSION, fault(Walker.translate(F, memory, root, va, Access.EXECUTE, false)));
            assertTrue(Walker.translate(F, memory, root, va, Access.READ, false).isMapped());
            memory.spLong(pdeAddress, pde);
        }
    }

    private static FaultReason fault(WalkResult r) {
        return assertInstanceOf(WalkResult.PageFault.class, r).reason();
    }

    /** @return the next-level table address of the table entry at {@code pa}, checking it is a permissive table entry */
    static long walkTable(PhysicalMemory memory, long pa) {
        long raw = rawLe(memory, pa);
        assertEquals(0x7L, raw & 0xFFF, () -> "P|R/W|U/S table entry at 0x" + Long.toHexString(pa) + ": 0x" + Long.toHexString(raw));
        return raw & 0x000F_FFFF_FFFF_F000L;
    }

    /** @return the 8 bytes at {@code pa} assembled little-endian by hand */
    static long rawLe(PhysicalMemory memory, long pa) {
        byte[] b = new byte[8];
        memory.copyOut(pa, b, 0, 8);
        long v = 0;
        for (int i = 7; i >= 0; i--) {
            v = v << 8 | (b[i] & 0xFF);
        }
        return v;
    }
}
