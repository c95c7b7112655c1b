package dev.vcmm.ffm;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@link PoolArena}: its books of one and of many segments, and its pin of the pool's mapping (from the first allocation). */
class PoolArenaTest {

    private static final long MIB = 1L << 20;

    /** {@return whether the pool's memfd is mapped at {@code address}, per /proc/self/maps} */
    private static boolean poolMapped(String name, long address) {
        return ProcMaps.overlapping(address, 1).stream().anyMatch(a -> a.path().contains(name));
    }

    @Test
    void shouldFreeEverySegmentAtCloseWhateverTheirNumber() {
        try (SegmentPool pool = SegmentPool.open("books", 64 * MIB, 2 * MIB, 16 * MIB)) {
            for (int n : new int[] {0, 1, 2, 5, 6, 40}) { // one in fields; then an array of 4 pairs, grown twice for 40
                List<MemorySegment> segments = new ArrayList<>();
                try (Arena a = pool.newArena()) {
                    for (int i = 0; i < n; i++) {
                        long size = switch (i % 3) {
                            case 0 -> 48;
                            case 1 -> 4096;
                            default -> 3 * MIB;
                        };
                        MemorySegment s = a.allocate(size, 8);
                        assertEquals(0L, s.get(ValueLayout.JAVA_LONG, 0), "zeroed");
                        s.set(ValueLayout.JAVA_LONG, 0, 1000L * n + i);
                        segments.add(s);
                    }
                    assertEquals(n, pool.stats().liveSegments());
                    for (int i = 0; i < n; i++) { // no two overlap: each still holds what was written into it
                        assertEquals(1000L * n + i, segments.get(i).get(ValueLayout.JAVA_LONG, 0));
                    }
                    assertTrue(a.toString().contains("segments=" + n), a::toString);
                }
                assertEquals(0, pool.stats().liveSegments(), "n=" + n);
                assertEquals(0, pool.stats().allocatedBytes(), "n=" + n);
                for (MemorySegment s : segments) {
                    assertFalse(s.scope().isAlive());
                    assertThrows(IllegalStateException.class, () -> s.get(ValueLayout.JAVA_BYTE, 0));
                }
            }
        }
    }

    @Test
    void shouldHoldThePoolsMappingFromTheFirstAllocationToTheArenasClose() {
        SegmentPool pool = SegmentPool.open("pinned-arena", 16 * MIB, 2 * MIB, 4 * MIB);
        MemorySegment probe = pool.allocate(64);
        long address = probe.address();
        pool.free(probe);
        Arena empty = pool.newArena();
        Arena holding = pool.newArena();
        MemorySegment s = holding.allocate(64);
        s.set(ValueLayout.JAVA_LONG, 0, 42L);
        pool.close();
        // the empty arena holds no view, so no pin; the holding one keeps the mapping: its view reads, no fault
        assertTrue(poolMapped("pinned-arena", address));
        assertEquals(42L, s.get(ValueLayout.JAVA_LONG, 0));
        assertThrows(IllegalStateException.class, () -> empty.allocate(64)); // the pool is closed: refused, no pin kept
        assertTrue(poolMapped("pinned-arena", address), "the holding arena's pin keeps the mapping");
        holding.close(); // while the empty arena is open: it must hold no pin, not even from its refused allocation
        assertThrows(IllegalStateException.class, () -> s.get(ValueLayout.JAVA_LONG, 0));
        assertFalse(poolMapped("pinned-arena", address), "the last pin went: the mapping must go");
        holding.close(); // idempotent
        empty.close();
        empty.close(); // idempotent
    }

    @Test
    void shouldLetAPoolWithOnlyEmptyArenasUnmapAtItsClose() {
        SegmentPool pool = SegmentPool.open("empty-arenas", 16 * MIB, 2 * MIB, 4 * MIB);
        MemorySegment probe = pool.allocate(64);
        long address = probe.address();
        pool.free(probe);
        Arena a = pool.newArena();
        Arena shared = pool.newSharedArena();
        assertThrows(IllegalArgumentException.class, () -> a.allocate(64, 3)); // refused: no pin either
        assertThrows(OutOfMemoryError.class, () -> shared.allocate(32 * MIB, 8));
        assertEquals(0, pool.stats().liveSegments());
        pool.close();
        assertFalse(poolMapped("empty-arenas", address), "no arena allocated: nothing pins the mapping");
        a.close();
        shared.close();
    }

