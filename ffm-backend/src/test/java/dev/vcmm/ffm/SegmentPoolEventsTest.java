package dev.vcmm.ffm;

import jdk.jfr.Recording;
import jdk.jfr.consumer.RecordedEvent;
import jdk.jfr.consumer.RecordingFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** JFR events of the pool's slow paths, recorded, dumped and parsed back. */
class SegmentPoolEventsTest {

    private static final long MIB = 1L << 20;

    @TempDir
    Path dir;

    private static List<RecordedEvent> named(List<RecordedEvent> all, String name) {
        return all.stream().filter(e -> e.getEventType().getName().equals(name)).toList();
    }

    private static boolean calledFrom(RecordedEvent e, String method) {
        return e.getStackTrace() != null
            && e.getStackTrace().getFrames().stream().anyMatch(f -> f.getMethod().getName().equals(method));
    }

    @Test
    void shouldRecordMappingsTrimsDecayAndOutOfMemory() throws Exception {
        AtomicLong now = new AtomicLong(1);
        Path file = dir.resolve("pool.jfr");
        try (Recording r = new Recording();
             SegmentPool pool = SegmentPool.builder(32 * MIB).name("recorded").decay(Duration.ofSeconds(1))
                 .clock(now::get).build()) {
            r.enable("dev.vcmm.pool.Mapping");
            r.enable("dev.vcmm.pool.Trim");
            r.enable("dev.vcmm.pool.OutOfMemory");
            r.enable("dev.vcmm.pool.Decay").withThreshold(Duration.ZERO); // its default threshold is 1 ms
            r.start();
            MemorySegment big = pool.allocate(5 * MIB);  // a new mapping: 3 chunks
            pool.free(big);
            pool.free(pool.allocate(5 * MIB));             // the cached mapping: no event
            now.addAndGet(2_000_000_000L);
            for (int i = 0; i < SegmentPool.DECAY_CHECK_OPS; i++) { // a check: the cached mapping's chunks decay
                pool.free(pool.allocate(64));
            }
            MemorySegment live = pool.allocate(64); // keeps its slab page: trim gives back only empty ones
            pool.trim(); // releases the cached mapping
            assertNull(pool.tryAllocate(32 * MIB, 8, false)); // 16 chunks: one holds the live slab page
            assertThrows(OutOfMemoryError.class, () -> pool.allocate(64 * MIB));
            pool.free(live);
            r.stop();
            r.dump(file);
        }
        List<RecordedEvent> all = RecordingFile.readAllEvents(file);

        List<RecordedEvent> mappings = named(all, "dev.vcmm.pool.Mapping");
        assertEquals(1, mappings.size(), () -> "mappings: " + mappings);
        RecordedEvent m = mappings.getFirst();
        assertEquals("recorded", m.getString("pool"));
        assertEquals(6 * MIB, m.getLong("bytes"));
        assertEquals(3, m.getInt("chunks"));
        assertTrue(m.getInt("runs") >= 1 && m.getInt("runs") <= 3);
        assertTrue(calledFrom(m, "shouldRecordMappingsTrimsDecayAndOutOfMemory"));

        List<RecordedEvent> ooms = named(all, "dev.vcmm.pool.OutOfMemory");
        assertEquals(2, ooms.size(), () -> "out of memory: " + ooms);
        assertEquals(32 * MIB, ooms.get(0).getLong("requestedBytes"));
        assertEquals(64 * MIB, ooms.get(1).getLong("requestedBytes"));
        assertEquals(32 * MIB, ooms.get(1).getLong("capacity"));

        List<RecordedEvent> decays = named(all, "dev.vcmm.pool.Decay");
        assertTrue(decays.stream().anyMatch(d -> d.getLong("punchedBytes") >= 6 * MIB), () -> "decay: " + decays);

        List<RecordedEvent> trims = named(all, "dev.vcmm.pool.Trim");
        assertEquals(1, trims.size());
        assertEquals(1, trims.getFirst().getInt("releasedMappings"));
        assertTrue(calledFrom(trims.getFirst(), "trim"));
    }

    @Test
    void shouldRecordNothingBelowTheDefaultThresholdOrWhenDisabled() throws Exception {
        Path file = dir.resolve("quiet.jfr");
        try (Recording r = new Recording();
             SegmentPool pool = SegmentPool.builder(16 * MIB).name("quiet").decay(Duration.ZERO).build()) {
            r.enable("dev.vcmm.pool.Decay").withThreshold(Duration.ofHours(1)); // no pass is that slow
            r.disable("dev.vcmm.pool.Mapping");
            r.start();
            pool.free(pool.allocate(5 * MIB));
            for (int i = 0; i < 4 * SegmentPool.DECAY_CHECK_OPS; i++) {
                pool.free(pool.allocate(64));
            }
            assertTrue(pool.stats().decayPasses() > 0, "passes ran");
            r.stop();
            r.dump(file);
        }
        List<RecordedEvent> all = RecordingFile.readAllEvents(file);
        assertEquals(List.of(), named(all, "dev.vcmm.pool.Decay"));
        assertEquals(List.of(), named(all, "dev.vcmm.pool.Mapping"));
    }
}
