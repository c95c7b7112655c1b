package dev.vcmm.ffm;

import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Decay: freed memory is punched out of the memfd after the decay time, driven by operations or by the pool's thread. */
class SegmentPoolDecayTest {

    private static final long MIB = 1L << 20;
    private static final long SECOND = 1_000_000_000L;

    /** Allocates blocks and large segments, writes every page, frees them all. */
    private static void churn(SegmentPool pool) {
        List<MemorySegment> made = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            made.add(pool.allocateUninitialized(6 * MIB, 8)); // 3 chunks, mapped, cached at free
            made.add(pool.allocateUninitialized(MIB, 8));     // a buddy block
            made.add(pool.allocateUninitialized(64 << 10, 8));
        }
        for (MemorySegment s : made) {
            s.fill((byte) 7);
        }
        made.forEach(pool::free);
    }

    /** Enough small operations for the calling thread to check the clock at least once. */
    private static void operate(SegmentPool pool) {
        for (int i = 0; i < SegmentPool.DECAY_CHECK_OPS; i++) {
            pool.free(pool.allocate(64, 8));
        }
    }

    private static boolean withinTenPercent(long resident, long start) {
        return resident <= start + Math.max(start / 10, 64 << 10); // the slab page of the 64-byte class stays
    }

    @Test
    void shouldPunchFreedMemoryOnlyAfterTheDecayTime() {
        AtomicLong now = new AtomicLong(5 * SECOND);
        try (SegmentPool pool = SegmentPool.builder(64 * MIB).name("decay").cacheBudget(32 * MIB)
                .decay(Duration.ofSeconds(2)).clock(now::get).build()) {
            operate(pool); // the 64-byte slab page exists before the start is measured
            long start = pool.stats().residentBytes();
            churn(pool);
            long full = pool.stats().residentBytes();
            assertTrue(full >= start + 28 * MIB, () -> "resident " + full + " from " + start);
            assertEquals(24 * MIB, pool.stats().cachedBytes());

            now.addAndGet(SECOND); // half the decay time: checks run, nothing is old enough
            operate(pool);
            assertTrue(pool.stats().decayPasses() >= 1);
            assertEquals(0, pool.stats().decayedBytes());
            assertEquals(full, pool.stats().residentBytes());

            now.addAndGet(SECOND + 1); // past the decay time
            operate(pool);
            SegmentPool.Stats after = pool.stats();
            assertTrue(withinTenPercent(after.residentBytes(), start),
                () -> "resident " + after.residentBytes() + " started at " + start + ": " + after);
            assertTrue(after.decayedBytes() >= 28 * MIB, () -> "decayed " + after.decayedBytes());
            assertEquals(0, after.trimmedBytes());
            assertEquals(24 * MIB, after.cachedBytes()); // the mappings are kept, only their pages punched

            long mappings = after.mappings();
            MemorySegment again = pool.allocateUninitialized(6 * MIB, 8);
            assertEquals(0, again.get(ValueLayout.JAVA_LONG, 6 * MIB - 8)); // a punched page reads as zero
            pool.free(again);
            assertEquals(mappings, pool.stats().mappings()); // reused: no new mapping
        }
    }

    @Test
    void shouldPunchTheFreePartOfAChunkAndLeaveLiveBytesAlone() {
        AtomicLong now = new AtomicLong(1);
        try (SegmentPool pool = SegmentPool.builder(16 * MIB).name("decay-partial").decay(Duration.ZERO)
                .clock(now::get).build()) {
            operate(pool);
            long start = pool.stats().residentBytes();
            MemorySegment a = pool.allocateUninitialized(MIB, 8);
            MemorySegment b = pool.allocateUninitialized(MIB, 8);
            MemorySegment c = pool.allocateUninitialized(4096, 8); // a small live block next to free ones
            a.fill((byte) 1);
            b.fill((byte) 2);
            c.fill((byte) 3);
            pool.free(a);
            now.addAndGet(SECOND);
            operate(pool);
            assertTrue(pool.stats().decayedBytes() >= MIB, () -> "decayed " + pool.stats().decayedBytes());
            assertTrue(pool.stats().residentBytes() <= start + MIB + 4096 + (64 << 10),
                () -> "resident " + pool.stats().residentBytes() + " from " + start);
            for (long i = 0; i < MIB; i += 4093) {
                assertEquals(2, b.get(ValueLayout.JAVA_BYTE, i), "a live block is never punched");
            }
            assertEquals(3, c.get(ValueLayout.JAVA_BYTE, 4095));
            pool.free(b);
            pool.free(c);
            now.addAndGet(SECOND);
            operate(pool);
            assertTrue(withinTenPercent(pool.stats().residentBytes(), start),
                () -> "resident " + pool.stats().residentBytes() + " from " + start);
        }
    }

    @Test
    void shouldDecayOnlyAtTrimWhenDisabled() {
        AtomicLong now = new AtomicLong(1);
        try (SegmentPool pool = SegmentPool.builder(32 * MIB).name("decay-off").decay(null).clock(now::get).build()) {
            operate(pool);
            long start = pool.stats().residentBytes();
            churn(pool);
            now.addAndGet(3600 * SECOND);
            operate(pool);
            assertEquals(0, pool.stats().decayPasses());
            assertTrue(pool.stats().residentBytes() >= start + 16 * MIB);
            pool.trim();
            assertTrue(withinTenPercent(pool.stats().residentBytes(), start));
        }
    }

    @Test
    void shouldGiveAnIdlePoolsMemoryBackWithTheDecayThread() throws InterruptedException {
        try (SegmentPool pool = SegmentPool.builder(32 * MIB).name("decay-thread").decay(Duration.ofMillis(40))
                .decayThread(true).build()) {
            operate(pool);
            long start = pool.stats().residentBytes();
            churn(pool); // then no operation at all: only the pool's thread can punch
            long deadline = System.nanoTime() + 20 * SECOND;
            while (!withinTenPercent(pool.stats().residentBytes(), start) && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
            SegmentPool.Stats after = pool.stats();
            assertTrue(withinTenPercent(after.residentBytes(), start),
                () -> "resident " + after.residentBytes() + " started at " + start + ": " + after);
            assertTrue(after.decayedBytes() > 0);
        }
        assertTrue(Thread.getAllStackTraces().keySet().stream().noneMatch(t -> t.getName().equals("vcmm-pool-decay-decay-thread")),
            "close stops the decay thread");
    }
}
