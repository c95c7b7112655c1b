package dev.vcmm.bench.baseline;

import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.util.concurrent.TimeUnit;

/**
 * The physical limit under the buddy allocators: what one off-heap word costs to store, to CAS alone, and
 * to CAS against another core. A lock-free alloc+free needs at least two successful CASes on shared words;
 * a locked one at least a lock acquire and release (each a CAS or a release store).
 *
 * <p>Run with {@code -t 1} for the uncontended costs and {@code -t 2} for the contended ones (with two
 * threads, {@code plainStore} and {@code casUncontended} still touch one word per thread, on separate
 * cache lines, and so must not slow down; {@code casContended} and {@code getAndAddContended} share one
 * word).
 *
 * <p>All words are little-endian-agnostic native longs in {@link MemorySegment}s accessed through the
 * layout's {@link VarHandle}, as the FFM allocators access theirs.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class CasBaseline {

    private static final VarHandle LONG = ValueLayout.JAVA_LONG.varHandle();
    /** Each word gets two cache lines of its own (adjacent-line prefetch pairs lines on Intel). */
    private static final long LINE = 128;

    /** One word per thread. */
    @State(Scope.Thread)
    public static class Own {
        Arena arena;
        MemorySegment word;
        long expected;

        @Setup(Level.Trial)
        public void setUp() {
            arena = Arena.ofConfined();
            word = arena.allocate(LINE, LINE);
        }

        @TearDown(Level.Trial)
        public void tearDown() {
            arena.close();
        }
    }

    /** One word shared by all threads. */
    @State(Scope.Benchmark)
    public static class Shared {
        Arena arena;
        MemorySegment word;

        @Setup(Level.Trial)
        public void setUp() {
            arena = Arena.ofShared();
            word = arena.allocate(LINE, LINE);
        }

        @TearDown(Level.Trial)
        public void tearDown() {
            arena.close();
        }
    }

    /** A plain (non-atomic, unordered) store of a changing value to the thread's own off-heap word. */
    @Benchmark
    public void plainStore(Own own) {
        LONG.set(own.word, 0L, ++own.expected);
    }

    /** A successful CAS on the thread's own off-heap word: the uncontended cost of a lock-free step. */
    @Benchmark
    public boolean casUncontended(Own own) {
        final long e = own.expected;
        own.expected = e + 1;
        return LONG.compareAndSet(own.word, 0L, e, e + 1);
    }

    /**
     * Read the shared word (volatile) and CAS it to value + 1, retrying until it succeeds: the cost of
     * one successful contended CAS increment, the shape of a lock-free list push or pop.
     */
    @Benchmark
    public long casContended(Shared shared) {
        final MemorySegment w = shared.word;
        long v;
        do {
            v = (long) LONG.getVolatile(w, 0L);
        } while (!LONG.compareAndSet(w, 0L, v, v + 1));
        return v;
    }

    /** An atomic add on the shared word (x86 {@code lock xadd}, never fails): a contended RMW without retries. */
    @Benchmark
    public long getAndAddContended(Shared shared) {
        return (long) LONG.getAndAdd(shared.word, 0L, 1L);
    }
}
