package dev.vcmm.space;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static dev.vcmm.space.AddressSpaceAllocator.NONE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class AddressSpaceAllocatorTest {

    static final long G = 4096;
    static final long MB = 1L << 20;
    static final long BASE = 0x1000_0000L;
    static final long UPPER_HALF = 0xffff_8000_0000_0000L;

    static AddressSpaceAllocator space() {
        return new AddressSpaceAllocator(BASE, 16 * MB, G);
    }

    static void assertUnchanged(AddressSpaceAllocator a, String before) {
        assertEquals(before, a.toString());
        a.checkInvariants();
    }

    static void assertIllegalArgument(AddressSpaceAllocator a, Executable call, String... fragments) {
        String before = a.toString();
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
        for (String fragment : fragments) {
            assertTrue(e.getMessage().contains(fragment), () -> e.getMessage() + " should contain " + fragment);
        }
        assertUnchanged(a, before);
    }

    // ---------------------------------------------------------------- construction

    @Test
    void shouldStartWithOneFreeRangeEqualToTheSpace() {
        AddressSpaceAllocator a = space();
        assertEquals(BASE, a.start());
        assertEquals(16 * MB, a.length());
        assertEquals(G, a.granule());
        assertEquals(16 * MB, a.freeBytes());
        assertEquals(0, a.allocatedBytes());
        assertEquals(1, a.freeRangeCount());
        assertEquals(16 * MB, a.largestFreeRange());
        assertTrue(a.isFree(BASE, 16 * MB));
        a.checkInvariants();
    }

    @Test
    void shouldRejectBadGeometryNamingTheValue() {
        assertThrowsWith(() -> new AddressSpaceAllocator(0, MB, 2048), "granule=0x800");
        assertThrowsWith(() -> new AddressSpaceAllocator(0, MB, 3 * G), "granule=0x3000");
        assertThrowsWith(() -> new AddressSpaceAllocator(0, MB, Long.MIN_VALUE), "granule=0x8000000000000000");
        assertThrowsWith(() -> new AddressSpaceAllocator(0x800, MB, G), "start=0x800");
        assertThrowsWith(() -> new AddressSpaceAllocator(0, 0, G), "length=0x0");
        assertThrowsWith(() -> new AddressSpaceAllocator(0, -G, G), "length=0xfffffffffffff000");
        assertThrowsWith(() -> new AddressSpaceAllocator(0, MB + 1, G), "length=0x100001");
        assertThrowsWith(() -> new AddressSpaceAllocator(0x1_0000, 2 * MB, 64 * 1024 * 2), "start=0x10000");
        // wraps past 2^64 by one granule
        assertThrowsWith(() -> new AddressSpaceAllocator(UPPER_HALF, (1L << 47) + G, G), "start=0xffff800000000000", "length=0x800000001000");
        assertThrowsWith(() -> new AddressSpaceAllocator(-G, 2 * G, G), "wraps");
    }

    static void assertThrowsWith(Executable call, String... fragments) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
        for (String fragment : fragments) {
            assertTrue(e.getMessage().contains(fragment), () -> e.getMessage() + " should contain " + fragment);
        }
    }

    @Test
    void shouldAcceptTheLargestSpaces() {
        AddressSpaceAllocator low = new AddressSpaceAllocator(0, Long.MAX_VALUE - (G - 1), G);
        assertEquals((1L << 63) - G, low.freeBytes());
        assertEquals(0, low.allocate(G, 1L << 62));
        assertEquals(1L << 62, low.allocate(G, 1L << 62));
        AddressSpaceAllocator top = new AddressSpaceAllocator(1L << 63 | G, (1L << 63) - G, G);
        assertEquals(1L << 63 | G, top.allocate(G, G));
        assertTrue(top.allocateAt(-G, G), "the last granule below 2^64");
        top.checkInvariants();
    }

    // ---------------------------------------------------------------- allocate

    @Test
    void shouldAllocateLowestAddressFirst() {
        AddressSpaceAllocator a = space();
        assertEquals(BASE, a.allocate(G, G));
        assertEquals(BASE + G, a.allocate(2 * G, G));
        assertEquals(BASE + 3 * G, a.allocate(G, G));
        a.free(BASE + G, 2 * G);
        assertEquals(BASE + G, a.allocate(G, G), "first fit reuses the lowest hole");
        assertEquals(BASE + 2 * G, a.allocate(G, G));
        assertEquals(BASE + 4 * G, a.allocate(G, G), "hole is full, next comes after");
        assertEquals(5 * G, a.allocatedBytes());
        a.checkInvariants();
    }

    @Test
    void shouldHonourAlignment() {
        AddressSpaceAllocator a = space();
        assertEquals(BASE, a.allocate(G, G));
        long aligned = a.allocate(G, MB);
        assertEquals(BASE + MB, aligned);
        assertEquals(0, aligned % MB);
        assertEquals(2, a.freeRangeCount(), "the alignment gap, then the rest");
        assertEquals(BASE + G, a.allocate(G, G), "the alignment gap stays usable");
        assertEquals(BASE + 2 * MB, a.allocate(MB, 2 * MB));
        a.checkInvariants();
    }

    @Test
    void shouldAlignToTheAbsoluteAddressNotTheOffset() {
        AddressSpaceAllocator a = new AddressSpaceAllocator(3 * G, MB, G);
        assertEquals(4 * G, a.allocate(G, 4 * G));
        assertEquals(8 * G, a.allocate(2 * G, 8 * G));
        assertEquals(3 * G, a.allocate(G, G));
    }

    @Test
    void shouldSkipAHoleThatFitsOnlyWithoutAlignment() {
        AddressSpaceAllocator a = space();
        assertTrue(a.allocateAt(BASE, 16 * MB));
        a.free(BASE + 17 * G, 2 * G);   // two granules at an odd granule: a near miss for 8 KiB alignment
        a.free(BASE + 33 * G, 3 * G);   // three granules: an 8 KiB-aligned pair fits at 34
        assertEquals(BASE + 34 * G, a.allocate(2 * G, 2 * G));
        assertEquals(BASE + 17 * G, a.allocate(2 * G, G), "without alignment the first hole fits");
        assertEquals(NONE, a.allocate(2 * G, G));
        assertEquals(1, a.freeRangeCount());
        assertTrue(a.isFree(BASE + 33 * G, G));
        a.checkInvariants();
    }

    @Test
    void shouldReturnNoneWhenNothingFitsAndChangeNothing() {
        AddressSpaceAllocator a = space();
        assertEquals(NONE, a.allocate(32 * MB, G));
        assertEquals(BASE, a.allocate(16 * MB, 16 * MB));
        String before = a.toString();
        assertEquals(NONE, a.allocate(G, G));
        assertUnchanged(a, before);
        assertEquals(0, a.largestFreeRange());
        assertEquals(0, a.freeRangeCount());
        AddressSpaceAllocator b = space();
        assertEquals(NONE, b.allocate(G, 1L << 62), "no address in the space has that alignment");
        assertEquals(NONE, b.allocate(G, Long.MIN_VALUE), "2^63 is a valid alignment that nothing here meets");
    }

    @Test
    void shouldRejectBadAllocateArguments() {
        AddressSpaceAllocator a = space();
        assertIllegalArgument(a, () -> a.allocate(0, G), "length=0x0");
        assertIllegalArgument(a, () -> a.allocate(-G, G), "length=0xfffffffffffff000");
        assertIllegalArgument(a, () -> a.allocate(G + 1, G), "length=0x1001");
        assertIllegalArgument(a, () -> a.allocate(G, 2048), "alignment=0x800");
        assertIllegalArgument(a, () -> a.allocate(G, 3 * G), "alignment=0x3000");
        assertIllegalArgument(a, () -> a.allocate(G, 0), "alignment=0x0");
        assertIllegalArgument(a, () -> a.allocate(G, -G), "alignment=0xfffffffffffff000");
    }

    // ---------------------------------------------------------------- allocateAt

    @Test
    void shouldAllocateAtAnExactFreeRange() {
        AddressSpaceAllocator a = space();
        assertTrue(a.allocateAt(BASE + MB, MB));
        assertEquals(2, a.freeRangeCount());
        assertFalse(a.isFree(BASE + MB, G));
        assertTrue(a.isFree(BASE, MB));
        assertTrue(a.isFree(BASE + 2 * MB, 14 * MB));
        assertEquals(BASE, a.allocate(MB, G));
        assertEquals(BASE + 2 * MB, a.allocate(G, G));
        a.checkInvariants();
    }

    @Test
    void shouldRefuseAllocateAtOverAnyReservedPart() {
        AddressSpaceAllocator a = space();
        assertTrue(a.allocateAt(BASE + 4 * G, G));
        String before = a.toString();
        assertFalse(a.allocateAt(BASE + 4 * G, G));
        assertFalse(a.allocateAt(BASE, 5 * G), "ends over it");
        assertFalse(a.allocateAt(BASE + 4 * G, 2 * G), "starts on it");
        assertFalse(a.allocateAt(BASE + 3 * G, 3 * G), "straddles it");
        assertFalse(a.allocateAt(BASE, 16 * MB));
        assertUnchanged(a, before);
        assertTrue(a.allocateAt(BASE, 4 * G));
        assertTrue(a.allocateAt(BASE + 5 * G, 16 * MB - 5 * G));
        assertEquals(0, a.freeBytes());
        assertEquals(0, a.freeRangeCount());
        assertFalse(a.allocateAt(BASE, G));
    }

    @Test
    void shouldRejectBadRangesNamingTheValues() {
        AddressSpaceAllocator a = space();
        for (RangeCall call : rangeCalls(a)) {
            assertIllegalArgument(a, () -> call.run(BASE + 1, G), "address=0x10000001");
            assertIllegalArgument(a, () -> call.run(BASE, 0), "length=0x0");
            assertIllegalArgument(a, () -> call.run(BASE, -G), "length=0xfffffffffffff000");
            assertIllegalArgument(a, () -> call.run(BASE, G + 8), "length=0x1008");
            assertIllegalArgument(a, () -> call.run(BASE - G, G), "address=0xffff000", "not inside");
            assertIllegalArgument(a, () -> call.run(BASE - G, 2 * G), "address=0xffff000", "not inside");
            assertIllegalArgument(a, () -> call.run(BASE + 16 * MB, G), "address=0x11000000", "not inside");
            assertIllegalArgument(a, () -> call.run(BASE + 16 * MB - G, 2 * G), "length=0x2000", "not inside");
            assertIllegalArgument(a, () -> call.run(0, G), "address=0x0");
            assertIllegalArgument(a, () -> call.run(-G, 2 * G), "address=0xfffffffffffff000", "not inside");
            assertIllegalArgument(a, () -> call.run(BASE + G, Long.MAX_VALUE - (G - 1)), "not inside");
        }
    }

    interface RangeCall {
        void run(long address, long length);
    }

    static List<RangeCall> rangeCalls(AddressSpaceAllocator a) {
        return List.of(a::allocateAt, a::free, a::isFree);
    }

    // ---------------------------------------------------------------- free

    @Test
    void shouldCoalesceWithBothNeighboursAndEndWithOneRange() {
        AddressSpaceAllocator a = space();
        long[] blocks = new long[8];
        for (int i = 0; i < blocks.length; i++) {
            blocks[i] = a.allocate(G, G);
        }
        a.free(blocks[1], G);
        a.free(blocks[3], G);
        assertEquals(3, a.freeRangeCount());
        a.free(blocks[2], G);                // joins 1..3
        assertEquals(2, a.freeRangeCount());
        assertTrue(a.isFree(blocks[1], 3 * G));
        a.free(blocks[0], G);                // left edge of the space, joins right
        assertEquals(2, a.freeRangeCount());
        a.free(blocks[7], G);                // joins the tail
        assertEquals(2, a.freeRangeCount());
        a.free(blocks[4], 3 * G);            // several allocations at once, joins both sides
        assertEquals(1, a.freeRangeCount());
        assertEquals(16 * MB, a.largestFreeRange());
        assertTrue(a.isFree(BASE, 16 * MB));
        assertEquals(0, a.allocatedBytes());
        a.checkInvariants();
    }

    @Test
    void shouldFreePartOfAnAllocation() {
        AddressSpaceAllocator a = space();
        long x = a.allocate(4 * G, G);
        a.free(x + G, 2 * G);
        assertEquals(2 * G, a.allocatedBytes());
        assertTrue(a.isFree(x + G, 2 * G));
        assertFalse(a.isFree(x, G));
        assertFalse(a.isFree(x + 3 * G, G));
        a.checkInvariants();
    }

    @Test
    void shouldRefuseDoubleFreeAndPartlyFreeRanges() {
        AddressSpaceAllocator a = space();
        long x = a.allocate(4 * G, G);
        long y = a.allocate(4 * G, G);
        a.free(x + G, G);
        String before = a.toString();
        assertStateError(a, () -> a.free(x + G, G));
        assertStateError(a, () -> a.free(x, 4 * G));           // middle is free
        assertStateError(a, () -> a.free(y, 8 * G));           // tail is free
        assertStateError(a, () -> a.free(y + 8 * G, G));       // never reserved
        assertStateError(a, () -> a.free(BASE, 16 * MB));
        assertUnchanged(a, before);
        a.free(y, 4 * G);
        assertStateError(a, () -> a.free(y, 4 * G));
    }

    static void assertStateError(AddressSpaceAllocator a, Executable call) {
        String before = a.toString();
        IllegalStateException e = assertThrows(IllegalStateException.class, call);
        assertTrue(e.getMessage().contains("not reserved"), e.getMessage());
        assertUnchanged(a, before);
    }

    // ---------------------------------------------------------------- top of the unsigned range

    @Test
    void shouldWorkInTheUpperHalfUpTo2Pow64() {
        AddressSpaceAllocator a = new AddressSpaceAllocator(UPPER_HALF, 1L << 47, G);
        assertEquals(UPPER_HALF, a.allocate(G, G));
        assertEquals(UPPER_HALF + (1L << 30), a.allocate(1L << 30, 1L << 30));
        long big = a.allocate(1L << 46, 1L << 46);
        assertEquals(0xffff_c000_0000_0000L, big, "the upper 2^46, ending exactly at 2^64");
        assertFalse(a.isFree(-G, G));
        assertFalse(a.allocateAt(-G, G));
        a.free(-G, G);                                  // the last granule of big
        assertTrue(a.isFree(-G, G));
        assertFalse(a.isFree(-2 * G, 2 * G));
        assertTrue(a.allocateAt(-G, G), "the last granule below 2^64");
        assertFalse(a.allocateAt(-G, G));
        assertIllegalArgument(a, () -> a.allocateAt(-G, 2 * G), "not inside");
        assertIllegalArgument(a, () -> a.free(-G, 2 * G), "not inside");
        assertIllegalArgument(a, () -> a.allocateAt(UPPER_HALF - G, G), "address=0xffff7ffffffff000");
        assertIllegalArgument(a, () -> a.allocateAt(0, G), "address=0x0", "not inside");
        assertEquals(NONE, a.allocate(G, 1L << 46), "both 2^46-aligned addresses are taken");
        a.free(big, 1L << 46);
        a.free(UPPER_HALF + (1L << 30), 1L << 30);
        a.free(UPPER_HALF, G);
        assertEquals(1, a.freeRangeCount());
        assertTrue(a.isFree(UPPER_HALF, 1L << 47));
        assertEquals(1L << 47, a.largestFreeRange());
        a.checkInvariants();
    }

    @Test
    void shouldFillTheTopSpaceCompletelyAndEmptyIt() {
        long length = 64 * G;
        AddressSpaceAllocator a = new AddressSpaceAllocator(-length, length, G);
        List<Long> got = new ArrayList<>();
        long x;
        while ((x = a.allocate(G, G)) != NONE) {
            got.add(x);
        }
        assertEquals(64, got.size());
        assertEquals(-G, (long) got.get(63), "the very last granule is a valid start; NONE is odd");
        for (long y : got) {
            a.free(y, G);
        }
        assertEquals(1, a.freeRangeCount());
        assertEquals(length, a.freeBytes());
        a.checkInvariants();
    }

    @Test
    void shouldBeCompactInToString() {
        AddressSpaceAllocator a = space();
        a.allocate(G, G);
        assertEquals("AddressSpaceAllocator[0x10000000, +0x1000000) granule=0x1000 free=0xfff000 in 1 ranges, largest=0xfff000",
            a.toString());
    }

    // ---------------------------------------------------------------- randomized, against the tree invariants

    @Test
    void shouldKeepTheTreeInvariantsUnderRandomChurn() {
        AddressSpaceAllocator a = new AddressSpaceAllocator(UPPER_HALF, 1024 * G, G);
        SplittableRandom random = new SplittableRandom(42);
        List<long[]> live = new ArrayList<>();
        for (int step = 0; step < 20_000; step++) {
            int what = random.nextInt(10);
            if (what < 5) {
                long length = G * (1 + random.nextInt(random.nextBoolean() ? 4 : 64));
                long alignment = G << random.nextInt(7);
                long x = a.allocate(length, alignment);
                if (x != NONE) {
                    assertEquals(0, x & (alignment - 1));
                    live.add(new long[] {x, length});
                }
            } else if (what < 7) {
                long length = G * (1 + random.nextInt(8));
                long x = UPPER_HALF + G * random.nextInt(1024 - (int) (length / G) + 1);
                boolean free = a.isFree(x, length);
                assertEquals(free, a.allocateAt(x, length));
                if (free) {
                    live.add(new long[] {x, length});
                }
            } else if (!live.isEmpty()) {
                long[] r = live.remove(random.nextInt(live.size()));
                a.free(r[0], r[1]);
            }
            a.checkInvariants();
            assertEquals(1024 * G, a.freeBytes() + a.allocatedBytes());
        }
        for (long[] r : live) {
            a.free(r[0], r[1]);
        }
        assertEquals(1, a.freeRangeCount());
        a.checkInvariants();
    }
}
