package dev.vcmm.pagetable;

import dev.vcmm.heap.HeapPhysicalMemory;
import dev.vcmm.spi.PhysicalMemory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Golden dirty-state descriptors of every format with hardware dirty bits, derived by hand from the manuals:
 * arm64 stage 1 (Arm ARM D8, hardware dirty state: writable-clean = DBM bit 51 set and AP[2] bit 7 set; the write
 * clears AP[2]), arm64 stage 2 (DBM bit 51 set and S2AP[1] bit 7 clear; the write sets S2AP[1]), x86-64 (SDM Vol.
 * 3A 4.8: D bit 6) and RISC-V (Svadu: D bit 7). Each test finds the word of table memory holding the golden dirty
 * entry the mapper wrote, cleans it with {@link PageTable#readDirty}, reads the golden clean word there, writes
 * through the device walk ({@link PageTable#walk}) and reads the golden dirty word again.
 */
class DirtyBitsGoldenTest {

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

    /* arm64-4k page, rw- privileged WB, pa 0x1234_5000: 0x3 | SH 0x300 | AF 0x400 = 0x703; PXN|UXN bits 54:53. */
    static final long ARM64_DIRTY = 0x0060_0000_1234_5703L;
    /* ... writable-clean: DBM (bit 51) 0x0008_0000_0000_0000 and AP[2] 0x80. */
    static final long ARM64_CLEAN = 0x0068_0000_1234_5783L;
    /* ... after the hardware's write: AP[2] clear, DBM still set. */
    static final long ARM64_DIRTIED = 0x0068_0000_1234_5703L;
    /* arm64-s2-4k page rw-u WB, pa 0x8000_1000: 0x3 | MemAttr 0x3C | S2AP 0xC0 | SH 0x300 | AF 0x400 = 0x7FF; XN bit 54. */
    static final long S2_DIRTY = 0x0040_0000_8000_17FFL;
    /* ... writable-clean: DBM set, S2AP[1] (0x80) clear: 0x77F. */
    static final long S2_CLEAN = 0x0048_0000_8000_177FL;
    /* ... after the hardware's write: S2AP[1] set, DBM still set. */
    static final long S2_DIRTIED = 0x0048_0000_8000_17FFL;
    /* x86-64 PTE rw- user WB, pa 0x1234_5000: P 0x1 | R/W 0x2 | U/S 0x4 | A 0x20 | D 0x40 = 0x67; XD. */
    static final long X86_DIRTY = 0x8000_0000_1234_5067L;
    static final long X86_CLEAN = 0x8000_0000_1234_5027L;
    /* Sv39 leaf rw- privileged WB, pa 0x8020_0000: PPN << 10 = 0x2008_0000 | V R W A D = 0xC7. */
    static final long RISCV_DIRTY = 0x0000_0000_2008_00C7L;
    static final long RISCV_CLEAN = 0x0000_0000_2008_0047L;

    @Test
    void shouldCleanAndDirtyArm64Stage1WithDbmAndAp2() {
        golden(Arm64Lpae4kFormat.INSTANCE, 0x40_0000L, 0x1234_5000L, Attributes.RW, ARM64_DIRTY, ARM64_CLEAN, ARM64_DIRTIED);
        close();
        golden(Arm64VmsaFormat.stage1(4096, 48, 48, Arm64VmsaFormat.Range.TTBR0), 0x40_0000L, 0x1234_5000L, Attributes.RW,
            ARM64_DIRTY, ARM64_CLEAN, ARM64_DIRTIED);
    }

    @Test
    void shouldCleanAndDirtyArm64Stage2WithDbmAndS2ap() {
        golden(Arm64Stage2Format.INSTANCE, 0x1234_5000L, 0x8000_1000L, Attributes.RW.withUser(true), S2_DIRTY, S2_CLEAN, S2_DIRTIED);
    }

    @Test
    void shouldCleanAndDirtyX86WithTheDBit() {
        golden(X86_64Format.INSTANCE, 0x40_0000L, 0x1234_5000L, Attributes.RW.withUser(true).with(CachePolicy.WRITE_BACK),
            X86_DIRTY, X86_CLEAN);
    }

    @Test
    void shouldCleanAndDirtyRiscvWithTheDBit() {
        golden(RiscvSv39Format.INSTANCE, 0x40_0000L, 0x8020_0000L, Attributes.RW, RISCV_DIRTY, RISCV_CLEAN);
    }

    @Test
    void shouldHaveNoDirtyBitsInArmv7Short() {
        assertNull(DirtyBits.of(Armv7ShortFormat.INSTANCE));
        try (PageTable t = open(Armv7ShortFormat.INSTANCE)) {
            assertThrows(UnsupportedOperationException.class, () -> t.readDirty(0, 4096, true, (va, len) -> { }));
        }
    }

    private void golden(PageTableFormat f, long va, long pa, Attributes rw, long dirty, long clean) {
        golden(f, va, pa, rw, dirty, clean, dirty);
    }

    /** {@code dirtied}: what the walker's write makes of the clean entry (Arm keeps DBM set: it is dirty too). */
    private void golden(PageTableFormat f, long va, long pa, Attributes rw, long dirty, long clean, long dirtied) {
        DirtyBits d = DirtyBits.of(f);
        assertEquals(clean, d.clean(dirty));
        assertEquals(dirtied, d.markDirty(clean));
        assertTrue(d.isDirty(dirtied));
        assertEquals(clean, d.clean(dirtied));
        assertTrue(d.isDirty(dirty) && !d.isWritableClean(dirty));
        assertTrue(d.isWritableClean(clean) && !d.isDirty(clean));
        assertEquals(clean, d.clean(clean), "clean is idempotent");
        try (PageTable t = open(f)) {
            t.map(va, pa, 4096, rw);
            t.map(va + 4096, pa + 4096, 4096, new Attributes(true, false, false, rw.user(), CachePolicy.WRITE_BACK));
            long at = find(dirty);
            List<long[]> seen = new ArrayList<>();
            assertEquals(0, t.readDirty(va, 8192, false, (v, n) -> seen.add(new long[] {v, n})), "noClear cleans nothing");
            assertEquals(1, seen.size(), "the read-only page is never dirty");
            assertEquals(va, seen.get(0)[0]);
            assertEquals(dirty, memory.lpLong(at));
            assertEquals(1, t.readDirty(va, 8192, true, (v, n) -> { }));
            assertEquals(clean, memory.lpLong(at), "the golden writable-clean entry");
            assertEquals(0, t.readDirty(va, 8192, true, (v, n) -> fail(v)), "nothing dirty after a clear");
            // a read through the clean entry translates without write permission, and changes nothing
            WalkResult.Translation r = assertInstanceOf(WalkResult.Translation.class, t.walk(va, Access.READ, false));
            assertFalse(r.attributes().write(), "a read must not cache a write permission the entry has not earned");
            assertEquals(clean, memory.lpLong(at));
            // the pure walker (software, no hardware update) changes nothing either
            Walker.translate(f, memory, t.root(), va, Access.WRITE, false);
            assertEquals(clean, memory.lpLong(at));
            // the device walk of a write: the hardware's update
            r = assertInstanceOf(WalkResult.Translation.class, t.walk(va + 42, Access.WRITE, false));
            assertTrue(r.attributes().write());
            assertEquals(pa + 42, r.pa());
            assertEquals(dirtied, memory.lpLong(at), "the walker's write made it the golden dirty entry");
            // a write to the read-only page stays a permission fault and changes nothing
            assertEquals(FaultReason.PERMISSION, ((WalkResult.PageFault) t.walk(va + 4096, Access.WRITE, false)).reason());
            // unmapping a clean entry works as for a dirty one
            t.readDirty(va, 8192, true, (v, n) -> { });
            assertEquals(8192, t.unmap(va, 8192));
        }
    }

    private static void fail(long v) {
        throw new AssertionError("reported 0x" + Long.toHexString(v));
    }

    /** {@return the one address of table memory holding {@code value}} */
    private long find(long value) {
        long found = -1;
        for (long a = PageTableConformanceTest.PT_BASE; a < PageTableConformanceTest.PT_BASE + (1 << 20); a += 8) {
            if (memory.lpLong(a) == value) {
                assertEquals(-1, found, "one word holds the entry");
                found = a;
            }
        }
        assertTrue(found >= 0, "the mapper wrote the golden dirty entry 0x" + Long.toHexString(value));
        return found;
    }

    @Test
    void shouldReportABlockAsAllItsPagesAndKeepOneThatSticksOut() {
        try (PageTable t = open(X86_64Format.INSTANCE)) {
            t.map(0x20_0000L, 0x4000_0000L, 2 << 20, Attributes.RW);
            List<long[]> seen = new ArrayList<>();
            assertEquals(0, t.readDirty(0x20_0000L + 8192, 4096, true, (v, n) -> seen.add(new long[] {v, n})),
                "a block sticking out of the range is not cleaned");
            assertEquals(0x20_2000L, seen.get(0)[0]);
            assertEquals(4096, seen.get(0)[1], "clipped to the range");
            seen.clear();
            assertEquals(1, t.readDirty(0, 8 << 20, true, (v, n) -> seen.add(new long[] {v, n})));
            assertEquals(1, seen.size());
            assertEquals(0x20_0000L, seen.get(0)[0]);
            assertEquals(2 << 20, seen.get(0)[1], "the whole block");
            assertEquals(0, t.readDirty(0, 8 << 20, true, (v, n) -> fail(v)));
            // a write anywhere in the block dirties all of it
            t.walk(0x3F_F000L, Access.WRITE, false);
            seen.clear();
            t.readDirty(0, 8 << 20, false, (v, n) -> seen.add(new long[] {v, n}));
            assertEquals(2 << 20, seen.get(0)[1]);
            // a split of a clean block keeps write permission (the pieces are written dirty)
            t.readDirty(0, 8 << 20, true, (v, n) -> { });
            assertEquals(4096, t.unmap(0x20_0000L, 4096));
            assertTrue(((WalkResult.Translation) t.walk(0x20_1000L, Access.WRITE, false)).attributes().write());
        }
    }

    @Test
    void shouldReportAContiguousRunWholeWhenOneEntryIsDirty() {
        try (PageTable t = open(Arm64Lpae4kFormat.INSTANCE)) {
            t.map(0x1_0000L, 0x4001_0000L, 64 << 10, Attributes.RW);
            assertEquals(16, t.readDirty(0x1_0000L, 64 << 10, true, (v, n) -> { }), "every entry of the run");
            t.walk(0x1_5000L, Access.WRITE, false); // one entry of the run made dirty
            List<long[]> seen = new ArrayList<>();
            assertEquals(1, t.readDirty(0, 1 << 20, true, (v, n) -> seen.add(new long[] {v, n})));
            assertEquals(0x1_0000L, seen.get(0)[0]);
            assertEquals(64 << 10, seen.get(0)[1], "the whole run");
            // a clean run that is split keeps its write permission
            assertEquals(4096, t.unmap(0x1_0000L, 4096));
            assertTrue(((WalkResult.Translation) t.walk(0x1_F000L, Access.WRITE, false)).attributes().write());
        }
    }

    @Test
    void shouldRefuseABadRangeAndChangeNothing() {
        try (PageTable t = open(X86_64Format.INSTANCE)) {
            t.map(0x1000L, 0x4000_1000L, 4096, Attributes.RW);
            assertThrows(UnsupportedSizeException.class, () -> t.readDirty(0x1001L, 4096, true, (v, n) -> { }));
            assertThrows(AddressRangeException.class, () -> t.readDirty(1L << 47, 4096, true, (v, n) -> { }));
            List<long[]> seen = new ArrayList<>();
            t.readDirty(0, 1 << 20, false, (v, n) -> seen.add(new long[] {v, n}));
            assertEquals(1, seen.size(), "still dirty");
        }
    }
}
