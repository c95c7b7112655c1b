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
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * {@link SegmentPool} as a general allocator against Netty's pool, {@code malloc} through FFM and the
 * JDK's confined {@link Arena}, all in the same run.
 *
 * <p>{@code allocFree}: one allocation of {@code size} bytes and its free, on each thread ({@code -t 1}, {@code -t 2}),
 * ns/op. {@code allocWriteFree}: the same, writing one byte per 4 KiB page before the free.
 * {@code crossThread}: a JMH group of one producer and one consumer. Each producer invocation allocates one segment
 * and stores it, plain, into the batch it is filling; each consumer invocation takes one segment out of the batch it
 * is emptying and frees it; so ns/op stays per allocation (producer) and per free (consumer), and both sides report
 * about the same figure (the queue keeps their counts within {@value #QUEUE} + 1 batches of each other). Batches of
 * {@value #BATCH} allocations ({@code 4 MiB / size} above 64 KiB, at least 1) go through a single-producer single-consumer queue of {@value #QUEUE} batch
 * arrays ({@link Handoff}; each batch a new array): one release store of the producer's {@code tail} per batch
 * publishes it, one release store of the consumer's {@code head} per batch hands its slot back; each side re-reads the other's index
 * (acquire) only when its cached copy shows the queue full or empty. {@code tail} and {@code head} sit on cache
 * lines of their own (class-hierarchy padding), and the batch arrays share no line in use. A side that finds the
 * queue full (empty) spins with {@link Thread#onSpinWait()} {@value #SPINS} times, then yields its core with
 * {@link Thread#yield()} between reads (2 cores: a side that spins forever starves the other). So per batch, not per
 * allocation, the handoff moves the batch array's lines (a reference is 4 bytes with compressed oops: 4 lines for 64)
 * and its slot's line to the consumer, and each index's line once; per allocation there remains the line of the segment object
 * the producer made and the consumer reads. The figure is then that of an allocation and a free on different threads
 * (a free of memory another thread allocated, and an allocation of memory another thread freed). The
 * {@code handoff} impl runs the same path without an allocator: its floor, a little low, as it passes one segment
 * object over and over (its line is not moved per allocation). The {@code arena-*} impls are not
 * meaningful there (an arena's close frees, and a confined arena cannot be closed by another thread): their producer
 * runs {@code allocFree} and their consumer does nothing.
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
 *   <li>{@code handoff}: a baseline, not an allocator: "allocate" returns one segment of {@code size} bytes
 *       allocated at setup, "free" does nothing. Its {@code crossThread} is the cost of the handoff alone (the floor
 *       under every impl's figure); its {@code allocFree} and {@code mixed}, of the benchmark's own dispatch.</li>
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
    /** crossThread: allocations per batch (fewer above 64 KiB: at most 4 MiB per batch). */
    static final int BATCH = 64;
    /** crossThread: batches in the queue (a power of two). */
    static final int QUEUE = 8;
    /** crossThread: {@link Thread#onSpinWait()} rounds before a waiting side yields its core. */
    static final int SPINS = 256;
    static final int SLOTS = 256;
    static final long SEED = 42;
    static final int SEQUENCE = 1 << 16;

    @Param({"vcmm", "vcmm-zeroed", "vcmm-arena", "netty", "netty-cache", "malloc", "arena-confined", "handoff"})
    public String impl;

    @Param({"64", "4096", "65536", "1048576", "16777216"})
    public int size;

    SegmentPool pool;
    PooledByteBufAllocator netty;
    /** crossThread's queue of batches. */
    Handoff handoff;
    /** {@code handoff}'s one segment, which its allocate returns every time, and the arena that holds it. */
    MemorySegment preallocated;
    Arena handoffArena;
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
        handoff = new Handoff((int) Math.clamp((4L << 20) / size, 1, BATCH));
        if (impl.equals("handoff")) {
            handoffArena = Arena.ofShared();
            preallocated = handoffArena.allocate(size, 8);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        if (pool != null) {
            pool.close();
        }
        if (handoffArena != null) {
            handoffArena.close();
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
            case "handoff" -> preallocated;
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
            case "handoff" -> { } // nothing was allocated
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
        Handoff h = handoff;
        int at = h.fill;
        if (at == 0) {
            if (!h.awaitFreeBatch(control)) {
                return; // the iteration ended while the queue was full: nothing allocated
            }
            h.filling = new Object[Handoff.EDGE + h.batchLength + Handoff.EDGE]; // young: see Handoff
        }
        h.filling[Handoff.EDGE + at] = allocate(); // plain: published with the batch by the release store of tail
        if (++at == h.batchLength) {
            h.publish();
            at = 0;
        }
        h.fill = at;
    }

    @Benchmark
    @Group("crossThread")
    @GroupThreads(1)
    public void consumer(Control control) throws Throwable {
        if (impl.contains("arena")) {
            return;
        }
        Handoff h = handoff;
        int at = h.taken;
        if (at == 0) {
            if (!h.awaitFullBatch(control)) {
                return; // the iteration ended while the queue was empty
            }
            h.take();
        }
        Object[] batch = h.emptying;
        Object o = batch[Handoff.EDGE + at];
        batch[Handoff.EDGE + at] = null; // taken (what drain() would free is what is left)
        if (++at == h.batchLength) {
            h.consumed();
            at = 0;
        }
        h.taken = at;
        release(o);
    }

    @TearDown(Level.Iteration)
    public void drain() throws Throwable {
        handoff.drain(this); // after both group threads returned from their last invocation
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

    /** Padding before {@link HandoffProducer}'s fields: two 64-byte lines (adjacent-line prefetch pulls pairs). */
    abstract static class HandoffPad0 {
        long p00, p01, p02, p03, p04, p05, p06, p07, p08, p09, p0a, p0b, p0c, p0d, p0e, p0f;
    }

    /** The producer's fields, on lines of their own (HotSpot lays a superclass's fields out before a subclass's). */
    abstract static class HandoffProducer extends HandoffPad0 {
        /** Batches published so far; written by the producer only, with a release store ({@link Handoff#TAIL}). */
        long tail;
        /** The producer's last acquire read of {@link HandoffConsumer#head}. Producer only. */
        long headSeen;
        /** The batch being filled, published as {@code batches[tail % QUEUE]}. Producer only. */
        Object[] filling;
        /** Allocations in {@link #filling}. Producer only. */
        int fill;
    }

    /** Padding between the producer's and the consumer's fields. */
    abstract static class HandoffPad1 extends HandoffProducer {
        long p10, p11, p12, p13, p14, p15, p16, p17, p18, p19, p1a, p1b, p1c, p1d, p1e, p1f;
    }

    /** The consumer's fields, on lines of their own. */
    abstract static class HandoffConsumer extends HandoffPad1 {
        /** Batches consumed so far; written by the consumer only, with a release store ({@link Handoff#HEAD}). */
        long head;
        /** The consumer's last acquire read of {@link HandoffProducer#tail}. Consumer only. */
        long tailSeen;
        /** The batch being emptied, taken out of {@code batches[head % QUEUE]}. Consumer only. */
        Object[] emptying;
        /** Allocations taken from {@link #emptying}. Consumer only. */
        int taken;
    }

    /** Padding after the consumer's fields. */
    abstract static class HandoffPad2 extends HandoffConsumer {
        long p20, p21, p22, p23, p24, p25, p26, p27, p28, p29, p2a, p2b, p2c, p2d, p2e, p2f;
    }

    /**
     * crossThread's single-producer single-consumer queue of {@value #QUEUE} batches (JCTools' {@code SpscArrayQueue}
     * with cached indices, carrying arrays): the producer fills batch {@code i}, a new array, with plain stores, puts
     * it into {@code batches[i % QUEUE]} and publishes it by a release store of {@code tail = i + 1}; the consumer's
     * acquire read of {@code tail} makes the batch visible. The consumer takes the array out of its slot and hands the
     * slot back by a release store of {@code head = i + 1}, which the producer's acquire read of {@code head} pairs
     * with before it reuses the slot. So each side pays one release store per batch, and one acquire read (of the
     * other side's line) per batch when its cached copy shows no room, never one per allocation. A batch is a new
     * array (one allocation per {@value #BATCH} segments) because G1's write barrier is cheap for a store into a young
     * object and costs a StoreLoad fence for a store of a young reference into an old one, as a long-lived array
     * would be after the first collection.
     */
    static final class Handoff extends HandoffPad2 {
        static final VarHandle TAIL;
        static final VarHandle HEAD;

        static {
            try {
                MethodHandles.Lookup l = MethodHandles.lookup();
                TAIL = l.findVarHandle(HandoffProducer.class, "tail", long.class);
                HEAD = l.findVarHandle(HandoffConsumer.class, "head", long.class);
            } catch (ReflectiveOperationException e) {
                throw new ExceptionInInitializerError(e);
            }
        }

        final int batchLength;
        /** The published batches; each is used from {@code EDGE}, so that two share no cache line in use. */
        final Object[][] batches = new Object[QUEUE][];
        /** References (4 bytes with compressed oops) left unused at each end of a batch array: 64 bytes or more. */
        static final int EDGE = 16;

        Handoff(int batchLength) {
            this.batchLength = batchLength;
        }

        /** Consumer: takes the published batch {@code batches[head % QUEUE]} into {@link #emptying}. */
        void take() {
            int at = (int) (head & (QUEUE - 1));
            emptying = batches[at];
            batches[at] = null;
        }

        /** Producer: {@return whether {@code batches[tail % QUEUE]} is free to fill; false if the iteration ended} */
        boolean awaitFreeBatch(Control control) {
            long t = tail;
            for (int spins = 0; t - headSeen >= QUEUE; spins++) {
                headSeen = (long) HEAD.getAcquire(this); // pairs with the consumer's release store in consumed()
                if (t - headSeen < QUEUE) {
                    break;
                }
                if (control.stopMeasurement) {
                    return false;
                }
                backOff(spins);
            }
            return true;
        }

        /** Producer: publishes the batch just filled (release: its plain stores happen-before the consumer's reads). */
        void publish() {
            batches[(int) (tail & (QUEUE - 1))] = filling;
            filling = null;
            TAIL.setRelease(this, tail + 1);
        }

        /** Consumer: {@return whether {@code batches[head % QUEUE]} is published; false if the iteration ended} */
        boolean awaitFullBatch(Control control) {
            long h = head;
            for (int spins = 0; h >= tailSeen; spins++) {
                tailSeen = (long) TAIL.getAcquire(this); // pairs with the producer's release store in publish()
                if (h < tailSeen) {
                    break;
                }
                if (control.stopMeasurement) {
                    return false;
                }
                backOff(spins);
            }
            return true;
        }

        /**
         * One round of a wait: spins with {@link Thread#onSpinWait()} for the first {@link #SPINS} rounds, then yields
         * the core (2 cores, possibly shared: a side that spins on starves the other; spinning longer, 20 us by the
         * clock, doubled the handoff's figure on the loaded 2-vCPU machine).
         */
        private static void backOff(int spins) {
            if (spins < SPINS) {
                Thread.onSpinWait();
            } else {
                Thread.yield();
            }
        }

        /** Consumer: hands the batch just emptied back to the producer (release: its nulls are written first). */
        void consumed() {
            HEAD.setRelease(this, head + 1);
        }

        /** After an iteration (both sides returned): frees every allocation still in a batch, and empties the queue. */
        void drain(SegmentAllocBenchmark b) throws Throwable {
            java.util.List<Object[]> left = new java.util.ArrayList<>(java.util.Arrays.asList(batches));
            left.add(filling);
            left.add(emptying);
            for (Object[] batch : left) {
                for (int i = 0; batch != null && i < batch.length; i++) {
                    if (batch[i] != null) {
                        b.release(batch[i]);
                        batch[i] = null;
                    }
                }
            }
            java.util.Arrays.fill(batches, null);
            filling = null;
            emptying = null;
            tail = 0;
            headSeen = 0;
            fill = 0;
            head = 0;
            tailSeen = 0;
            taken = 0;
        }
    }
}
