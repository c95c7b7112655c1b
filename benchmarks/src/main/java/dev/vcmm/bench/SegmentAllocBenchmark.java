package dev.vcmm.bench;

import dev.vcmm.ffm.SegmentPool;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.PooledByteBufAllocator;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Group;
import org.openjdk.jmh.annotations.GroupThreads;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;
import org.openjdk.jmh.infra.Control;
import org.openjdk.jmh.infra.ThreadParams;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReferenceArray;

/**
 * {@link SegmentPool} as a general allocator against Netty's pool, {@code malloc} through FFM and the
 * JDK's confined {@link Arena}, all in the same run.
 *
 * <p>{@code allocFree}: one allocation of {@code size} bytes and its free, on each thread ({@code -t 1}, {@code -t 2}),
 * ns/op. {@code allocWriteFree}: the same, writing one byte per 4 KiB page before the free.
 * {@code crossThread}: a JMH group of one producer that allocates and hands each segment over a bounded
 * single-producer single-consumer ring ({@value #RING} slots, release/acquire) to one consumer that frees it; each
 * side waits for the other with {@link Thread#yield()} (2 busy cores: spinning starves the other side), so both sides
 * report about the same ns/op, the cost of one allocation + one free + one handoff across threads. The
 * {@code arena-*} impls are not meaningful there (an arena's close frees, and a confined arena cannot be closed by
 * another thread): their producer runs {@code allocFree} and their consumer does nothing.
 * {@code mixed}: on each thread, {@value #SLOTS} slots of live allocations; each op frees the allocation in a slot
 * picked at random and puts a new one of a random size there, so lifetimes are geometric (mean {@value #SLOTS} ops)
 * and sizes are 70% 16 B-2 KiB, 25% 2-64 KiB, 5% 64 KiB-1 MiB (uniform within each band), all from a fixed seed per
 * thread ({@value #SEED} + thread index): every impl sees the same sequence. {@code size} is ignored. For the
 * {@code *arena*} impls each allocation is an arena of its own holding it.
 *
 * <h2>Implementations ({@code impl})</h2>
 * <ul>
 *   <li>{@code vcmm}: {@link SegmentPool#allocateUninitialized} + {@link SegmentPool#free}: like for like with
 *       {@code netty} and {@code malloc}, which do not zero.</li>
 *   <li>{@code vcmm-zeroed}: {@link SegmentPool#allocate} (zeroes, the default) + free.</li>
 *   <li>{@code vcmm-arena}: {@link SegmentPool#newArena()}, one allocation in it, close: like for like with
 *       {@code arena-confined}; both zero.</li>
 *   <li>{@code netty}: {@code new PooledByteBufAllocator(true)} with its defaults, {@code directBuffer(size)} +
 *       {@code release()}. Without {@code sun.misc.Unsafe} (its Java 25 default: no
 *       {@code -Dio.netty.noUnsafe=false} and no {@code --sun-misc-unsafe-memory-access=allow} is passed), and
 *       without thread caches for JMH's threads ({@code useCacheForAllThreads=false}, its default).</li>
 *   <li>{@code netty-cache}: the same with {@code useCacheForAllThreads=true} (what a Netty event loop gets).</li>
 *   <li>{@code malloc}: {@code malloc} + {@code free} through FFM downcalls (critical, no state capture).</li>
 *   <li>{@code arena-confined}: {@code Arena.ofConfined()}, one {@code allocate(size)} (zeroing), close.</li>
 * </ul>
 * The pool is 512 MiB with 2 MiB chunks: 64 B is a slab object, 4 KiB to 1 MiB buddy blocks, 16 MiB eight
 * scattered chunks mapped contiguously (recycled).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "-Xmx1g"})
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class SegmentAllocBenchmark {

    static final long POOL = 512L << 20;
    static final int RING = 1024;
    static final int SLOTS = 256;
    static final long SEED = 42;
    static final int SEQUENCE = 1 << 16;

    @Param({"vcmm", "vcmm-zeroed", "vcmm-arena", "netty", "netty-cache", "malloc", "arena-confined"})
    public String impl;

    @Param({"64", "4096", "65536", "1048576", "16777216"})
    public int size;

    SegmentPool pool;
    PooledByteBufAllocator netty;
    /** crossThread's ring: the producer owns {@link #tail}, the consumer {@link #head}; a slot is null when free. */
    AtomicReferenceArray<Object> ring;
    long tail;
    long head;
    /** mixed's per-thread states, so that their live allocations are freed after each iteration. */
    final java.util.concurrent.ConcurrentLinkedQueue<Mixed> mixedStates = new java.util.concurrent.ConcurrentLinkedQueue<>();

    static final MethodHandle MALLOC;
    static final MethodHandle FREE;

    static {
        Linker linker = Linker.nativeLinker();
        MALLOC = linker.downcallHandle(linker.defaultLookup().find("malloc").orElseThrow(),
            FunctionDescriptor.of(ValueLayout.ADDRESS, ValueLayout.JAVA_LONG), Linker.Option.critical(false));
        FREE = linker.downcallHandle(linker.defaultLookup().find("free").orElseThrow(),
            FunctionDescriptor.ofVoid(ValueLayout.ADDRESS), Linker.Option.critical(false));
    }

    @Setup(Level.Trial)
    public void setUp() {
        if (impl.startsWith("vcmm")) {
            pool = SegmentPool.open(POOL);
        } else if (impl.startsWith("netty")) {
            netty = new PooledByteBufAllocator(true, PooledByteBufAllocator.defaultNumHeapArena(),
                PooledByteBufAllocator.defaultNumDirectArena(), PooledByteBufAllocator.defaultPageSize(),
                PooledByteBufAllocator.defaultMaxOrder(), PooledByteBufAllocator.defaultSmallCacheSize(),
                PooledByteBufAllocator.defaultNormalCacheSize(), impl.equals("netty-cache"));
        }
        ring = new AtomicReferenceArray<>(RING);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        if (pool != null) {
            pool.close();
        }
        System.out.println("\nnetty directBufferPreferred=" + io.netty.util.internal.PlatformDependent.directBufferPreferred()
            + " hasUnsafe=" + io.netty.util.internal.PlatformDependent.hasUnsafe());
    }

    /** Allocates one segment the way {@code impl} does; returns what {@link #release} takes. */
    Object allocate() throws Throwable {
        return allocate(size);
    }

    /** As {@link #allocate()} for {@code bytes}; an {@code *arena*} impl returns a new arena holding the allocation. */
    Object allocate(int bytes) throws Throwable {
        return switch (impl) {
            case "vcmm" -> pool.allocateUninitialized(bytes, 8);
            case "vcmm-zeroed" -> pool.allocate(bytes, 8);
            case "netty", "netty-cache" -> netty.directBuffer(bytes);
            case "malloc" -> (MemorySegment) MALLOC.invokeExact((long) bytes);
            case "vcmm-arena" -> {
                Arena a = pool.newArena();
                a.allocate(bytes, 8);
                yield a;
            }
            case "arena-confined" -> {
                Arena a = Arena.ofConfined();
                a.allocate(bytes, 8);
                yield a;
            }
            default -> throw new IllegalStateException(impl);
        };
    }

    void release(Object o) throws Throwable {
        switch (impl) {
            case "vcmm", "vcmm-zeroed" -> pool.free((MemorySegment) o);
            case "netty", "netty-cache" -> ((ByteBuf) o).release();
            case "malloc" -> FREE.invokeExact((MemorySegment) o);
            case "vcmm-arena", "arena-confined" -> ((Arena) o).close();
            default -> throw new IllegalStateException(impl);
        }
    }

    @Benchmark
    public Object allocFree() throws Throwable {
        switch (impl) {
            case "vcmm-arena" -> {
                try (Arena a = pool.newArena()) {
                    return a.allocate(size, 8).address();
                }
            }
            case "arena-confined" -> {
                try (Arena a = Arena.ofConfined()) {
                    return a.allocate(size, 8).address();
                }
            }
            default -> {
                Object o = allocate();
                release(o);
                return o;
            }
        }
    }

    /**
     * As {@link #allocFree}, but writes one long into every 4 KiB page before the free: what a user does, and what
     * makes zeroing real (vcmm skips pages never touched, so {@code allocFree} of a never-written 1 MiB+ segment
     * measures no fill).
     */
    @Benchmark
    public long allocWriteFree() throws Throwable {
        switch (impl) {
            case "vcmm-arena" -> {
                try (Arena a = pool.newArena()) {
                    return touch(a.allocate(size, 8));
                }
            }
            case "arena-confined" -> {
                try (Arena a = Arena.ofConfined()) {
                    return touch(a.allocate(size, 8));
                }
            }
            default -> {
                Object o = allocate();
                long r = o instanceof ByteBuf b ? touch(b) : touch(((MemorySegment) o).reinterpret(size));
                release(o);
                return r;
            }
        }
    }

    private long touch(MemorySegment s) {
        long n = s.byteSize();
        for (long at = 0; at < n; at += 4096) {
            s.set(ValueLayout.JAVA_BYTE, at, (byte) 1);
        }
        return s.address();
    }

    private long touch(ByteBuf b) {
        for (int at = 0; at < size; at += 4096) {
            b.setByte(at, 1);
        }
        return b.capacity();
    }

    @Benchmark
    @Group("crossThread")
    @GroupThreads(1)
    public void producer(Control control) throws Throwable {
        if (impl.contains("arena")) {
            allocFree();
            return;
        }
        Object o = allocate();
        int at = (int) (tail & (RING - 1));
        while (ring.get(at) != null) { // acquire: the consumer's null store, after its read of the slot
            if (control.stopMeasurement) {
                release(o);
                return;
            }
            Thread.yield();
        }
        ring.setRelease(at, o); // publishes the allocation to the consumer's acquire
        tail++;
    }

    @Benchmark
    @Group("crossThread")
    @GroupThreads(1)
    public void consumer(Control control) throws Throwable {
        if (impl.contains("arena")) {
            return;
        }
        int at = (int) (head & (RING - 1));
        Object o;
        while ((o = ring.getAcquire(at)) == null) {
            if (control.stopMeasurement) {
                return;
            }
            Thread.yield();
        }
        ring.setRelease(at, null);
        head++;
        release(o);
    }

    @TearDown(Level.Iteration)
    public void drain() throws Throwable {
        for (int i = 0; i < RING; i++) {
            Object o = ring.getAndSet(i, null);
            if (o != null) {
                release(o);
            }
        }
        head = 0;
        tail = 0;
        for (Mixed m : mixedStates) {
            for (int i = 0; i < SLOTS; i++) {
                if (m.slots[i] != null && !(m.slots[i] instanceof Arena)) {
                    release(m.slots[i]);
                    m.slots[i] = null;
                }
            }
        }
    }

    /** A thread's live allocations and its pre-drawn sequence of slots and sizes for {@code mixed}. */
    @State(Scope.Thread)
    public static class Mixed {
        final Object[] slots = new Object[SLOTS];
        final int[] slot = new int[SEQUENCE];
        final int[] sizes = new int[SEQUENCE];
        int next;
        boolean registered;

        /** Closes this thread's arenas (a confined arena only on its thread; a pool arena may close after its pool). */
        @TearDown(Level.Iteration)
        public void closeArenas() {
            for (int i = 0; i < SLOTS; i++) {
                if (slots[i] instanceof Arena a) {
                    a.close();
                    slots[i] = null;
                }
            }
        }

        @Setup(Level.Trial)
        public void draw(ThreadParams thread) {
            SplittableRandom rnd = new SplittableRandom(SEED + thread.getThreadIndex());
            for (int i = 0; i < SEQUENCE; i++) {
                slot[i] = rnd.nextInt(SLOTS);
                int band = rnd.nextInt(100);
                sizes[i] = band < 70 ? 16 + rnd.nextInt(2048 - 16 + 1)
                    : band < 95 ? 2049 + rnd.nextInt((64 << 10) - 2049 + 1)
                    : (64 << 10) + 1 + rnd.nextInt((1 << 20) - (64 << 10));
            }
        }
    }

    @Benchmark
    public Object mixed(Mixed m) throws Throwable {
        if (!m.registered) {
            m.registered = true;
            mixedStates.add(m); // freed by drain(), which JMH runs before the trial's tearDown closes the pool
        }
        int i = m.next;
        m.next = (i + 1) & (SEQUENCE - 1);
        int at = m.slot[i];
        Object old = m.slots[at];
        if (old != null) {
            release(old);
        }
        Object o = allocate(m.sizes[i]);
        m.slots[at] = o;
        return o;
    }
}
