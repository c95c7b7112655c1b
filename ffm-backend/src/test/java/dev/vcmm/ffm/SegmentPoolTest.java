package dev.vcmm.ffm;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SegmentPoolTest {

    private static final long MIB = 1L << 20;
    private SegmentPool pool;

    @BeforeEach
    void open() {
        pool = SegmentPool.open("test", 64 * MIB, 2 * MIB, 16 * MIB);
    }

    @AfterEach
    void close() {
        pool.close();
    }

    @Test
    void shouldServeEverySizeZeroedAlignedAndExact() {
        long[] sizes = {0, 1, 16, 17, 64, 100, 2048, 2049, 4096, 5000, 65536, 2 * MIB, 2 * MIB + 1, 5 * MIB + 3};
        List<MemorySegment> all = new ArrayList<>();
        for (long size : sizes) {
            MemorySegment s = pool.allocateUninitialized(size, 1);
            s.fill((byte) 0x5a);
            all.add(s);
        }
        for (MemorySegment s : all) {
            pool.free(s);
        }
        for (long size : sizes) {
            for (long align : new long[]{1, 8, 64, 4096, 65536}) {
                MemorySegment s = pool.allocate(size, align);
                assertEquals(size, s.byteSize());
                assertEquals(0, s.address() % align, () -> "size=" + size + " align=" + align);
                for (long i = 0; i < size; i += 511) {
                    assertEquals(0, s.get(ValueLayout.JAVA_BYTE, i), () -> "size=" + size + " not zeroed");
                }
                s.fill((byte) 0x77);
                pool.free(s);
            }
        }
        assertEquals(0, pool.stats().allocatedBytes());
        assertEquals(0, pool.stats().liveSegments());
    }

    @Test
    void shouldRecycleLargeMappingsWithoutNewOnes() {
        MemorySegment s = pool.allocate(16 * MIB, 8);
        long address = s.address();
        s.set(ValueLayout.JAVA_LONG, 16 * MIB - 8, 42);
        pool.free(s);
        long mappings = pool.stats().mappings();
        assertEquals(16 * MIB, pool.stats().cachedBytes());
        for (int i = 0; i < 10; i++) {
            MemorySegment t = pool.allocate(16 * MIB - 5, 8);
            assertEquals(address, t.address());
            assertEquals(0, t.get(ValueLayout.JAVA_LONG, 16 * MIB - 16)); // zeroed again
            pool.free(t);
        }
        assertEquals(mappings, pool.stats().mappings());
    }

    @Test
    void shouldRefuseBadInputChangingNothing() {
        MemorySegment small = pool.allocate(64, 8);
        MemorySegment block = pool.allocate(8192, 8);
        MemorySegment big = pool.allocate(4 * MIB, 8);
        var before = pool.stats();
        assertThrows(IllegalArgumentException.class, () -> pool.allocate(-1, 8));
        assertThrows(IllegalArgumentException.class, () -> pool.allocate(64, 3));
        assertThrows(IllegalArgumentException.class, () -> pool.allocate(64, 0));
        assertThrows(IllegalArgumentException.class, () -> pool.allocate(64, 4 * MIB));
        assertThrows(OutOfMemoryError.class, () -> pool.allocate(Long.MAX_VALUE, 8));
        assertThrows(IllegalArgumentException.class, () -> pool.free(small.asSlice(16)));
        assertThrows(IllegalArgumentException.class, () -> pool.free(block.asSlice(0, 100)));
        assertThrows(IllegalArgumentException.class, () -> pool.free(block.asSlice(4096)));
        assertThrows(IllegalArgumentException.class, () -> pool.free(big.asSlice(0, MIB)));
        assertThrows(IllegalArgumentException.class, () -> pool.free(big.asSlice(4096)));
        assertThrows(IllegalArgumentException.class, () -> pool.free(MemorySegment.ofArray(new byte[64])));
        try (Arena a = Arena.ofConfined()) {
            assertThrows(IllegalArgumentException.class, () -> pool.free(a.allocate(4 * MIB)));
        }
        try (SegmentPool other = SegmentPool.open(8 * MIB)) {
            MemorySegment foreign = other.allocate(8192, 8);
            assertThrows(IllegalArgumentException.class, () -> pool.free(foreign));
        }
        var after = pool.stats();
        assertEquals(before.failures() + 1, after.failures(), "the OutOfMemoryError is counted as a failure");
        assertEquals(before, new SegmentPool.Stats(after.capacity(), after.allocatedBytes(), after.liveSegments(),
            after.cachedBytes(), after.residentBytes(), after.mappings(), after.trimmedBytes(), after.decayedBytes(),
            after.decayPasses(), after.allocations(), before.failures(), after.trims()), "nothing else changed");
        pool.free(small);
        pool.free(block);
        pool.free(big);
        assertThrows(IllegalStateException.class, () -> pool.free(small));
        assertThrows(IllegalStateException.class, () -> pool.free(block));
        assertThrows(IllegalStateException.class, () -> pool.free(big));
        assertEquals(0, pool.stats().allocatedBytes());
    }

    @Test
    void shouldFreeFromAnotherThread() throws Exception {
        List<MemorySegment> made = new ArrayList<>();
        for (int i = 0; i < 1000; i++) {
            made.add(pool.allocate(16L << (i % 14), 8));
        }
        CompletableFuture.runAsync(() -> made.forEach(pool::free)).get();
        assertEquals(0, pool.stats().liveSegments());
    }

    @Test
    void shouldEndArenaSegmentsAtCloseAndFreeThemInBulk() throws Exception {
        MemorySegment s;
        try (Arena a = pool.newArena()) {
            s = a.allocate(100);
            a.allocate(8192);
            a.allocate(5 * MIB);
            assertEquals(3, pool.stats().liveSegments());
            assertTrue(s.scope().isAlive());
            assertThrows(IllegalArgumentException.class, () -> pool.free(s)); // the arena's close frees it
            Arena owned = a;
            var wrong = CompletableFuture.supplyAsync(() -> {
                try {
                    owned.close();
                    return null;
                } catch (RuntimeException e) {
                    return e;
                }
            }).get();
            assertTrue(wrong instanceof WrongThreadException, () -> "got " + wrong);
            assertTrue(s.scope().isAlive());
        }
        assertThrows(IllegalStateException.class, () -> s.get(ValueLayout.JAVA_BYTE, 0));
        assertEquals(0, pool.stats().liveSegments());
        assertEquals(0, pool.stats().allocatedBytes());
    }

    @Test
    void shouldShareASharedArenaAcrossThreads() throws Exception {
        Arena a = pool.newSharedArena();
        MemorySegment s = CompletableFuture.supplyAsync(() -> a.allocate(4096)).get();
        s.set(ValueLayout.JAVA_INT, 0, 7);
        CompletableFuture.runAsync(a::close).get();
        assertThrows(IllegalStateException.class, () -> s.get(ValueLayout.JAVA_INT, 0));
        assertEquals(0, pool.stats().liveSegments());
        a.close(); // idempotent
    }

    @Test
    void shouldRefuseUseAfterClose() {
        MemorySegment s = pool.allocate(4096);
        MemorySegment big = pool.allocate(4 * MIB);
        pool.close();
        assertThrows(IllegalStateException.class, () -> pool.allocate(64));
        assertThrows(IllegalStateException.class, () -> pool.free(s));
        assertThrows(IllegalStateException.class, () -> s.get(ValueLayout.JAVA_BYTE, 0));
        assertThrows(IllegalStateException.class, () -> big.get(ValueLayout.JAVA_BYTE, 0));
        pool.close();
    }

    @Test
    void shouldGiveMemoryBackAtTrim() {
        long start = pool.stats().residentBytes();
        List<MemorySegment> made = new ArrayList<>();
        for (int i = 0; i < 6; i++) {
            made.add(pool.allocate(4 * MIB));
            made.getLast().fill((byte) 1);
            made.add(pool.allocate(MIB));
            made.getLast().fill((byte) 1);
        }
        for (int c = 0; c < 8; c++) { // small sizes too: 300 objects of each slab class, and 4 KiB..64 KiB blocks
            for (int i = 0; i < 300; i++) {
                made.add(pool.allocate(16L << c, 8));
                made.getLast().fill((byte) 1);
            }
        }
        for (int o = 0; o < 5; o++) {
            for (int i = 0; i < 40; i++) {
                made.add(pool.allocate(4096L << o, 8));
                made.getLast().fill((byte) 1);
            }
        }
        long full = pool.stats().residentBytes();
        assertTrue(full >= 30 * MIB, () -> "resident " + full);
        made.forEach(pool::free);
        assertNotEquals(0, pool.stats().cachedBytes());
        long punched = pool.trim();
        var after = pool.stats();
        assertTrue(punched >= 30 * MIB, () -> "punched " + punched);
        assertEquals(0, after.cachedBytes());
        assertTrue(after.residentBytes() <= start + (start / 10),
            () -> "resident " + after.residentBytes() + " started at " + start);
        MemorySegment again = pool.allocateUninitialized(MIB, 8);
        assertEquals(0, again.get(ValueLayout.JAVA_LONG, 0)); // a punched hole reads as zeros
        pool.free(again);
    }
}