    /**
     * Arenas allocate, write and read on two threads while a third closes the pool, from a barrier start, for many
     * rounds: an operation racing the close may fail with an {@link IllegalStateException} (the pool's contract), but
     * an allocation that succeeds keeps its memory mapped until its arena closes (a read after the pool's close
     * returned must not fault), and once every arena is closed the mapping is gone. In even rounds each worker holds
     * its 20th arena open until the close returned (unless the close came first); the count of reads made after the
     * pool's close returned proves an arena was open across it.
     */
    @Test
    void shouldNeverUnmapUnderAnArenaWhenThePoolClosesConcurrently() throws Exception {
        int rounds = 150;
        AtomicLong readsAfterClose = new AtomicLong();
        AtomicLong refused = new AtomicLong();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        for (int round = 0; round < rounds && failure.get() == null; round++) {
            String name = "race-" + round;
            // no decay: a pass racing the close only logs its failure (the pool's contract), noise here
            SegmentPool pool = SegmentPool.builder(8 * MIB).name(name).chunkSize(2 * MIB).cacheBudget(2 * MIB)
                .decay(null).build();
            MemorySegment probe = pool.allocate(64);
            long address = probe.address();
            pool.free(probe);
            CyclicBarrier start = new CyclicBarrier(3);
            AtomicLong closedAt = new AtomicLong(); // 0 until the pool's close returned
            List<Thread> workers = new ArrayList<>();
            // even rounds: each worker holds its 20th arena open until the pool's close returned; odd: free running
            long hold = round % 2 == 0 ? 20 : -1;
            for (int w = 0; w < 2; w++) {
                boolean shared = w == 1;
                Thread t = new Thread(() -> {
                    try {
                        start.await();
                        for (long i = 0; ; i++) {
                            Arena a = shared ? pool.newSharedArena() : pool.newArena();
                            try {
                                MemorySegment s = a.allocate(i % 2 == 0 ? 64 : 4096, 8);
                                s.set(ValueLayout.JAVA_LONG, 0, i);
                                if (i == hold) { // force the interleaving: this arena stays open across the close
                                    long deadline = System.nanoTime() + 5_000_000_000L;
                                    while (closedAt.get() == 0 && System.nanoTime() < deadline) {
                                        Thread.onSpinWait();
                                    }
                                }
                                boolean after = closedAt.get() != 0;
                                if (s.get(ValueLayout.JAVA_LONG, 0) != i) {
                                    throw new AssertionError("lost a write at " + i);
                                }
                                if (after) {
                                    readsAfterClose.incrementAndGet();
                                    Thread.sleep(1); // the closer is done: hold the pinned mapping a moment longer
                                    s.get(ValueLayout.JAVA_LONG, 0);
                                }
                            } finally {
                                a.close(); // may throw too: a free racing the pool's close
                            }
                        }
                    } catch (IllegalStateException closed) { // the documented failure of an operation racing close
                        refused.incrementAndGet();
                    } catch (Throwable e) {
                        failure.compareAndSet(null, e);
                    }
                }, "arena-" + w);
                workers.add(t);
                t.start();
            }
            start.await();
            Thread.sleep(0, (round % 10) * 20_000); // a spread of moments into the workers' loop
            pool.close();
            closedAt.set(System.nanoTime() | 1);
            for (Thread t : workers) {
                t.join();
            }
            assertFalse(poolMapped(name, address), () -> "round " + name + ": every arena closed, still mapped");
        }
        if (failure.get() != null) {
            throw new AssertionError(failure.get());
        }
        assertEquals(2L * rounds, refused.get(), "each worker ends on an IllegalStateException of the closed pool");
        assertTrue(readsAfterClose.get() > 0, "no arena was open across a pool's close: the race was not run");
        System.out.println("pool arenas: " + rounds + " rounds, " + readsAfterClose.get()
            + " reads through an arena after its pool's close returned");
    }
}
