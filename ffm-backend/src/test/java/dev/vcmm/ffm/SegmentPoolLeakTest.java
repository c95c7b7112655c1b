package dev.vcmm.ffm;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Leak detection: a segment or an arena dropped without free or close is reported, with the allocating method in
 * the stack; freed and closed ones, and everything at a disabled level, are not. GC is forced in a bounded loop.
 */
class SegmentPoolLeakTest {

    private static final long MIB = 1L << 20;

    private static SegmentPool pool(String name, LeakLevel level, LinkedBlockingQueue<LeakReport> reports) {
        return SegmentPool.builder(16 * MIB).name(name).leakDetection(level).leakListener(reports::add).build();
    }

    /** Collects garbage until a report arrives, at most about 20 s. */
    private static LeakReport awaitReport(LinkedBlockingQueue<LeakReport> reports) throws InterruptedException {
        for (int i = 0; i < 200; i++) {
            System.gc();
            LeakReport r = reports.poll(100, TimeUnit.MILLISECONDS);
            if (r != null) {
                return r;
            }
        }
        return null;
    }

    private static boolean mentions(LeakReport r, String method) {
        return Arrays.stream(r.allocationSite().getStackTrace()).anyMatch(e -> e.getMethodName().equals(method));
    }

    private static void leakASegment(SegmentPool pool, long size) {
        MemorySegment s = pool.allocate(size);
        s.set(ValueLayout.JAVA_BYTE, size - 1, (byte) 1); // dropped here, never freed
    }

    private static void leakAnArena(SegmentPool pool) {
        Arena a = pool.newArena();
        a.allocate(100).set(ValueLayout.JAVA_BYTE, 0, (byte) 1); // dropped here, never closed
    }

    @Test
    void shouldReportADroppedSegmentWithItsAllocationStack() throws InterruptedException {
        LinkedBlockingQueue<LeakReport> reports = new LinkedBlockingQueue<>();
        try (SegmentPool pool = pool("leaky", LeakLevel.PARANOID, reports)) {
            leakASegment(pool, 4096);
            LeakReport r = awaitReport(reports);
            assertNotNull(r, "no report after 200 collections");
            assertEquals(LeakReport.Kind.SEGMENT, r.kind());
            assertEquals("leaky", r.pool());
            assertEquals(4096, r.byteSize());
            assertTrue(mentions(r, "leakASegment"), () -> "stack: " + Arrays.toString(r.allocationSite().getStackTrace()));
            assertTrue(awaitAllocated(pool, 0), () -> "the leak was not reclaimed: " + pool.stats());
        }
    }

    /** Collects garbage until the pool's allocated bytes are {@code bytes}, at most about 20 s. */
    private static boolean awaitAllocated(SegmentPool pool, long bytes) throws InterruptedException {
        for (int i = 0; i < 200; i++) {
            if (pool.stats().allocatedBytes() == bytes) {
                return true;
            }
            System.gc();
            Thread.sleep(100);
        }
        return pool.stats().allocatedBytes() == bytes;
    }

    @Test
    void shouldReclaimDroppedSegmentsOfEverySize() throws InterruptedException {
        LinkedBlockingQueue<LeakReport> reports = new LinkedBlockingQueue<>();
        try (SegmentPool pool = pool("reclaimed", LeakLevel.PARANOID, reports)) {
            MemorySegment kept = pool.allocate(64);
            for (long size : new long[] {64, 4096, 65536, 5 * MIB}) {
                leakASegment(pool, size);
            }
            assertTrue(awaitAllocated(pool, 64), () -> "leaks not reclaimed: " + pool.stats());
            assertEquals(1, pool.stats().liveSegments());
            assertEquals(4, pool.reclaimedLeaks());
            assertEquals(64, kept.byteSize());
            pool.free(kept); // the live one was never touched
            assertEquals(0, pool.stats().liveSegments());
            pool.trim();
            pool.free(pool.allocate(12 * MIB)); // the reclaimed memory is usable again: 12 of 16 MiB at once
        }
    }

