package dev.vcmm;

import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.PhysicalMemory;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.List;

import static dev.vcmm.TestMemoryTypes.BASE;
import static dev.vcmm.TestMemoryTypes.KIB;
import static dev.vcmm.TestMemoryTypes.MIB;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Memory handed to a new owner never shows a previous owner's bytes: physAlloc zeroes what it hands out,
 * whichever way the blocks came back to the pool, unless the memory type opted out; memory still backing someone's
 * reservation is not freed, and so keeps its bytes.
 */
class ZeroOnHandoffTest {

    private static final byte DIRT = (byte) 0xA5;
    private static final long DIRT_WORD = 0xA5A5_A5A5_A5A5_A5A5L;

    /**
     * The places {@link #dirty} writes: a word in every 4 KiB page (at an offset that moves from page to page), and
     * the first and last word of every chunk. (The test backend is byte-by-byte slow: every byte would take seconds.)
     */
    private static long[] probes(PhysMem pm) {
        return pm.chunks().stream().flatMapToLong(c -> java.util.stream.LongStream.concat(
            java.util.stream.LongStream.range(0, c.size() / 4096).map(p -> c.pa() + p * 4096 + (p * 8 % 4096)),
            java.util.stream.LongStream.of(c.pa(), c.end() - 8))).toArray();
    }

    private static void dirty(PhysMem pm) {
        for (long pa : probes(pm)) {
            pm.memoryType().memory().spLong(pa, DIRT_WORD);
        }
    }

    /** Asserts every probe of {@code pm} reads zero, straight from physical memory. */
    private static void assertAllZero(PhysMem pm, String what) {
        PhysicalMemory mem = pm.memoryType().memory();
        for (long pa : probes(pm)) {
            long v = mem.lpLong(pa);
            if (v != 0) {
                fail(what + ": the word at pa=0x" + Long.toHexString(pa) + " of " + pm + " is 0x" + Long.toHexString(v)
                    + ", a previous owner's");
            }
        }
    }

    private static boolean overlaps(PhysMem a, PhysMem b) {
        for (PhysMem.Chunk x : a.chunks()) {
            for (PhysMem.Chunk y : b.chunks()) {
                if (x.pa() < y.end() && y.pa() < x.end()) {
                    return true;
                }
            }
        }
        return false;
    }

    @Test
    void shouldHandOutZeroedMemoryAfterAPreviousOwnerWroteAndFreedIt() {
        try (MemoryType ddr = TestMemoryTypes.ddr(64 * MIB)) {
            assertTrue(ddr.zeroesOnHandoff(), "zeroing is the default");
            record Case(long length, ChunkPolicy policy, PhysAllocOptions options) { }
            for (Case c : List.of(
                    new Case(5 * MIB + 68 * KIB, ChunkPolicy.VCMM, PhysAllocOptions.DEFAULT),
                    new Case(3 * MIB + 4 * KIB, ChunkPolicy.VCMM, PhysAllocOptions.CONTIGUOUS),
                    new Case(40 * KIB, ChunkPolicy.of(4 * KIB), PhysAllocOptions.DEFAULT))) {
                PhysMem first = ddr.physAlloc(c.length(), c.policy(), c.options());
                dirty(first);
                first.free();
                PhysMem second = ddr.physAlloc(c.length(), c.policy(), c.options());
                assertTrue(overlaps(first, second), "the second owner got (some of) the first owner's blocks: " + first + " / " + second);
                assertAllZero(second, c.toString());
                second.free();
            }
        }
    }

    @Test
    void shouldZeroBlocksThatCameBackThroughTheAllocatorDirectlyLikePageTables() {
        try (MemoryType ddr = TestMemoryTypes.ddr(4 * MIB)) {
            BlockAllocator a = ddr.allocator();
            long[] blocks = new long[1024];
            for (int i = 0; i < blocks.length; i++) { // every 4 KiB block, written and freed as the table allocator does
                blocks[i] = a.alloc(0);
                ddr.memory().spLong(blocks[i] + (i * 8L % 4096), DIRT_WORD);
                ddr.memory().spLong(blocks[i] + 4088, DIRT_WORD);
            }
            for (long b : blocks) {
                a.free(b, 0);
            }
            PhysMem pm = ddr.physAlloc(4 * MIB, ChunkPolicy.VCMM);
            for (int i = 0; i < blocks.length; i++) {
                assertEquals(0L, ddr.memory().lpLong(blocks[i] + (i * 8L % 4096)), "the whole pool, last used by direct blocks");
                assertEquals(0L, ddr.memory().lpLong(blocks[i] + 4088));
            }
        }
    }

    @Test
    void shouldKeepThePreviousOwnersBytesWhenAMemoryTypeOptsOut() {
        try (MemoryType fast = MemoryType.builder("fast").base(BASE).size(8 * MIB).zeroOnHandoff(false)
                .backend(new dev.vcmm.testing.SimpleTestBackend()).build()) {
            assertFalse(fast.zeroesOnHandoff());
            assertTrue(fast.toString().contains("not zeroed on handoff"), fast.toString());
            PhysMem first = fast.physAlloc(2 * MIB, ChunkPolicy.HUGE);
            dirty(first);
            first.free();
            PhysMem second = fast.physAlloc(2 * MIB, ChunkPolicy.HUGE);
            assertEquals(first.chunks(), second.chunks());
            assertEquals(DIRT_WORD, fast.memory().lpLong(second.physicalAddress(0)), "the opt-out really skips zeroing");
        }
    }

    @Test
    void shouldNeverShowADeviceOrTheCpuAPreviousOwnersDmaAndKeepMemoryThatStillBacksAReservation() {
        try (Vcmm vcmm = TestGraphs.graph().ddr(BASE, 16 * MIB).pageTables(4 * MIB).build()) {
            Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
            Vcm vcm = vcmm.createVcm(0x4000_0000L, 64 * MIB);
            vcmm.assoc(vcm, gpu).activate();
            MemoryType ddr = vcmm.memoryType("ddr");

            PhysMem first = vcmm.physAlloc(ddr, 2 * MIB, ChunkPolicy.VCMM, PhysAllocOptions.DEFAULT);
            Reservation r1 = vcm.reserve(2 * MIB, ReservationAttributes.RW, 2 * MIB).back(first);
            byte[] secret = new byte[(int) (256 * KIB)];
            Arrays.fill(secret, DIRT);
            gpu.write(r1.address(), secret, 0, secret.length); // the first owner's DMA

            // Still backing r1: not freed, so not zeroed.
            assertThrows(VcmmBusyException.class, first::free);
            byte[] back = new byte[secret.length];
            gpu.read(r1.address(), back, 0, back.length);
            assertArrayEquals(secret, back, "memory that still backs a reservation keeps its bytes");

            r1.unback();
            r1.unreserve();
            first.free();

            PhysMem second = vcmm.physAlloc(ddr, 2 * MIB, ChunkPolicy.VCMM, PhysAllocOptions.DEFAULT);
            assertTrue(overlaps(first, second), first + " / " + second);
            assertAllZero(second, "CPU view of the second owner's memory");
            Reservation r2 = vcm.reserve(2 * MIB, ReservationAttributes.RW, 2 * MIB).back(second);
            gpu.read(r2.address(), back, 0, back.length);
            assertArrayEquals(new byte[back.length], back, "the second owner's device reads zeros, not the first owner's DMA");
        }
    }
}
