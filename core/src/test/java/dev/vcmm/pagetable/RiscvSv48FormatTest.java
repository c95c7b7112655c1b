package dev.vcmm.pagetable;

import dev.vcmm.heap.HeapPhysicalMemory;
import dev.vcmm.spi.PhysicalMemory;
import org.junit.jupiter.api.Test;

import static dev.vcmm.pagetable.RiscvSv39FormatTest.pointer;
import static dev.vcmm.pagetable.X86_64FormatTest.rawLe;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Golden encodings of {@link RiscvSv48Format}, derived by hand from the RISC-V privileged specification, 4.5
 * (same PTE as Sv39; four levels, VPN[3] = va[47:39]; terapages of 512 GiB at level 0).
 */
class RiscvSv48FormatTest {

    private static final RiscvSv48Format F = RiscvSv48Format.INSTANCE;
    private static final LeafSize TERA = F.leafSizes().get(0);
    private static final LeafSize GIGA = F.leafSizes().get(1);
    private static final LeafSize PAGE = F.leafSizes().get(3);

    @Test
    void shouldHaveTheGeometryOfSv48() {
        assertEquals("riscv-sv48", F.name());
        assertEquals(4, F.levels());
        assertEquals(48, F.vaBits());
        assertEquals(56, F.paBits());
        assertEquals(39, F.levelShift(0));
        assertEquals(12, F.levelShift(3));
        assertEquals(java.util.List.of(new LeafSize(1L << 39, 0, 1), new LeafSize(1L << 30, 1, 1),
            new LeafSize(2L << 20, 2, 1), new LeafSize(4096, 3, 1)), F.leafSizes());
    }

    @Test
    void shouldEncodeAndDecodeGoldenDescriptors() {
        // 512 GiB terapage, rw- privileged WB at 0x80_0000_0000 (2^39): PPN = 2^27 = 0x800_0000; << 10 = 2^37
        //   = 0x20_0000_0000 | V R W A D (0xC7)
        assertEquals(0x0000_0020_0000_00C7L, F.leafEntry(TERA, 1L << 39, 0, Attributes.RW));
        // looked up at va -1: offset va[38:0] = 0x7F_FFFF_FFFF
        assertEquals(new Descriptor.Leaf(0xFF_FFFF_FFFFL, TERA, Attributes.RW), F.decode(0, 0x0000_0020_0000_00C7L, -1L));
        // 4 KiB leaf at 0x8020_0000, same as Sv39: 0x2008_00C7
        assertEquals(0x2008_00C7L, F.leafEntry(PAGE, 0x8020_0000L, 0, Attributes.RW));
        assertEquals(new Descriptor.Leaf(0x8020_0000L, PAGE, Attributes.RW), F.decode(3, 0x2008_00C7L, 0));
        // pointer PTEs at levels 0..2; at level 3 a pointer is a page fault
        for (int level = 0; level < 3; level++) {
            assertEquals(0x1000_0C01L, F.tableEntry(level, 0x4000_3000L));
            assertEquals(new Descriptor.Table(0x4000_3000L), F.decode(level, 0x1000_0C01L, 0));
        }
        assertInstanceOf(Descriptor.Invalid.class, F.decode(3, 0x1000_0C01L, 0));
    }

    @Test
    void shouldDecodeMisalignedTerapagesAsInvalid() {
        // pa 2^39 + 2^30: PPN = 0x800_0000 + 0x4_0000; its low 27 bits (PPN[2:0]) are not 0 -> misaligned terapage,
        // but a well-aligned gigapage. Raw = (PPN << 10) | 0xC7 = 0x20_0000_0000 + 0x1000_0000 + 0xC7
        long raw = 0x0000_0020_1000_00C7L;
        Descriptor.Invalid tera = assertInstanceOf(Descriptor.Invalid.class, F.decode(0, raw, 0));
        assertTrue(tera.why().contains("misaligned superpage"), tera.why());
        assertEquals(new Descriptor.Leaf((1L << 39) + (1L << 30), GIGA, Attributes.RW), F.decode(1, raw, 0));
    }

    @Test
    void shouldAcceptOnlySignExtendedAddresses() {
        assertTrue(F.isValidVa(0x0000_7FFF_FFFF_FFFFL));
        assertFalse(F.isValidVa(0x0000_8000_0000_0000L));
        assertFalse(F.isValidVa(0xFFFF_7FFF_FFFF_FFFFL));
        assertTrue(F.isValidVa(0xFFFF_8000_0000_0000L));
    }

    @Test
    void shouldPlaceEntriesWhereTheHartLooks() {
        try (PhysicalMemory memory = HeapPhysicalMemory.create(0x4000_0000L, 1L << 20);
             PageTable table = PageTable.create(F, memory, new TestBlockAllocator(0x4000_0000L, 1L << 20))) {
            // the last 512 GiB, va -2^39 = 0xFFFF_FF80_0000_0000: VPN[3] = 511, a terapage in the root
            table.map(0xFFFF_FF80_0000_0000L, 1L << 39, 1L << 39, Attributes.RW);
            assertEquals(0x0000_0020_0000_00C7L, rawLe(memory, table.root() + 8 * 511));
            // va 0x0000_0080_4000_5000: VPN[3] = 1, VPN[2] = 1, VPN[1] = 0, VPN[0] = 5
            table.map(0x0000_0080_4000_5000L, 0x8020_0000L, 4096, Attributes.RW);
            long l3 = pointer(memory, pointer(memory, pointer(memory, table.root() + 8) + 8));
            assertEquals(0x2008_00C7L, rawLe(memory, l3 + 8 * 5));
            assertEquals(4, table.tableCount());
            WalkResult.PageFault fault = assertInstanceOf(WalkResult.PageFault.class, table.translate(0x0000_8000_0000_0000L));
            assertEquals(FaultReason.ADDRESS_SIZE, fault.reason());
        }
    }
}