    @Test
    void shouldReclaimADroppedArenaOnlyOnceNoViewOfItIsLeft() throws InterruptedException {
        LinkedBlockingQueue<LeakReport> reports = new LinkedBlockingQueue<>();
        try (SegmentPool pool = pool("reclaimed-arena", LeakLevel.PARANOID, reports)) {
            MemorySegment[] view = {leakAnArenaKeepingAView(pool)};
            LeakReport r = awaitReport(reports); // the arena object is gone: reported, as nobody can close it
            assertNotNull(r, "no report after 200 collections");
            assertEquals(LeakReport.Kind.ARENA, r.kind());
            for (int i = 0; i < 10; i++) {
                System.gc();
                Thread.sleep(20);
            }
            assertEquals(100, pool.stats().allocatedBytes(), "a view is left: the memory must stay");
            view[0].set(ValueLayout.JAVA_LONG, 8, 42L);
            assertEquals(42L, view[0].get(ValueLayout.JAVA_LONG, 8));
            assertEquals(0, pool.reclaimedLeaks());
            view[0] = null; // the last view goes
            assertTrue(awaitAllocated(pool, 0), () -> "arena not reclaimed: " + pool.stats());
            assertEquals(1, pool.reclaimedLeaks());
            assertEquals(0, pool.stats().liveSegments());
        }
    }

    private static MemorySegment leakAnArenaKeepingAView(SegmentPool pool) {
        Arena a = pool.newArena();
        MemorySegment s = a.allocate(100);
        s.set(ValueLayout.JAVA_BYTE, 0, (byte) 1);
        return s; // the arena is dropped here, never closed; the view lives on
    }

    @Test
    void shouldNotReclaimAnythingTheLeakDetectorDoesNotTrack() throws InterruptedException {
        LinkedBlockingQueue<LeakReport> reports = new LinkedBlockingQueue<>();
        try (SegmentPool pool = pool("untracked", LeakLevel.DISABLED, reports)) {
            leakASegment(pool, 4096);
            for (int i = 0; i < 10; i++) {
                System.gc();
                Thread.sleep(20);
            }
            assertEquals(4096, pool.stats().allocatedBytes(), "untracked: nothing knows it was dropped");
            assertEquals(0, pool.reclaimedLeaks());
        }
    }

    @Test
    void shouldReportADroppedLargeSegment() throws InterruptedException {
        LinkedBlockingQueue<LeakReport> reports = new LinkedBlockingQueue<>();
        try (SegmentPool pool = pool("leaky-big", LeakLevel.PARANOID, reports)) {
            leakASegment(pool, 5 * MIB);
            LeakReport r = awaitReport(reports);
            assertNotNull(r, "no report after 200 collections");
            assertEquals(5 * MIB, r.byteSize());
            assertTrue(mentions(r, "leakASegment"));
        }
    }

    @Test
    void shouldReportADroppedArenaWithItsOpeningStack() throws InterruptedException {
        LinkedBlockingQueue<LeakReport> reports = new LinkedBlockingQueue<>();
        try (SegmentPool pool = pool("leaky-arena", LeakLevel.PARANOID, reports)) {
            leakAnArena(pool);
            LeakReport r = awaitReport(reports);
            assertNotNull(r, "no report after 200 collections");
            assertEquals(LeakReport.Kind.ARENA, r.kind());
            assertEquals(100, r.byteSize());
            assertTrue(mentions(r, "leakAnArena"), () -> "stack: " + Arrays.toString(r.allocationSite().getStackTrace()));
        }
    }

    @Test
    void shouldNotReportWhatWasFreedOrClosed() throws InterruptedException {
        LinkedBlockingQueue<LeakReport> reports = new LinkedBlockingQueue<>();
        try (SegmentPool pool = pool("tidy", LeakLevel.PARANOID, reports)) {
            for (int i = 0; i < 20; i++) {
                pool.free(pool.allocate(64 + i));
                pool.free(pool.allocate(3 * MIB));
                try (Arena a = pool.newArena()) {
                    a.allocate(64);
                }
            }
            leakASegment(pool, 8192); // the control: collections do happen
            LeakReport r = awaitReport(reports);
            assertNotNull(r);
            assertEquals(8192, r.byteSize(), () -> "the first report is not the control: " + r);
            for (int i = 0; i < 5; i++) {
                System.gc();
            }
            Thread.sleep(200);
            assertTrue(reports.isEmpty(), () -> "reported: " + reports);
        }
    }

