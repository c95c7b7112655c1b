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

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * {@link SegmentPool} as a general allocator against Netty's pool, {@code malloc} through FFM and the
 * JDK's confined {@link Arena}, all in the same run.
 *
 * <p>{@code allocFree}: one allocation of {@code size} bytes and its free, on one thread, ns/op.
 * {@code crossThread}: a JMH group of one producer that allocates and hands each segment over a bounded queue to
 * one consumer that frees it; ns/op per side ({@code arena-*} impls are not meaningful here: an arena's close
 * frees, so they allocate and close on the producer).
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

    @Param({"vcmm", "vcmm-zeroed", "vcmm-arena", "netty", "netty-cache", "malloc", "arena-confined"})
    public String impl;

    @Param({"64", "4096", "65536", "1048576", "16777216"})
    public int size;

    SegmentPool pool;
    PooledByteBufAllocator netty;
    ArrayBlockingQueue<Object> handoff;

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
        handoff = new ArrayBlockingQueue<>(64);
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
        return switch (impl) {
            case "vcmm" -> pool.allocateUninitialized(size, 8);
            case "vcmm-zeroed" -> pool.allocate(size, 8);
            case "netty", "netty-cache" -> netty.directBuffer(size);
            case "malloc" -> (MemorySegment) MALLOC.invokeExact((long) size);
            default -> throw new IllegalStateException(impl);
        };
    }

    void release(Object o) throws Throwable {
        switch (impl) {
            case "vcmm", "vcmm-zeroed" -> pool.free((MemorySegment) o);
            case "netty", "netty-cache" -> ((ByteBuf) o).release();
            case "malloc" -> FREE.invokeExact((MemorySegment) o);
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
    public void producer() throws Throwable {
        if (impl.contains("arena")) {
            allocFree();
            return;
        }
        Object o = allocate();
        while (!handoff.offer(o)) {
            Thread.onSpinWait();
        }
    }

    @Benchmark
    @Group("crossThread")
    @GroupThreads(1)
    public void consumer() throws Throwable {
        if (impl.contains("arena")) {
            return;
        }
        Object o = handoff.poll();
        if (o != null) {
            release(o);
        }
    }

    @TearDown(Level.Iteration)
    public void drain() throws Throwable {
        Object o;
        while ((o = handoff.poll()) != null) {
            release(o);
        }
    }
}
