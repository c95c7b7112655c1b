package dev.vcmm.ffm;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

import static dev.vcmm.ffm.PoolCounters.Counter.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Live counters: a pool publishes into a mapped file that a reader (Agrona's {@code CountersReader}, through the file)
 * sees agree with {@link SegmentPool#stats()}, and that operations keep up to date. Runs in its own surefire
 * execution with {@code --add-exports java.base/jdk.internal.misc=ALL-UNNAMED} (Agrona's UnsafeBuffer needs it).
 */
class SegmentPoolCountersTest {

    private static final long MIB = 1L << 20;

    @TempDir
    Path dir;

    @Test
    void shouldPublishWhatStatsSaysThroughTheFile() {
        AtomicLong now = new AtomicLong(1);
        try (SegmentPool pool = SegmentPool.builder(32 * MIB).name("counted").counters(dir).clock(now::get).build()) {
            Path file = pool.countersFile().orElseThrow();
            assertEquals(dir, file.getParent());
            assertTrue(file.getFileName().toString().startsWith("counted-" + ProcessHandle.current().pid()));
            List<MemorySegment> live = new ArrayList<>();
            live.add(pool.allocate(100));           // small: 100 bytes
            live.add(pool.allocate(8000));          // block: 8000
            live.add(pool.allocate(3 * MIB + 5));   // large
            MemorySegment gone = pool.allocate(64 * 1024);
            gone.fill((byte) 1);
            pool.free(gone);
            assertNull(pool.tryAllocate(64 * MIB, 8, false)); // a failure
            pool.trim();
            SegmentPool.Stats st = pool.stats(); // publishes

            try (PoolCounters.View view = PoolCounters.map(file)) {
                assertEquals("counted", view.pool());
                assertEquals(ProcessHandle.current().pid(), view.pid());
                assertFalse(view.closed());
                Map<PoolCounters.Counter, Long> v = view.values();
                assertEquals(PoolCounters.Counter.values().length, v.size());
                assertEquals(st.allocations(), v.get(ALLOCATIONS));
                assertEquals(4, st.allocations());
                assertEquals(1, v.get(FREES));
                assertEquals(st.liveSegments(), v.get(LIVE_SEGMENTS));
                assertEquals(st.allocatedBytes(), v.get(ALLOCATED_BYTES));
                assertEquals(100, v.get(SMALL_BYTES));
                assertEquals(8000, v.get(BLOCK_BYTES));
                assertEquals(3 * MIB + 5, v.get(LARGE_BYTES));
                assertEquals(st.cachedBytes(), v.get(CACHED_BYTES));
                assertEquals(st.residentBytes(), v.get(RESIDENT_BYTES));
                assertTrue(v.get(RESIDENT_BYTES) > 0);
                assertEquals(st.mappings(), v.get(MAPPINGS));
                assertEquals(1, v.get(MAPPINGS));
                assertEquals(1, v.get(TRIMS));
                assertEquals(st.trimmedBytes(), v.get(TRIMMED_BYTES));
                assertEquals(st.decayedBytes(), v.get(DECAYED_BYTES));
                assertEquals(st.decayPasses(), v.get(DECAY_PASSES));
                assertEquals(1, v.get(FAILURES));
                assertEquals(32 * MIB, v.get(CAPACITY));
                // the labels, as any CountersReader sees them
                List<String> labels = new ArrayList<>();
                view.reader().forEach((value, id, label) -> labels.add(label));
                assertTrue(labels.contains("pool 'counted' resident bytes"), () -> labels.toString());
            }
            live.forEach(pool::free);
        }
        assertFalse(Files.exists(dir.resolve("counted-" + ProcessHandle.current().pid() + PoolCounters.SUFFIX)),
            "close deletes the file");
    }

    @Test
    void shouldKeepTheFileUpToDateFromOperationsAlone() {
        AtomicLong now = new AtomicLong(1);
        try (SegmentPool pool = SegmentPool.builder(16 * MIB).name("live").counters(dir).decay(null)
                .clock(now::get).build();
             PoolCounters.View view = PoolCounters.map(pool.countersFile().orElseThrow())) {
            now.addAndGet(SegmentPool.PUBLISH_INTERVAL);
            for (int i = 0; i < SegmentPool.DECAY_CHECK_OPS; i++) { // at least one 64th operation: one publication
                pool.free(pool.allocate(64));
            }
            long first = view.values().get(ALLOCATIONS);
            assertTrue(first >= SegmentPool.DECAY_CHECK_OPS / 2, () -> "published " + first);
            for (int i = 0; i < SegmentPool.DECAY_CHECK_OPS; i++) { // the clock did not move: no publication
                pool.free(pool.allocate(64));
            }
            assertEquals(first, view.values().get(ALLOCATIONS));
            now.addAndGet(SegmentPool.PUBLISH_INTERVAL);
            for (int i = 0; i < SegmentPool.DECAY_CHECK_OPS; i++) {
                pool.free(pool.allocate(64));
            }
            long second = view.values().get(ALLOCATIONS);
            assertTrue(second >= first + SegmentPool.DECAY_CHECK_OPS, () -> first + " then " + second);
            assertEquals(3L * SegmentPool.DECAY_CHECK_OPS, pool.stats().allocations());
        }
    }

    @Test
    void shouldRefuseAFileThatIsNotACountersFile() throws Exception {
        Path junk = Files.write(dir.resolve("junk" + PoolCounters.SUFFIX), new byte[4096]);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> PoolCounters.map(junk));
        assertTrue(e.getMessage().contains("not a vcmm counters file"));
        assertEquals(List.of(junk), PoolCounters.list(dir));
    }
}