    @Test
    void shouldTrackNothingWhenDisabled() throws InterruptedException {
        LinkedBlockingQueue<LeakReport> off = new LinkedBlockingQueue<>();
        LinkedBlockingQueue<LeakReport> control = new LinkedBlockingQueue<>();
        try (SegmentPool disabled = pool("off", LeakLevel.DISABLED, off);
             SegmentPool paranoid = pool("control", LeakLevel.PARANOID, control)) {
            assertSame(disabled.allocate(64).scope(), disabled.allocate(64).scope(), "the pool's own scope, untracked");
            leakASegment(disabled, 4096);
            leakAnArena(disabled);
            leakASegment(paranoid, 4096);
            assertNotNull(awaitReport(control), "the control was not reported: no collection happened");
            for (int i = 0; i < 5; i++) {
                System.gc();
            }
            Thread.sleep(200);
            assertTrue(off.isEmpty(), () -> "reported while disabled: " + off);
            assertEquals(null, disabled.leaks);
        }
    }

    @Test
    void shouldSampleOneInTheIntervalWhenSimple() {
        try (SegmentPool pool = SegmentPool.builder(16 * MIB).name("simple").leakDetection(LeakLevel.SIMPLE)
                .leakSamplingInterval(8).leakListener(r -> { }).build()) {
            for (int i = 0; i < 800; i++) {
                pool.free(pool.allocate(64));
            }
            long tracked = pool.leaks.tracked();
            // binomial(800, 1/8): mean 100, standard deviation 9.4; outside [50, 150] about once in 10^7 runs
            assertTrue(tracked >= 50 && tracked <= 150, () -> "tracked " + tracked + " of 800");
        }
    }

    @Test
    void shouldFreeTrackedSegmentsAndRefuseBadFrees() {
        LinkedBlockingQueue<LeakReport> reports = new LinkedBlockingQueue<>();
        try (SegmentPool pool = pool("strict", LeakLevel.PARANOID, reports)) {
            MemorySegment small = pool.allocate(64);
            MemorySegment block = pool.allocate(8192);
            MemorySegment big = pool.allocate(3 * MIB);
            assertNotSame(small.scope(), block.scope(), "each tracked segment has a scope of its own");
            big.set(ValueLayout.JAVA_LONG, 3 * MIB - 8, 42);
            assertThrows(IllegalArgumentException.class, () -> pool.free(block.asSlice(0, 4096)));
            assertEquals(3, pool.stats().liveSegments(), "nothing changed");
            pool.free(small);
            pool.free(block);
            pool.free(big);
            assertThrows(IllegalStateException.class, () -> pool.free(block));
            assertThrows(IllegalStateException.class, () -> pool.free(big));
            assertEquals(0, pool.stats().liveSegments());
            assertEquals(0, pool.stats().allocatedBytes());
        }
    }

    @Test
    void shouldKeepViewsWithScopesOfTheirOwnMappedAfterThePoolCloses() {
        LinkedBlockingQueue<LeakReport> reports = new LinkedBlockingQueue<>();
        SegmentPool pool = pool("closing", LeakLevel.PARANOID, reports);
        MemorySegment tracked = pool.allocate(4096);
        MemorySegment trackedBig = pool.allocate(3 * MIB);
        Arena arena = pool.newArena();
        MemorySegment inArena = arena.allocate(4096);
        MemorySegment bigInArena = arena.allocate(3 * MIB);
        tracked.set(ValueLayout.JAVA_INT, 0, 7);
        trackedBig.set(ValueLayout.JAVA_INT, 3 * MIB - 4, 8);
        inArena.set(ValueLayout.JAVA_INT, 0, 9);
        bigInArena.set(ValueLayout.JAVA_INT, 0, 10);
        long bigAddress = bigInArena.address();
        pool.close();
        // these scopes are not the pool's, so its close cannot end them: their memory stays mapped (no fault)
        assertEquals(7, tracked.get(ValueLayout.JAVA_INT, 0));
        assertEquals(8, trackedBig.get(ValueLayout.JAVA_INT, 3 * MIB - 4));
        assertEquals(9, inArena.get(ValueLayout.JAVA_INT, 0));
        assertEquals(10, bigInArena.get(ValueLayout.JAVA_INT, 0));
        assertTrue(!ProcMaps.overlapping(bigAddress, 3 * MIB).isEmpty());
        arena.close(); // the arena's close ends its views and lets the large mapping go
        assertThrows(IllegalStateException.class, () -> inArena.get(ValueLayout.JAVA_INT, 0));
        assertTrue(ProcMaps.overlapping(bigAddress, 3 * MIB).isEmpty(), () -> "still mapped: "
            + ProcMaps.overlapping(bigAddress, 3 * MIB));
        assertTrue(reports.isEmpty(), "live at the pool's close is no leak");
    }
}
