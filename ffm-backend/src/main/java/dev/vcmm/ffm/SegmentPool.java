package dev.vcmm.ffm;

import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.HostMapper;
import dev.vcmm.spi.HostMapping;
import dev.vcmm.spi.MemorySpec;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SegmentAllocator;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.locks.LockSupport;
import java.util.function.LongSupplier;

/**
 * vcmm as an embedded allocator: {@link MemorySegment}s out of one memfd, recycled, handed out in the FFM idiom
 * ({@link SegmentAllocator}, and {@link Arena}s through {@link #newArena()} and {@link #newSharedArena()}).
 *
 * <p><b>Thread-safety:</b> {@link #allocate}, {@link #allocateUninitialized} and {@link #free} may be called from
 * any thread, and a segment may be freed by another thread than the one that allocated it (no owner is
 * consulted, no message is sent). What is lock-free and what is not:
 * <ul>
 *   <li>Small segments (at most {@value #SLAB_MAX} bytes) and buddy blocks (up to {@link #chunkSize()}) are
 *       allocated and freed lock-free. Slab objects and blocks of 4 KiB to 64 KiB go through per-thread
 *       <em>magazines</em> (arrays whose every slot is one atomic word: the owner pops, and any thread steals, with an
 *       exchange) and per-class <em>depots</em> (Treiber stacks of chains of half a magazine, with a 24-bit stamp
 *       against ABA: a thread would have to be stopped across exactly 2<sup>24</sup> depot operations of one class to
 *       be fooled); larger blocks come from the {@link LockFreeBuddyAllocator} (see its contract); allocation marks
 *       are atomic bit operations. A free on another thread goes into that thread's magazine; a full magazine moves
 *       half of itself to the depot in one CAS, an empty one takes a chain back in one CAS, so a producer and a
 *       consumer thread meet once per half magazine, not per segment. An allocation that finds no room first takes
 *       back every magazine's and depot's blocks and every wholly free slab page, then asks the buddy once more: its
 *       failure is the buddy's linearizable "none" for that retry, but a block freed into some thread's magazine
 *       after the take-back is not seen.</li>
 *   <li>Large segments (above the chunk size) are lock-free when a recycled mapping of the right chunk count is
 *       cached (a poll of a {@link ConcurrentLinkedQueue}); a miss makes system calls ({@code mmap}) and a
 *       release closes a shared arena (a handshake with every thread): neither is lock-free.</li>
 *   <li>{@link #trim()} and {@link #close()} are not lock-free; close must not race with other operations on the
 *       pool (a racing one fails with an {@link IllegalStateException}, from the pool or from FFM's closed
 *       arena, never with a crash). {@link #stats()} reads counters one by one: it is a snapshot only when no
 *       other thread is operating.</li>
 *   <li>A decay pass and a publication of the live counters run inside an ordinary operation (every 64th of a
 *       thread, when due), under try-locks: one thread at a time, the others go on. They are not lock-free (system
 *       calls), and that operation takes longer.</li>
 * </ul>
 *
 * <h2>Design</h2>
 * <pre>
 *  size &lt;= 2 KiB       slab object: size classes 16, 32 .. 2048 bytes carved from 4 KiB buddy pages; a page goes
 *                     back to the buddy once every object of it is free (at trim, decay passes, failing allocations)
 *  size &lt;= chunk      buddy block: a plain slice of the pool's one mapping of the memfd (physically contiguous);
 *                     4 KiB .. 64 KiB ones recycled through magazines and depots
 *  size &gt;  chunk      n = ceil(size / chunk) scattered chunks mapped virtually contiguous (HOST machinery:
 *                     {@link MmapHostMapper}), recycled through a per-n cache: steady state makes no system call
 * </pre>
 * The pool maps the whole memfd once, aligned to the chunk size, so every block is aligned to its size in the
 * process too. Segments are zeroed by default, as {@link Arena#allocate} zeroes; {@link #allocateUninitialized}
 * skips it. Bad input (a double free, a segment not from this pool or a slice of one, overflowing sizes,
 * alignments that are not powers of two, use after close) throws and changes nothing: {@link IllegalArgumentException}
 * for arguments, {@link IllegalStateException} for state. One exception: a slab object is recognised by its start
 * and size class, so a slice that starts at a small object and rounds to the same class frees it.
 *
 * <h2>Decay</h2>
 * Memory freed to the pool stays resident (dirty) for a while, so that the next allocation finds it warm, as
 * jemalloc's dirty pages do; after the <em>decay time</em> ({@link Builder#decay}, 10 s by default) it is punched out
 * of the memfd ({@code fallocate(PUNCH_HOLE | KEEP_SIZE)}) and so given back to the system: the free runs of every
 * chunk freed into that long ago (a pass first gives parked blocks and wholly free slab pages back to the buddy; live
 * blocks and slab pages in use are skipped; each free piece is taken from the buddy for the time of its punch; a slab
 * page given back by a pass is punched a decay time later), and every chunk of a cached large mapping freed that
 * long ago (the mapping is kept, so its reuse still makes no system call; its pages then read as zeros and refill on
 * touch). Without a thread of its own the pool checks the time on every 64th allocate or free of each thread (one {@code System.nanoTime}, a volatile read), and a check
 * finding that a quarter of the decay time has passed since the last pass runs one pass, on that thread. An idle
 * pool therefore keeps its dirty memory until it is used again or {@link #trim()}med; {@link Builder#decayThread}
 * starts a daemon thread, owned and stopped by {@link #close()}, that makes the same check periodically.
 *
 * <h2>Leak detection</h2>
 * Off by default ({@link Builder#leakDetection}, {@link LeakLevel}): tracked segments get a scope of their own whose
 * collection while still allocated is reported to a {@link LeakListener} (docs/allocator.md says exactly what counts
 * as dropped and what is not seen), and their memory is then given back to the pool: no view can reach it, as every
 * view holds that scope. A tracked pool arena dropped unclosed is reported once the arena object is collected, and its
 * memory given back once its scope is (so only when no view of its segments is left either). Untracked segments and
 * arenas are neither reported nor reclaimed. A pool arena open across the pool's close, or a tracked segment, keeps
 * its memory mapped until it is closed or collected, so that a late access reaches memory instead of faulting the JVM.
 *
 * <h2>JFR</h2>
 * New large mappings, trims, decay passes and failed allocations emit {@code dev.vcmm.pool.*} Flight Recorder
 * events; the fast paths emit none.
 *
 * <h2>Live counters</h2>
 * Opt-in ({@link Builder#counters}): the pool publishes its counters into a memory-mapped file (see
 * {@link PoolCounters}) at most every 100 ms from its operations and at every {@link #stats()}, for {@code ./vcmm stat}.
 *
 * <h2>Magazines and slab pages</h2>
 * Each thread parks at most 127 KiB of slab objects and 1.25 MiB of 4-64 KiB blocks in its magazines; a block depot
 * holds at most {@value #BLOCK_DEPOT_CHAINS} chains per order (beyond, a flush frees to the buddy); slab depots are
 * unbounded, but their wholly free pages go back. {@link #trim()}, every decay pass and an allocation that finds no
 * room collect every free object of each slab class out of the depot and all magazines (dead threads' included);
 * a page of which they then hold every object goes back to the buddy (and is punched like other free memory), the
 * rest goes back to the depot. A page is never given back while one of its objects is allocated or on its way in or
 * out of a list (that object would be missing from the collection), and a depot pop that read the head before a
 * collection fails its stamped CAS, so no allocation gets an object of a page given back.
 */
public final class SegmentPool implements SegmentAllocator, AutoCloseable {

    /** The largest size served by a slab; classes are the powers of two from {@value #SLAB_MIN} to this. */
    public static final long SLAB_MAX = 2048;
    /** The smallest slab class. */
    public static final long SLAB_MIN = 16;
    /** The default chunk: the largest buddy block, and the unit of large segments (a huge page). */
    public static final long DEFAULT_CHUNK_SIZE = 2L << 20;
    /** By default at most this share (1/n) of the pool sits in cached large mappings. */
    public static final int DEFAULT_CACHE_SHARE = 4;
    /** By default freed memory is punched out of the memfd this long after its free (jemalloc's default too). */
    public static final Duration DEFAULT_DECAY = Duration.ofSeconds(10);
    /** Each thread checks the decay clock on every this many operations (a power of two). */
    static final int DECAY_CHECK_OPS = 64;
    /** With live counters: operations publish them at most this often (nanoseconds of the pool's clock). */
    static final long PUBLISH_INTERVAL = 100_000_000L;
    private static final int SMALL = 0;
    private static final int BLOCK = 1;
    private static final int LARGE = 2;

    /** Segments from this size are zeroed with {@link SegmentPhysicalMemory#zero}, which skips pages never touched. */
    private static final long ZERO_SKIP_HOLES = 1L << 20;
    private static final int CLASSES = 8; // 16 << 0 .. 16 << 7
    private static final int PAGE_SHIFT = BlockAllocator.PAGE_SHIFT;
    private static final long PAGE = BlockAllocator.PAGE_SIZE;
    /** Slab free-list head: low 40 bits the object's 16-byte granule + 1 (0: empty), high 24 bits a stamp. */
    private static final long LINK_MASK = (1L << 40) - 1;
    private static final int STAMP_SHIFT = 40;
    private static final int HEAD_STRIDE = 16; // longs: each head on its own 128-byte pair of lines
    /** In a depot's stride: the approximate number of chains in it, on a line of its own (the head's + 64 bytes). */
    private static final int DEPOT_COUNT = 8;
    /** Buddy orders 0..4 (4 KiB .. 64 KiB) go through the magazines and depots too, as magazine classes after the slabs. */
    private static final int BLOCK_CLASSES = 5;
    /** Slab classes, then block orders: each has a depot (a stack of chains) and a magazine in every thread. */
    private static final int MAG_CLASSES = CLASSES + BLOCK_CLASSES;
    /** A depot of a block order holds at most this many chains; a flush beyond it frees to the buddy. */
    private static final int BLOCK_DEPOT_CHAINS = 8;
    /** The value of an empty magazine slot. */
    private static final long EMPTY = -1;
    private static final VarHandle SLOT = MethodHandles.arrayElementVarHandle(long[].class);
    private static final ValueLayout.OfLong LINK = ValueLayout.JAVA_LONG_UNALIGNED;
    private static final ValueLayout.OfLong ZERO_WORD = ValueLayout.JAVA_LONG_UNALIGNED;
    /** A block's page info: {@code (order + 1) << ORDER_SHIFT | byteSize}. */
    private static final int ORDER_SHIFT = 48;
    private static final long SIZE_MASK = (1L << ORDER_SHIFT) - 1;
    /** Set in a block's page info when it is freed: a later free of it is a double free. */
    private static final long FREED = 1L << 62;
    /** The page info of the first page of a chunk owned by a large mapping (live or cached). */
    private static final long BIG_CHUNK = Long.MIN_VALUE;
    private static final VarHandle INFO = MethodHandles.arrayElementVarHandle(long[].class);
    private static final VarHandle BITS = MethodHandles.arrayElementVarHandle(long[].class);
    private static final VarHandle DIRTY = MethodHandles.arrayElementVarHandle(long[].class);

    private final String name;
    private final long capacity;
    private final long chunkSize;
    private final int chunkOrder;
    private final long cacheBudget;
    private final SegmentPhysicalMemory memory;
    private final LockFreeBuddyAllocator buddy;
    private final MmapHostMapper mapper = new MmapHostMapper();
    private final long poolAddress;
    private final HostMapping poolMapping;
    /** The whole memfd, mapped once; every small and block segment is a slice of it. */
    private final MemorySegment all;
    /** {@link #all}'s scope: a segment of this pool below the chunk size has exactly this one. */
    private final MemorySegment.Scope poolScope;
    /**
     * Per 4 KiB page: for the first page of a live buddy block, {@code (order + 1) << 48 | byteSize}, with {@link #FREED}
     * set once it is freed (until a block starting there is allocated again); for a slab page {@code -(1 + class)};
     * else 0. Written with release or CAS, read with acquire.
     */
    private final long[] pageInfo;
    /** Per slab page, 4 longs: bit {@code i} set iff object {@code i} is allocated. */
    private final long[] slabBits;
    /**
     * Per magazine class, a depot: a Treiber stack of chains of free objects (a slab class) or blocks (an order). Head
     * at {@code class * HEAD_STRIDE}: low 40 bits the chain's first object's 16-byte granule + 1 (0: empty), high 24
     * bits a stamp; at {@code + DEPOT_COUNT} the approximate number of chains.
     */
    private final AtomicLongArray heads = new AtomicLongArray(MAG_CLASSES * HEAD_STRIDE);
    /** Per magazine class: how many objects a thread's magazine holds; a flush or a refill moves half of it. */
    private static final int[] MAG_CAPACITY = magazineCapacities();
    /** Slab pages given back to the buddy so far. */
    private final AtomicLong slabPagesReturned = new AtomicLong();
    /** Test hook: run by a depot pop between reading the head and its CAS (null but in tests). */
    Runnable depotPopHook;
    /** Large mappings by address, live or cached. */
    private final ConcurrentHashMap<Long, Big> bigs = new ConcurrentHashMap<>();
    /** Cached large mappings, by chunk count. */
    private final ConcurrentHashMap<Integer, ConcurrentLinkedQueue<Big>> bigCache = new ConcurrentHashMap<>();
    private final AtomicLong cachedBytes = new AtomicLong();
    /** Per-thread counts of allocated bytes and segments (a free counts on the freeing thread), summed by stats. */
    private final ThreadLocal<Counts> counts = ThreadLocal.withInitial(this::newCounts);
    private final ConcurrentLinkedQueue<Counts> allCounts = new ConcurrentLinkedQueue<>();
    private final AtomicLong mappings = new AtomicLong();
    private final AtomicLong trimmedBytes = new AtomicLong();
    private final AtomicInteger state = new AtomicInteger();
    private volatile boolean closed;

    // decay
    /** Nanoseconds from a chunk's free to its punch; negative: only {@link #trim()} punches. */
    private final long decayNanos;
    /** The least time between two decay passes: a quarter of the decay time. */
    private final long passInterval;
    private final LongSupplier clock;
    private final int chunkShift;
    /**
     * Per chunk: 0 if it is clean (punched, or never freed into), else the clock's time (never 0) when memory in it
     * was first freed since it was last punched. Set by CAS from 0 on the free path; cleared by a pass that owns the
     * chunk (taken whole from the buddy). Read opaque: a stale read only delays or repeats a punch.
     */
    private final long[] dirty;
    /** The clock's time from which the next pass may run. */
    private volatile long nextPass;
    /** 1 while a pass or a trim runs: one at a time. */
    private final AtomicInteger passing = new AtomicInteger();
    private final AtomicLong decayedBytes = new AtomicLong();
    private final AtomicLong passes = new AtomicLong();
    private final Thread decayThread;
    private final AtomicLong failures = new AtomicLong();
    private final AtomicLong trims = new AtomicLong();

    // live counters
    /** Null unless counters were asked for; then the pool publishes into it (see {@link PoolCounters}). */
    private final PoolCounters counters;
    /** Whether every 64th operation of a thread reads the clock: for decay or for counters. */
    private final boolean clockChecks;
    private volatile long nextPublish;
    private final AtomicInteger publishing = new AtomicInteger();

    // leak detection
    /** Null when leak detection is disabled. */
    final LeakTracker leaks;
    /** With leak detection: the scope of {@link #all}, ended first at close (tracked views have scopes of their own). */
    private final Arena viewArena;
    /** Live tracked scopes over the pool's one mapping: its unmap waits for them (a late access must not fault). */
    private final AtomicLong mainPins = new AtomicLong();
    private volatile boolean mainRetiring;
    private final AtomicInteger mainRetired = new AtomicInteger();
    /** Orders the reclaim of leaked memory (cleaner threads) with {@link #close()}. */
    private final Object reclaimLock = new Object();
    private final AtomicLong reclaimedLeaks = new AtomicLong();

    private SegmentPool(Builder options) {
        this.name = options.name;
        this.capacity = options.capacity;
        this.chunkSize = options.chunkSize;
        this.chunkOrder = Long.numberOfTrailingZeros(chunkSize) - PAGE_SHIFT;
        this.chunkShift = Long.numberOfTrailingZeros(chunkSize);
        this.cacheBudget = options.cacheBudget < 0 ? capacity / DEFAULT_CACHE_SHARE : options.cacheBudget;
        this.decayNanos = options.decayNanos;
        this.passInterval = Math.max(0, decayNanos / 4);
        this.clock = options.clock;
        this.dirty = new long[Math.toIntExact(capacity >>> chunkShift)];
        this.nextPass = clock.getAsLong();
        String why = mapper.unavailableReason();
        if (why != null) {
            throw new UnsupportedOperationException("a SegmentPool needs HOST mappings: " + why);
        }
        this.memory = SegmentPhysicalMemory.open(name, 0, capacity);
        LockFreeBuddyAllocator b = null;
        long at = 0;
        HostMapping m = null;
        try {
            b = LockFreeBuddyAllocator.create(new MemorySpec(name, 0, capacity, false, chunkOrder, 64));
            at = mapper.reserve(capacity, chunkSize);
            m = mapper.map(at, capacity, HostMapper.PROT_READ | HostMapper.PROT_WRITE, memory,
                List.of(new HostMapper.Run(0, 0, capacity)));
        } catch (RuntimeException | Error e) {
            if (b != null) {
                b.close();
            }
            if (at != 0) {
                mapper.release(at, capacity);
            }
            memory.close();
            throw e;
        }
        this.buddy = b;
        this.poolAddress = at;
        this.poolMapping = m;
        this.leaks = options.leakLevel == LeakLevel.DISABLED ? null
            : new LeakTracker(name, options.leakLevel, options.leakInterval, options.leakListener);
        if (leaks != null) {
            this.viewArena = Arena.ofShared();
            this.all = ((FfmHostMapping) m).segment().reinterpret(viewArena, null);
        } else {
            this.viewArena = null;
            this.all = ((FfmHostMapping) m).segment();
        }
        this.poolScope = all.scope();
        int pages = Math.toIntExact(capacity >>> PAGE_SHIFT);
        this.pageInfo = new long[pages];
        this.slabBits = new long[pages * 4];
        PoolCounters pc = null;
        if (options.countersDirectory != null) {
            try {
                pc = PoolCounters.create(options.countersDirectory, name);
            } catch (RuntimeException | Error e) {
                poolMapping.close();
                mapper.release(poolAddress, capacity);
                buddy.close();
                memory.close();
                throw e;
            }
        }
        this.counters = pc;
        this.clockChecks = decayNanos >= 0 || counters != null;
        if (options.decayThread && decayNanos >= 0) {
            long period = Math.max(passInterval, 10_000_000L);
            this.decayThread = Thread.ofPlatform().daemon().name("vcmm-pool-decay-" + name).unstarted(() -> {
                while (!closed) {
                    LockSupport.parkNanos(this, period);
                    if (!closed) {
                        periodic();
                    }
                }
            });
            decayThread.start();
        } else {
            this.decayThread = null;
        }
    }

    /**
     * Opens a pool of {@code capacity} bytes with 2 MiB chunks; memory is taken from the system only as it is
     * touched.
     *
     * @param capacity bytes, a positive multiple of 2 MiB, at most 2^43
     * @return the pool; the caller closes it
     * @throws IllegalArgumentException if capacity is not a positive multiple of 2 MiB, or above 2^43
     */
    public static SegmentPool open(long capacity) {
        return builder(capacity).build();
    }

    /**
     * Opens a pool with its chunk size and cache budget chosen.
     *
     * @param name        for messages and the memfd's name
     * @param capacity    bytes, a positive multiple of {@code chunkSize}, at most 2^43
     * @param chunkSize   the largest buddy block and the unit of large segments: a power of two from 64 KiB to 1 GiB
     * @param cacheBudget the most bytes of large mappings kept for reuse, in {@code [0, capacity]}
     * @return the pool; the caller closes it
     */
    public static SegmentPool open(String name, long capacity, long chunkSize, long cacheBudget) {
        Objects.requireNonNull(name, "name");
        if (cacheBudget < 0) {
            throw new IllegalArgumentException("cacheBudget=" + cacheBudget + " must be in [0, capacity=" + capacity + "]");
        }
        return builder(capacity).name(name).chunkSize(chunkSize).cacheBudget(cacheBudget).build();
    }

    /**
     * A builder of a pool of {@code capacity} bytes.
     *
     * @param capacity bytes, a positive multiple of the chunk size (2 MiB unless {@link Builder#chunkSize} says
     *                 otherwise), at most 2^43; checked by {@link Builder#build()}
     * @return a builder of a pool with the defaults of {@link #open(long)}: name "pool", 2 MiB chunks, a cache
     *         budget of a quarter of the capacity, a decay time of {@link #DEFAULT_DECAY} driven by operations
     */
    public static Builder builder(long capacity) {
        return new Builder(capacity);
    }

    /**
     * Options of a {@link SegmentPool}; {@link #build()} checks them all and opens the pool.
     *
     * <p><b>Thread-safety:</b> none; a builder is meant for one thread. It may build several pools.
     */
    public static final class Builder {
        private String name = "pool";
        private final long capacity;
        private long chunkSize = DEFAULT_CHUNK_SIZE;
        private long cacheBudget = -1;
        private long decayNanos = DEFAULT_DECAY.toNanos();
        private boolean decayThread;
        private LongSupplier clock = System::nanoTime;
        private LeakLevel leakLevel = LeakLevel.fromSystemProperty();
        private int leakInterval = 128;
        private LeakListener leakListener = LeakListener.logging();
        private Path countersDirectory;

        private Builder(long capacity) {
            this.capacity = capacity;
        }

        /**
         * Sets {@code name}.
         *
         * @param name for messages, thread names and the memfd's name; "pool" by default
         * @return this builder
         */
        public Builder name(String name) {
            this.name = Objects.requireNonNull(name, "name");
            return this;
        }

        /**
         * Sets {@code chunkSize}.
         *
         * @param chunkSize the largest buddy block and the unit of large segments: a power of two in [64 KiB, 1 GiB]
         * @return this builder
         */
        public Builder chunkSize(long chunkSize) {
            this.chunkSize = chunkSize;
            return this;
        }

        /**
         * Sets {@code cacheBudget}.
         *
         * @param cacheBudget the most bytes of large mappings kept for reuse, in {@code [0, capacity]}
         * @return this builder
         */
        public Builder cacheBudget(long cacheBudget) {
            if (cacheBudget < 0) {
                throw new IllegalArgumentException("cacheBudget=" + cacheBudget + " must be in [0, capacity=" + capacity + "]");
            }
            this.cacheBudget = cacheBudget;
            return this;
        }

        /**
         * How long freed memory stays resident before it is punched out of the memfd.
         *
         * @param decay {@link Duration#ZERO} to punch at the next check (within {@value #DECAY_CHECK_OPS} operations
         *              of a thread, or a period of the decay thread); {@code null} or negative to punch only at
         *              {@link #trim()}; {@link #DEFAULT_DECAY} by default
         * @return this builder
         */
        public Builder decay(Duration decay) {
            this.decayNanos = decay == null || decay.isNegative() ? -1 : decay.toNanos();
            return this;
        }

        /**
         * Whether an idle pool gives memory back too.
         *
         * @param on whether the pool runs a daemon thread that checks the decay clock every quarter of the decay
         *           time (at least every 10 ms), so that an idle pool gives memory back too; it ends at
         *           {@link #close()}. Off by default: operations drive the decay
         * @return this builder
         */
        public Builder decayThread(boolean on) {
            this.decayThread = on;
            return this;
        }

        /**
         * Sets {@code nanoTime}.
         *
         * @param nanoTime the decay clock, in nanoseconds; {@code System::nanoTime} by default (tests pass their own)
         * @return this builder
         */
        public Builder clock(LongSupplier nanoTime) {
            this.clock = Objects.requireNonNull(nanoTime, "nanoTime");
            return this;
        }

        /**
         * Sets the leak detection level.
         *
         * @param level whether and how often segments and arenas dropped without free or close are reported (see
         *              {@link LeakLevel}); by default the system property {@value LeakLevel#PROPERTY}, else disabled
         * @return this builder
         */
        public Builder leakDetection(LeakLevel level) {
            this.leakLevel = Objects.requireNonNull(level, "level");
            return this;
        }

        /**
         * Sets how often allocations are tracked at {@link LeakLevel#SIMPLE}.
         *
         * @param interval at {@link LeakLevel#SIMPLE}, one allocation in this many (at random) is tracked; 128 by default
         * @return this builder
         * @throws IllegalArgumentException if it is not positive
         */
        public Builder leakSamplingInterval(int interval) {
            if (interval <= 0) {
                throw new IllegalArgumentException("interval=" + interval + " must be positive");
            }
            this.leakInterval = interval;
            return this;
        }

        /**
         * Sets {@code listener}.
         *
         * @param listener told of each leak; {@link LeakListener#logging()} by default
         * @return this builder
         */
        public Builder leakListener(LeakListener listener) {
            this.leakListener = Objects.requireNonNull(listener, "listener");
            return this;
        }

        /**
         * Turns live counters on: a file {@code <directory>/<name>-<pid>.vcmmstat} in Agrona's counters format,
         * which {@code ./vcmm stat} reads from another process; deleted at {@link #close()}. Needs Agrona on the class
         * path (an optional dependency) and, on Java 25, {@code --add-exports java.base/jdk.internal.misc=ALL-UNNAMED}.
         *
         * @param directory where the file goes, e.g. {@link PoolCounters#DEFAULT_DIRECTORY}; null: no counters (the
         *                  default)
         * @return this builder
         */
        public Builder counters(Path directory) {
            this.countersDirectory = directory;
            return this;
        }

        /**
         * Opens the pool.
         *
         * @return the open pool; close it when done
         * @throws IllegalArgumentException if an option is out of range (nothing was opened)
         * @throws UnsupportedOperationException if this system cannot make HOST mappings (no memfd or mmap)
         */
        public SegmentPool build() {
            if (chunkSize < (64 << 10) || chunkSize > (1L << 30) || Long.bitCount(chunkSize) != 1) {
                throw new IllegalArgumentException("chunkSize=" + chunkSize + " must be a power of two in [64 KiB, 1 GiB]");
            }
            if (capacity <= 0 || capacity % chunkSize != 0 || capacity > (1L << 43)) {
                throw new IllegalArgumentException("capacity=" + capacity + " must be a positive multiple of chunkSize="
                    + chunkSize + " up to 2^43");
            }
            if (cacheBudget > capacity) {
                throw new IllegalArgumentException("cacheBudget=" + cacheBudget + " must be in [0, capacity=" + capacity + "]");
            }
            return new SegmentPool(this);
        }
    }

    /** {@return the pool's bytes} */
    public long capacity() {
        return capacity;
    }

    /** {@return the largest physically contiguous block; larger segments are made of chunks of this size} */
    public long chunkSize() {
        return chunkSize;
    }

    // ---------------------------------------------------------------------------------------------
    // allocation

    /**
     * Allocates {@code byteSize} zeroed bytes aligned to {@code byteAlignment}.
     *
     * @throws IllegalArgumentException if byteSize is negative, or byteAlignment is not a positive power of two,
     *                                  or above {@link #chunkSize()}
     * @throws IllegalStateException    if the pool is closed
     * @throws OutOfMemoryError         if the pool has no room (as {@link Arena#allocate} does)
     */
    @Override
    public MemorySegment allocate(long byteSize, long byteAlignment) {
        return orFail(tryAllocate(byteSize, byteAlignment, true, true), byteSize, byteAlignment);
    }

    /**
     * As {@link #allocate(long, long)}, but the bytes are whatever they were: faster, for memory written before read.
     *
     * @param byteSize      bytes
     * @param byteAlignment a power of two
     * @return the segment, of exactly {@code byteSize} bytes
     */
    public MemorySegment allocateUninitialized(long byteSize, long byteAlignment) {
        return orFail(tryAllocate(byteSize, byteAlignment, false, true), byteSize, byteAlignment);
    }

    /**
     * Gives a segment a scope of its own, watched by the leak tracker. Its mapping (the pool's, or the large one
     * {@code b}) is pinned until that scope is collected: an access through a forgotten view after the pool's close
     * then reaches still-mapped memory instead of faulting the JVM.
     */
    private MemorySegment track(MemorySegment s, Big b) {
        if (b != null) {
            b.pins.incrementAndGet();
        } else {
            mainPins.incrementAndGet();
        }
        try {
            long address = s.address();
            long size = s.byteSize();
            return leaks.track(s, () -> reclaimLeaked(address, size), b != null ? () -> unpin(b) : this::unpinMain);
        } catch (RuntimeException | Error e) {
            if (b != null) {
                unpin(b);
            } else {
                unpinMain();
            }
            throw e;
        }
    }

    private MemorySegment orFail(MemorySegment s, long byteSize, long byteAlignment) {
        if (s == null) {
            throw new OutOfMemoryError("pool '" + name + "' has no room for byteSize=" + byteSize + " byteAlignment="
                + byteAlignment + " (" + stats() + "); free segments, or open a larger pool");
        }
        return s;
    }

    /**
     * Allocates, or returns null when the pool has no room (an expected outcome on the lock-free path).
     *
     * @param byteSize      bytes
     * @param byteAlignment a power of two
     * @param zero          whether to zero the bytes
     * @return the segment, of exactly {@code byteSize} bytes, or {@code null}
     * @throws IllegalArgumentException as {@link #allocate(long, long)}
     * @throws IllegalStateException    if the pool is closed
     */
    public MemorySegment tryAllocate(long byteSize, long byteAlignment, boolean zero) {
        return tryAllocate(byteSize, byteAlignment, zero, true);
    }

    /**
     * For a pool arena: zeroed, never tracked on its own (the arena is). A large segment's mapping is pinned until
     * {@link #releaseForArena}: the arena's view has the arena's scope, which the pool's close cannot end.
     */
    MemorySegment allocateForArena(long byteSize, long byteAlignment) {
        MemorySegment s = orFail(tryAllocate(byteSize, byteAlignment, true, false), byteSize, byteAlignment);
        if (isBig(s.address())) {
            bigs.get(s.address()).pins.incrementAndGet();
        }
        return s;
    }

    /** {@return whether the address is not in the pool's one mapping, so a large segment's} */
    private boolean isBig(long address) {
        long off = address - poolAddress;
        return off < 0 || off >= capacity;
    }

    /** For a pool arena's close: frees (unless the pool is closed) and unpins what {@link #allocateForArena} pinned. */
    void releaseForArena(long address, long byteSize) {
        Big b = isBig(address) ? bigs.get(address) : null; // still there after close: close keeps the map
        try {
            if (!closed) {
                release(address, byteSize);
            }
        } finally {
            if (b != null) {
                unpin(b);
            }
        }
    }

    /** A pool arena pins the pool's mapping while it is open: its views outlive the pool's close otherwise. */
    void pinMain() {
        mainPins.incrementAndGet();
    }

    /** @see #pinMain() */
    void unpinMainForArena() {
        unpinMain();
    }

    private MemorySegment tryAllocate(long byteSize, long byteAlignment, boolean zero, boolean mayTrack) {
        checkOpen();
        if (byteSize < 0 || byteAlignment <= 0 || (byteAlignment & (byteAlignment - 1)) != 0 || byteAlignment > chunkSize) {
            throw new IllegalArgumentException("byteSize=" + byteSize + " byteAlignment=" + byteAlignment
                + ": the size must be non-negative and the alignment a power of two in [1, chunkSize=" + chunkSize + "]");
        }
        if (byteSize > capacity) {
            failed(byteSize, byteAlignment);
            return null;
        }
        long need = Math.max(byteSize, byteAlignment);
        Counts k = counts.get();
        MemorySegment s;
        int cls;
        if (need <= SLAB_MAX) {
            s = allocateSmall(byteSize, need, k);
            cls = SMALL;
        } else if (need <= chunkSize) {
            s = allocateBlock(byteSize, need, k);
            cls = BLOCK;
        } else {
            s = allocateBig(byteSize);
            cls = LARGE;
        }
        if (s == null) {
            failed(byteSize, byteAlignment);
        } else {
            if (zero && byteSize > 0) {
                zero(s);
            }
            tick(k, byteSize, 1, cls);
            if (leaks != null && mayTrack && leaks.sample()) {
                s = track(s, need > chunkSize ? bigs.get(s.address()) : null);
            }
        }
        return s;
    }

    /** Counts a failed allocation, and records a JFR event of it if one is recording. */
    private void failed(long byteSize, long byteAlignment) {
        failures.incrementAndGet();
        PoolEvents.OutOfMemory ev = new PoolEvents.OutOfMemory();
        if (ev.shouldCommit()) {
            ev.pool = name;
            ev.requestedBytes = byteSize;
            ev.alignment = byteAlignment;
            long bytes = 0;
            for (Counts c : allCounts) {
                bytes += (long) Counts.BYTES.getOpaque(c);
            }
            ev.allocatedBytes = bytes;
            ev.capacity = capacity;
            ev.commit();
        }
    }

    private void zero(MemorySegment s) {
        long size = s.byteSize();
        long address = s.address();
        if (size < ZERO_SKIP_HOLES) {
            zeroLoop(s, size); // below this, an lseek costs more than the fill it could save
        } else if (address - poolAddress >= 0 && address - poolAddress < capacity) {
            memory.zero(address - poolAddress, size); // skips the pages never touched
        } else {
            Big b = bigs.get(address);
            for (int i = 0; i < b.chunks.length; i++) {
                long len = Math.min(chunkSize, size - i * chunkSize);
                if (len <= 0) {
                    break;
                }
                memory.zero(b.chunks[i], len);
            }
        }
    }

    /**
     * Zeroes with a counted loop of long stores, as the JDK's {@code Arena.allocate} does: C2 vectorizes it, and it
     * measured 3-4x faster than {@link MemorySegment#fill} (which calls {@code Unsafe.setMemory}): 20 ns against
     * 76 ns for 4 KiB, 0.41 us against 1.17 us for 64 KiB, on pool memory (2 vCPU, Temurin 25).
     */
    private static void zeroLoop(MemorySegment s, long size) {
        long words = size & ~7L;
        for (long i = 0; i < words; i += 8) {
            s.set(ZERO_WORD, i, 0L);
        }
        for (long i = words; i < size; i++) {
            s.set(ValueLayout.JAVA_BYTE, i, (byte) 0);
        }
    }

    private static int classOf(long need) {
        return need <= SLAB_MIN ? 0 : 64 - Long.numberOfLeadingZeros(need - 1) - 4;
    }

    private MemorySegment allocateSmall(long byteSize, long need, Counts k) {
        int c = classOf(need);
        long off = takeCached(c, k);
        if (off == EMPTY) {
            off = carveSlab(c, k);
            if (off == EMPTY) {
                scavenge(); // free objects may sit in other threads' magazines, free pages in block magazines
                off = takeCached(c, k);
                if (off == EMPTY && (off = carveSlab(c, k)) == EMPTY) {
                    return null;
                }
            }
        }
        long page = off >>> PAGE_SHIFT;
        int obj = (int) ((off & (PAGE - 1)) >>> (4 + c));
        long bit = 1L << (obj & 63);
        long old = (long) BITS.getAndBitwiseOr(slabBits, (int) (page * 4 + (obj >>> 6)), bit);
        if ((old & bit) != 0) {
            throw new AssertionError("slab object at offset " + off + " handed out twice");
        }
        return all.asSlice(off, byteSize);
    }

    private static int[] magazineCapacities() {
        int[] caps = new int[MAG_CLASSES];
        for (int c = 0; c < CLASSES; c++) {
            caps[c] = (int) Math.clamp((32L << 10) / (SLAB_MIN << c), 8, 64); // 64 objects, 16 of 2 KiB
        }
        for (int o = 0; o < BLOCK_CLASSES; o++) {
            caps[CLASSES + o] = (int) Math.clamp((256L << 10) / (PAGE << o), 4, 64); // 64 pages .. 4 of 64 KiB
        }
        return caps;
    }

    // ---------------------------------------------------------------------------------------------
    // magazines and depots
    //
    // Every thread has, per magazine class (a slab class or a small buddy order), a magazine: a LIFO array of free
    // objects' offsets, each slot one atomic word (see Counts). Its owner pops with an exchange to EMPTY and pushes
    // with a release store; any thread may steal a slot with an exchange. A full magazine flushes half of itself as
    // one chain onto the class's depot, a Treiber stack of chains whose heads link through their second word; an empty
    // one refills with one chain from the depot. So a producer and a consumer on two threads meet on the depot's head
    // once per half magazine, not once per object (mimalloc's thread-delayed free and jemalloc's tcache flush do this
    // job with per-owner lists; here any thread's free goes to its own magazine and the depot carries the batch across).
    //
    // A chain of slab objects links them through their first word (an object of 16 bytes has room for no more). A
    // chain of blocks (4 KiB or more) is an array in its first block, as Bonwick's magazines are arrays:
    //
    //   first block:  word 0        word 1              word 2 .. 2+n-1
    //                +-------------+-------------------+------------------------------+
    //                | n (others)  | depot link        | offsets of the other n blocks |
    //                +-------------+-------------------+------------------------------+
    //
    // so a refill reads n + 1 words of one block (independent loads, a few lines), not one word in each of n blocks
    // one after the other (a dependent load per block, each a miss when the blocks were freed on another core), and a
    // flush writes into one block only. n is at most half a magazine (32): 2 + 32 words fit in the smallest block.

    /** {@return a free object or block of class {@code c}: from this thread's magazine, else a depot chain; or EMPTY} */
    private long takeCached(int c, Counts k) {
        long off = k.pop(c);
        if (off != EMPTY) {
            return off;
        }
        long chain = depotPop(c);
        if (chain == EMPTY) {
            return EMPTY;
        }
        // the chain is ours: its words were written before the push's release CAS, which our pop read (acquire)
        if (c >= CLASSES) {
            int n = (int) all.get(LINK, chain);
            for (int i = 0; i < n; i++) {
                if (!k.push(c, all.get(LINK, chain + 16 + 8L * i))) { // cannot happen: chains are at most half of it
                    long[] rest = new long[n - i];
                    for (int x = 0; x < rest.length; x++) {
                        rest[x] = all.get(LINK, chain + 16 + 8L * (i + x));
                    }
                    pushChains(c, rest, 0, rest.length);
                    break;
                }
            }
            return chain;
        }
        long next = all.get(LINK, chain) & LINK_MASK;
        while (next != 0) {
            long o = (next - 1) << 4;
            next = all.get(LINK, o) & LINK_MASK;
            if (!k.push(c, o)) { // longer than the magazine (cannot happen: chains are at most half of it)
                depotPush(c, o); // o still links the rest
                break;
            }
        }
        return chain;
    }

    /** Puts a freed object or block of class {@code c} into this thread's magazine, flushing half of it if full. */
    private void putCached(int c, long off, Counts k) {
        if (!k.push(c, off)) {
            flush(c, k);
            k.push(c, off);
        }
    }

    /** Moves the upper half of this thread's magazine of class {@code c} onto the depot as one chain. */
    private void flush(int c, Counts k) {
        long[] slots = k.mags[c];
        int half = slots.length >>> 1;
        long[] out = k.flushed;
        int n = 0;
        for (int i = half; i < slots.length; i++) {
            long o = (long) SLOT.getAndSet(slots, i, EMPTY); // a thief may have taken it: then EMPTY
            if (o != EMPTY) {
                out[n++] = o;
            }
        }
        k.tops[c] = half;
        if (n == 0) {
            return;
        }
        if (c >= CLASSES && heads.get(c * HEAD_STRIDE + DEPOT_COUNT) >= BLOCK_DEPOT_CHAINS) {
            for (int i = 0; i < n; i++) { // the depot of blocks is bounded: beyond it, blocks go back to the buddy
                buddy.free(out[i], c - CLASSES);
                markDirty(out[i]);
            }
        } else {
            pushChains(c, out, 0, n); // n is at most half the magazine: one chain
        }
    }

    /** Pushes the chain starting at {@code first} (objects linked through their first word, the last's 0). */
    private void depotPush(int c, long first) {
        int at = c * HEAD_STRIDE;
        long link = (first >>> 4) + 1;
        while (true) {
            long h = heads.get(at);
            all.set(LINK, first + 8, h & LINK_MASK); // plain; published by the CAS below (release)
            long stamp = (h >>> STAMP_SHIFT) + 1;
            if (heads.compareAndSet(at, h, (stamp << STAMP_SHIFT) | link)) {
                break;
            }
        }
        if (c >= CLASSES) {
            heads.getAndIncrement(at + DEPOT_COUNT);
        }
    }

    /** {@return the first object of a chain popped off the depot of class {@code c}, now the caller's; or EMPTY} */
    private long depotPop(int c) {
        int at = c * HEAD_STRIDE;
        while (true) {
            long h = heads.get(at); // volatile: acquires the links written before the push's release CAS
            long link = h & LINK_MASK;
            if (link == 0) {
                return EMPTY;
            }
            long off = (link - 1) << 4;
            // benign race: the chain may have been popped (and its memory reused, or its page returned to the buddy)
            // since h was read; then the stamp differs and the CAS fails, whatever was read
            long next = all.get(LINK, off + 8) & LINK_MASK;
            Runnable hook = depotPopHook;
            if (hook != null) {
                hook.run();
            }
            long stamp = (h >>> STAMP_SHIFT) + 1;
            if (heads.compareAndSet(at, h, (stamp << STAMP_SHIFT) | next)) {
                if (c >= CLASSES) {
                    heads.getAndDecrement(at + DEPOT_COUNT);
                }
                return off;
            }
        }
    }

    /**
     * Takes every free object of class {@code c} that sits in the depot or in any thread's magazine (dead threads'
     * included), and adds it to {@code into}: each is then the caller's alone (a stamped CAS empties the depot; each
     * slot is taken with an exchange). Objects being allocated or freed at this moment are in no list, and not taken.
     */
    private void collect(int c, LongBag into) {
        int at = c * HEAD_STRIDE;
        long h;
        do {
            h = heads.get(at);
        } while ((h & LINK_MASK) != 0 && !heads.compareAndSet(at, h, ((h >>> STAMP_SHIFT) + 1) << STAMP_SHIFT));
        long chain = h & LINK_MASK;
        int chains = 0;
        while (chain != 0) {
            long first = (chain - 1) << 4;
            chain = all.get(LINK, first + 8) & LINK_MASK;
            chains++;
            if (c >= CLASSES) { // an array in its first block
                into.add(first);
                int n = (int) all.get(LINK, first);
                for (int i = 0; i < n; i++) {
                    into.add(all.get(LINK, first + 16 + 8L * i));
                }
                continue;
            }
            for (long next = (first >>> 4) + 1; next != 0; ) {
                long o = (next - 1) << 4;
                next = all.get(LINK, o) & LINK_MASK;
                into.add(o);
            }
        }
        if (c >= CLASSES && chains > 0) {
            heads.getAndAdd(at + DEPOT_COUNT, -chains);
        }
        for (Counts k : allCounts) {
            long[] slots = k.mags[c];
            for (int i = 0; i < slots.length; i++) {
                if ((long) SLOT.getOpaque(slots, i) != EMPTY) { // a hint; the exchange decides
                    long o = (long) SLOT.getAndSet(slots, i, EMPTY);
                    if (o != EMPTY) {
                        into.add(o);
                    }
                }
            }
        }
    }

    /** Pushes {@code offs[from, to)} onto the depot of class {@code c} as chains of at most half a magazine. */
    private void pushChains(int c, long[] offs, int from, int to) {
        int half = MAG_CAPACITY[c] >>> 1;
        while (from < to) {
            int end = Math.min(to, from + half);
            if (c >= CLASSES) { // blocks: the count and the others' offsets into the first block (plain; see depotPush)
                long first = offs[from];
                all.set(LINK, first, (long) (end - from - 1));
                for (int i = from + 1; i < end; i++) {
                    all.set(LINK, first + 16 + 8L * (i - from - 1), offs[i]);
                }
                depotPush(c, first);
                from = end;
                continue;
            }
            for (int i = from; i < end - 1; i++) {
                all.set(LINK, offs[i], (offs[i + 1] >>> 4) + 1);
            }
            all.set(LINK, offs[end - 1], 0L);
            depotPush(c, offs[from]);
            from = end;
        }
    }

    /**
     * Gives every wholly free slab page back to the buddy. Per class it takes every free object out of the depot and
     * all magazines ({@link #collect}); a page of which it then holds every object (and whose allocation bits are
     * all clear) is free and nobody else can reach one of its objects: no list holds one, and no thread is between
     * taking one and marking it, or between unmarking one and putting it back (that object would be missing). So the
     * page's record is cleared and it goes back to the buddy; everything else is pushed back as chains. A depot pop
     * that read the old head before the collection fails its stamped CAS, so it cannot hand out an object of a page
     * given back. Safe to run concurrently with everything, itself included (objects split between two collectors
     * only keep their page).
     *
     * @return the pages given back
     */
    private long reclaimSlabs() {
        long returned = 0;
        LongBag bag = new LongBag();
        LongBag rest = new LongBag();
        for (int c = 0; c < CLASSES; c++) {
            bag.n = 0;
            rest.n = 0;
            collect(c, bag);
            if (bag.n == 0) {
                continue;
            }
            java.util.Arrays.sort(bag.a, 0, bag.n);
            int perPage = (int) (PAGE / (SLAB_MIN << c));
            for (int i = 0; i < bag.n; ) {
                long page = bag.a[i] >>> PAGE_SHIFT;
                int j = i + 1;
                while (j < bag.n && bag.a[j] >>> PAGE_SHIFT == page) {
                    j++;
                }
                if (j - i == perPage && bitsClear(page)) {
                    INFO.setRelease(pageInfo, (int) page, 0L); // before the free: the page is a slab page no more
                    buddy.free(page << PAGE_SHIFT, 0);
                    markDirty(page << PAGE_SHIFT);
                    returned++;
                } else {
                    for (int x = i; x < j; x++) {
                        rest.add(bag.a[x]);
                    }
                }
                i = j;
            }
            pushChains(c, rest.a, 0, rest.n);
        }
        slabPagesReturned.addAndGet(returned);
        return returned;
    }

    private boolean bitsClear(long page) {
        int w = (int) (page * 4);
        return ((long) BITS.getVolatile(slabBits, w) | (long) BITS.getVolatile(slabBits, w + 1)
            | (long) BITS.getVolatile(slabBits, w + 2) | (long) BITS.getVolatile(slabBits, w + 3)) == 0;
    }

    /** Gives every block in a depot or a magazine (any thread's) back to the buddy. */
    private void drainBlocks() {
        LongBag bag = new LongBag();
        for (int c = CLASSES; c < MAG_CLASSES; c++) {
            bag.n = 0;
            collect(c, bag);
            for (int i = 0; i < bag.n; i++) {
                buddy.free(bag.a[i], c - CLASSES);
                markDirty(bag.a[i]);
            }
        }
    }

    /** After the buddy said none: takes back what magazines and depots hold (blocks, wholly free slab pages). */
    private void scavenge() {
        drainBlocks();
        reclaimSlabs();
    }

    /** For tests: what {@link #trim()} and a decay pass do to magazines and depots, without punching. */
    long reclaimNow() {
        drainBlocks();
        return reclaimSlabs();
    }

    /** {@return slab pages given back to the buddy so far (by {@link #trim()}, decay passes and failing allocations)} */
    long slabPagesReturned() {
        return slabPagesReturned.get();
    }

    /** {@return the slab class of the page holding this address of the pool's mapping, or -1 if it is no slab page} */
    int slabClassAt(long address) {
        long info = (long) INFO.getAcquire(pageInfo, (int) ((address - poolAddress) >>> PAGE_SHIFT));
        return info < 0 && info != BIG_CHUNK ? (int) (-info - 1) : -1;
    }

    /** A growable list of longs, for the slow paths. */
    private static final class LongBag {
        long[] a = new long[64];
        int n;

        void add(long v) {
            if (n == a.length) {
                a = java.util.Arrays.copyOf(a, n * 2);
            }
            a[n++] = v;
        }
    }

    /** Carves a buddy page into objects of class {@code c}; keeps the first, puts the rest in the magazine and depot. */
    private long carveSlab(int c, Counts k) {
        long pa = buddy.alloc(0);
        if (pa == BlockAllocator.NONE) {
            return EMPTY;
        }
        INFO.setRelease(pageInfo, (int) (pa >>> PAGE_SHIFT), (long) -(1 + c));
        long size = SLAB_MIN << c;
        int n = (int) (PAGE / size);
        int i = 1;
        int half = MAG_CAPACITY[c] >>> 1;
        for (; i < n && i <= half; i++) { // half the magazine: the other half takes frees without a flush
            if (!k.push(c, pa + i * size)) {
                break;
            }
        }
        if (i < n) {
            long[] rest = new long[n - i];
            for (int x = 0; x < rest.length; x++) {
                rest[x] = pa + (i + x) * size;
            }
            pushChains(c, rest, 0, rest.length);
        }
        return pa;
    }

    private MemorySegment allocateBlock(long byteSize, long need, Counts k) {
        int order = Math.max(0, 64 - Long.numberOfLeadingZeros(need - 1) - PAGE_SHIFT);
        long pa = order < BLOCK_CLASSES ? takeCached(CLASSES + order, k) : EMPTY;
        if (pa == EMPTY) {
            pa = buddy.alloc(order);
            if (pa == BlockAllocator.NONE) {
                scavenge(); // blocks parked in magazines and depots, empty slab pages: back to the buddy, once
                pa = buddy.alloc(order);
                if (pa == BlockAllocator.NONE) {
                    return null;
                }
            }
        }
        // 0 bytes are recorded as 1: info 0 means "no block starts here"
        INFO.setRelease(pageInfo, (int) (pa >>> PAGE_SHIFT), ((long) (order + 1) << ORDER_SHIFT) | Math.max(1, byteSize));
        return all.asSlice(pa, byteSize);
    }

    private MemorySegment allocateBig(long byteSize) {
        int n = Math.toIntExact((byteSize + chunkSize - 1) / chunkSize);
        ConcurrentLinkedQueue<Big> q = bigCache.get(n);
        Big b = q == null ? null : q.poll();
        if (b != null) {
            cachedBytes.addAndGet(-b.length);
        } else {
            PoolEvents.Mapping ev = new PoolEvents.Mapping();
            ev.begin();
            b = newBig(n);
            if (b == null) {
                return null;
            }
            ev.end();
            if (ev.shouldCommit()) {
                ev.pool = name;
                ev.bytes = b.length;
                ev.chunks = n;
                int runs = 1;
                for (int i = 1; i < n; i++) {
                    runs += b.chunks[i] == b.chunks[i - 1] + chunkSize ? 0 : 1; // chunks are sorted
                }
                ev.runs = runs;
                ev.commit();
            }
        }
        b.size = byteSize; // volatile: the free that finds it reads it
        return b.view.asSlice(0, byteSize);
    }

    private Big newBig(int n) {
        long length = n * chunkSize;
        long[] chunks = new long[n];
        int got = 0;
        long at = 0;
        try {
            for (; got < n; got++) {
                long pa = buddy.alloc(chunkOrder);
                if (pa == BlockAllocator.NONE) {
                    if (releaseCached(length) && got == 0) {
                        return newBig(n); // the cache gave chunks back: try once more
                    }
                    freeChunks(chunks, got);
                    return null;
                }
                chunks[got] = pa;
                // marks the chunk as a large mapping's: a decay pass skips it without asking the buddy
                INFO.setRelease(pageInfo, (int) (pa >>> PAGE_SHIFT), BIG_CHUNK);
                DIRTY.setOpaque(dirty, (int) (pa >>> chunkShift), 0L); // the mapping's dirtyAt tracks it from now
            }
            java.util.Arrays.sort(chunks);
            List<HostMapper.Run> runs = new ArrayList<>();
            long runStart = chunks[0];
            long runOff = 0;
            for (int i = 1; i <= n; i++) {
                if (i == n || chunks[i] != chunks[i - 1] + chunkSize) {
                    long len = chunks[i - 1] + chunkSize - runStart;
                    runs.add(new HostMapper.Run(runOff, runStart, len));
                    runOff += len;
                    if (i < n) {
                        runStart = chunks[i];
                    }
                }
            }
            at = mapper.reserve(length, chunkSize);
            HostMapping m = mapper.map(at, length, HostMapper.PROT_READ | HostMapper.PROT_WRITE, memory, runs);
            Big b = new Big(at, length, chunks, m, ((FfmHostMapping) m).segment());
            bigs.put(at, b);
            mappings.incrementAndGet();
            return b;
        } catch (RuntimeException | Error e) {
            if (at != 0) {
                mapper.release(at, length);
            }
            freeChunks(chunks, got);
            throw e;
        }
    }

    private void freeChunks(long[] chunks, int count) {
        for (int i = 0; i < count; i++) {
            INFO.setRelease(pageInfo, (int) (chunks[i] >>> PAGE_SHIFT), 0L);
            buddy.free(chunks[i], chunkOrder);
        }
    }

    // ---------------------------------------------------------------------------------------------
    // free

    /**
     * Frees a segment this pool allocated (not one of an {@link Arena} of it: closing the arena frees those). Any
     * thread may free it.
     *
     * @param segment a segment from {@link #allocate(long, long)}, {@link #allocateUninitialized} or
     *                {@link #tryAllocate}
     * @throws IllegalArgumentException if the segment is not one this pool handed out (another pool's, a slice
     *                                  of one, a segment of one of this pool's arenas); nothing changed
     * @throws IllegalStateException    if it was freed already, or the pool is closed; nothing changed
     */
    public void free(MemorySegment segment) {
        Objects.requireNonNull(segment, "segment");
        checkOpen();
        if (!segment.isNative()) {
            throw new IllegalArgumentException("segment=" + segment + " is a heap segment, not from pool '" + name + "'");
        }
        long address = segment.address();
        if (segment.scope() != poolScope) { // identity: every slice of a mapping shares its scope object
            Big b = bigs.get(address);
            if (b == null || segment.scope() != b.view.scope()) {
                LeakTracker.SegmentTrack t = leaks == null ? null : leaks.find(segment.scope());
                if (t != null) {
                    freeTracked(t, segment);
                    return;
                }
                throw new IllegalArgumentException("segment at 0x" + Long.toHexString(address) + " byteSize="
                    + segment.byteSize() + " is not from pool '" + name + "' (another pool's or allocator's, or a pool"
                    + " arena's: closing the arena frees those)");
            }
        }
        release(address, segment.byteSize());
    }

    private void freeTracked(LeakTracker.SegmentTrack t, MemorySegment segment) {
        if (t.freed()) {
            throw new IllegalStateException("double free: the segment at 0x" + Long.toHexString(t.address) + " (byteSize="
                + t.byteSize + ") of pool '" + name + "' was freed already");
        }
        if (segment.address() != t.address || segment.byteSize() != t.byteSize) {
            throw new IllegalArgumentException("segment at 0x" + Long.toHexString(segment.address()) + " byteSize="
                + segment.byteSize() + " is a slice of the segment at 0x" + Long.toHexString(t.address) + " of "
                + t.byteSize + " bytes: free the segment allocate returned");
        }
        if (!t.claimFree()) { // before the release: once the memory is back, a collection must not reclaim it again
            throw new IllegalStateException("double free: the segment at 0x" + Long.toHexString(t.address)
                + " (byteSize=" + t.byteSize + ") of pool '" + name + "' was freed concurrently");
        }
        try {
            release(t.address, t.byteSize);
        } catch (RuntimeException | Error e) {
            t.unclaimFree();
            throw e;
        } finally {
            java.lang.ref.Reference.reachabilityFence(segment); // its scope stays reachable until the claim is made
        }
    }

    /**
     * Gives back the memory of a tracked segment whose scope was collected while it was live (on the cleaner thread):
     * no view can reach it. Under {@link #reclaimLock}, which {@link #close()} takes to set {@link #closed}: a reclaim
     * either completes before the close begins or sees the pool closed and does nothing.
     */
    private void reclaimLeaked(long address, long byteSize) {
        synchronized (reclaimLock) {
            if (closed) {
                return;
            }
            try {
                release(address, byteSize);
                reclaimedLeaks.incrementAndGet();
            } catch (RuntimeException e) {
                System.getLogger(SegmentPool.class.getName()).log(System.Logger.Level.WARNING,
                    "could not reclaim a leaked segment of pool '" + name + "'", e);
            }
        }
    }

    /**
     * Frees the segments of a pool arena that was dropped unclosed, once no view of them is reachable (the arena's
     * JDK scope was collected), and lets go of its pin; see {@link #reclaimLeaked}.
     */
    void reclaimArena(PoolArena.Books books) {
        synchronized (reclaimLock) {
            RuntimeException e = books.releaseAll(this); // after the pool's close: only unpins
            if (e != null) {
                System.getLogger(SegmentPool.class.getName()).log(System.Logger.Level.WARNING,
                    "could not reclaim a segment of a leaked arena of pool '" + name + "'", e);
            }
            if (!closed) {
                reclaimedLeaks.incrementAndGet();
            }
        }
    }

    /** {@return leaked segments and arenas whose memory was given back so far} */
    long reclaimedLeaks() {
        return reclaimedLeaks.get();
    }

    /** Frees by address and size: {@link #free}'s body, and an arena's bulk free. */
    void release(long address, long byteSize) {
        long off = address - poolAddress;
        if (off >= 0 && off < capacity) {
            long info = (long) INFO.getAcquire(pageInfo, (int) (off >>> PAGE_SHIFT));
            int cls;
            Counts k = counts.get();
            if (info == BIG_CHUNK) {
                throw notMine(off, byteSize);
            } else if (info < 0) {
                freeSmall(off, byteSize, (int) (-info - 1), k);
                cls = SMALL;
            } else {
                freeBlock(off, byteSize, info, k);
                cls = BLOCK;
            }
            tick(k, -byteSize, -1, cls);
        } else {
            freeBig(address, byteSize);
            tick(counts.get(), -byteSize, -1, LARGE);
        }
    }

    /**
     * Counts an operation on the calling thread, and on every {@value #DECAY_CHECK_OPS}th reads the clock for decay
     * and live counters.
     */
    private void tick(Counts c, long bytes, long segments, int cls) {
        c.add(bytes, segments, cls);
        if ((++c.ops & (DECAY_CHECK_OPS - 1)) == 0 && clockChecks) {
            periodic();
        }
    }

    /** A decay pass and a publication of the live counters, each if due. */
    private void periodic() {
        long now = clock.getAsLong();
        if (decayNanos >= 0) {
            maybeDecay(now);
        }
        if (counters != null && now - nextPublish >= 0 && publishing.compareAndSet(0, 1)) {
            try {
                nextPublish = now + PUBLISH_INTERVAL;
                publishCounters(snapshot());
            } finally {
                publishing.set(0);
            }
        }
    }

    private void publishCounters(Stats st) {
        long small = 0;
        long block = 0;
        long large = 0;
        for (Counts c : allCounts) {
            small += (long) Counts.SMALL_BYTES.getOpaque(c);
            block += (long) Counts.BLOCK_BYTES.getOpaque(c);
            large += (long) Counts.LARGE_BYTES.getOpaque(c);
        }
        long[] v = new long[PoolCounters.Counter.values().length];
        v[PoolCounters.Counter.ALLOCATIONS.ordinal()] = st.allocations();
        v[PoolCounters.Counter.FREES.ordinal()] = st.allocations() - st.liveSegments();
        v[PoolCounters.Counter.LIVE_SEGMENTS.ordinal()] = st.liveSegments();
        v[PoolCounters.Counter.ALLOCATED_BYTES.ordinal()] = st.allocatedBytes();
        v[PoolCounters.Counter.SMALL_BYTES.ordinal()] = small;
        v[PoolCounters.Counter.BLOCK_BYTES.ordinal()] = block;
        v[PoolCounters.Counter.LARGE_BYTES.ordinal()] = large;
        v[PoolCounters.Counter.CACHED_BYTES.ordinal()] = st.cachedBytes();
        v[PoolCounters.Counter.RESIDENT_BYTES.ordinal()] = st.residentBytes();
        v[PoolCounters.Counter.MAPPINGS.ordinal()] = st.mappings();
        v[PoolCounters.Counter.TRIMS.ordinal()] = st.trims();
        v[PoolCounters.Counter.TRIMMED_BYTES.ordinal()] = st.trimmedBytes();
        v[PoolCounters.Counter.DECAYED_BYTES.ordinal()] = st.decayedBytes();
        v[PoolCounters.Counter.DECAY_PASSES.ordinal()] = st.decayPasses();
        v[PoolCounters.Counter.FAILURES.ordinal()] = st.failures();
        v[PoolCounters.Counter.CAPACITY.ordinal()] = capacity;
        counters.publish(v);
    }

    private void freeSmall(long off, long byteSize, int c, Counts k) {
        long size = SLAB_MIN << c;
        // a small request with a larger alignment lives in a larger class: any size up to the class is accepted
        if ((off & (size - 1)) != 0 || byteSize > size) {
            throw notMine(off, byteSize);
        }
        long page = off >>> PAGE_SHIFT;
        int obj = (int) ((off & (PAGE - 1)) >>> (4 + c));
        long bit = 1L << (obj & 63);
        long old = (long) BITS.getAndBitwiseAnd(slabBits, (int) (page * 4 + (obj >>> 6)), ~bit);
        if ((old & bit) == 0) {
            throw new IllegalStateException("double free: the " + size + "-byte object at offset " + off + " of pool '"
                + name + "' is not allocated");
        }
        putCached(c, off, k);
    }

    private void freeBlock(long off, long byteSize, long info, Counts k) {
        if (info == 0 || (off & (PAGE - 1)) != 0 || (info & SIZE_MASK) != Math.max(1, byteSize)) {
            throw notMine(off, byteSize);
        }
        if ((info & FREED) != 0 || !INFO.compareAndSet(pageInfo, (int) (off >>> PAGE_SHIFT), info, info | FREED)) {
            // the CAS decides between racing frees of one block: exactly one wins
            throw new IllegalStateException("double free: the block at offset " + off + " (byteSize=" + byteSize
                + ") of pool '" + name + "' is not allocated");
        }
        int order = (int) ((info >>> ORDER_SHIFT) & 0x3fff) - 1;
        if (order < BLOCK_CLASSES) {
            putCached(CLASSES + order, off, k); // the buddy still counts it allocated; FREED marks it free for us
        } else {
            buddy.free(off, order);
        }
        // after the free: a pass that clears the mark after this reads it finds the block free (a pass drains the
        // magazines and depots into the buddy before it looks at the marks)
        markDirty(off);
    }

    private void freeBig(long address, long byteSize) {
        Big b = bigs.get(address);
        if (b == null) {
            throw new IllegalArgumentException("segment at 0x" + Long.toHexString(address) + " byteSize=" + byteSize
                + " is not from pool '" + name + "' (another pool's, a slice, or never allocated)");
        }
        long live = b.size;
        if (live == 0) {
            throw new IllegalStateException("double free: the large segment at 0x" + Long.toHexString(address)
                + " of pool '" + name + "' is not allocated");
        }
        if (live != byteSize) {
            throw new IllegalArgumentException("segment at 0x" + Long.toHexString(address) + " byteSize=" + byteSize
                + " is a slice of the large segment of " + live + " bytes: free the segment allocate returned");
        }
        if (!Big.SIZE.compareAndSet(b, live, 0L)) {
            throw new IllegalStateException("double free: the large segment at 0x" + Long.toHexString(address)
                + " was freed concurrently");
        }
        if (decayNanos >= 0) {
            b.dirtyAt = stamp(); // used since its last punch
        }
        if (cachedBytes.addAndGet(b.length) <= cacheBudget) {
            bigCache.computeIfAbsent(b.chunks.length, k -> new ConcurrentLinkedQueue<>()).offer(b);
        } else {
            cachedBytes.addAndGet(-b.length);
            releaseBig(b, false);
        }
    }

    private void releaseBig(Big b, boolean punch) {
        bigs.remove(b.address);
        retire(b); // its chunks go back to the buddy now; its address range once no tracked view pins it
        boolean clean = b.dirtyAt == 0 && decayNanos >= 0; // punched by a pass since its last use: stays clean
        for (long pa : b.chunks) {
            if (punch) {
                punch(pa, chunkSize);
            }
            INFO.setRelease(pageInfo, (int) (pa >>> PAGE_SHIFT), 0L);
            buddy.free(pa, chunkOrder);
            if (!punch && !clean) {
                markDirty(pa);
            }
        }
    }

    /** Releases cached large mappings until at least {@code bytes} were given back, or the cache is empty. */
    private boolean releaseCached(long bytes) {
        long done = 0;
        for (ConcurrentLinkedQueue<Big> q : bigCache.values()) {
            Big b;
            while (done < bytes && (b = q.poll()) != null) {
                cachedBytes.addAndGet(-b.length);
                releaseBig(b, false);
                done += b.length;
            }
        }
        return done > 0;
    }

    private IllegalArgumentException notMine(long off, long byteSize) {
        return new IllegalArgumentException("segment at offset " + off + " byteSize=" + byteSize + " of pool '" + name
            + "' is not a segment this pool handed out (a slice of one, or never allocated)");
    }

    // ---------------------------------------------------------------------------------------------
    // arenas, trim, stats, close

    /** {@return a new confined arena of this pool: zeroed segments, scoped to it, all freed at its close} */
    public Arena newArena() {
        checkOpen();
        return new PoolArena(this, false);
    }

    /** {@return a new shared arena of this pool (its close is a handshake with every thread, as {@link Arena#ofShared()})} */
    public Arena newSharedArena() {
        checkOpen();
        return new PoolArena(this, true);
    }

    /**
     * Gives memory back to the system now: releases every cached large mapping, gives the blocks parked in magazines
     * and depots and every wholly free slab page back to the buddy, and punches every free run of pages out of the
     * memfd ({@code fallocate(PUNCH_HOLE)}; the pages then read as zeros). Pages holding a live slab object stay
     * resident. While it runs, an allocation may fail transiently (each free piece is taken from the buddy for the
     * time of its punch).
     *
     * @return the bytes punched
     * @throws IllegalStateException if the pool is closed
     */
    public long trim() {
        checkOpen();
        trims.incrementAndGet();
        PoolEvents.Trim ev = new PoolEvents.Trim();
        ev.begin();
        while (!passing.compareAndSet(0, 1)) { // a decay pass runs: it ends soon
            Thread.onSpinWait();
        }
        long punched = 0;
        int released = 0;
        try {
            for (ConcurrentLinkedQueue<Big> q : bigCache.values()) {
                Big b;
                while ((b = q.poll()) != null) {
                    cachedBytes.addAndGet(-b.length);
                    releaseBig(b, false);
                    released++;
                }
            }
            drainBlocks();
            reclaimSlabs();
            buddy.releaseThreadCache();
            for (int k = 0; k < dirty.length; k++) {
                DIRTY.setVolatile(dirty, k, 0L);
                punched += punchFree(k);
            }
        } finally {
            passing.set(0);
        }
        trimmedBytes.addAndGet(punched);
        ev.end();
        if (ev.shouldCommit()) {
            ev.pool = name;
            ev.punchedBytes = punched;
            ev.releasedMappings = released;
            ev.commit();
        }
        return punched;
    }

    // ---------------------------------------------------------------------------------------------
    // decay

    /** {@return the decay clock's time, never 0 (0 means clean)} */
    private long stamp() {
        long t = clock.getAsLong();
        return t == 0 ? 1 : t;
    }

    /** Records that memory in the chunk holding {@code off} was freed now, unless it is dirty already. */
    private void markDirty(long off) {
        if (decayNanos < 0) {
            return;
        }
        int k = (int) (off >>> chunkShift);
        // volatile, after the buddy's free: a pass clears the mark (volatile CAS) before it looks at the chunk, so
        // either this read sees the cleared mark and sets it again, or the pass's look comes after this free
        if ((long) DIRTY.getVolatile(dirty, k) == 0) { // the clock is read only on a chunk's clean -> dirty transition
            DIRTY.compareAndSet(dirty, k, 0L, stamp()); // a lost race leaves the winner's stamp, as early as ours
        }
    }

    /** Runs a decay pass if a quarter of the decay time has passed since the last and no pass or trim runs. */
    private void maybeDecay(long now) {
        if (now - nextPass < 0 || !passing.compareAndSet(0, 1)) {
            return;
        }
        try {
            if (!closed) {
                nextPass = now + passInterval;
                PoolEvents.Decay ev = new PoolEvents.Decay();
                ev.begin();
                long punched = decayPass(now);
                decayedBytes.addAndGet(punched);
                ev.end();
                if (ev.shouldCommit()) {
                    ev.pool = name;
                    ev.punchedBytes = punched;
                    ev.commit();
                }
            }
        } catch (RuntimeException e) {
            // the operation that ran the pass succeeded: it must not fail for the pass; the memory stays dirty
            System.getLogger(SegmentPool.class.getName()).log(System.Logger.Level.WARNING,
                "decay pass of pool '" + name + "' failed; the memory stays resident until trim()", e);
        } finally {
            passing.set(0);
        }
    }

    /**
     * Punches every dirty chunk freed at least the decay time before {@code now} that is wholly free, and the chunks
     * of every cached large mapping freed that long ago. A chunk is taken whole from the buddy ({@code allocAt}) for the
     * time of its punch, a cached mapping removed from its queue: no allocation can see either meanwhile. A chunk
     * still partly allocated stays dirty and is tried again by a later pass.
     *
     * @return bytes punched
     */
    private long decayPass(long now) {
        passes.incrementAndGet();
        drainBlocks(); // first: a block freed into a magazine marked its chunk, and must be free when it is walked
        reclaimSlabs();
        long punched = 0;
        for (int k = 0; k < dirty.length; k++) {
            long d = (long) DIRTY.getVolatile(dirty, k);
            if (d != 0 && now - d >= decayNanos && DIRTY.compareAndSet(dirty, k, d, 0L)) {
                punched += punchFree(k); // a free into the chunk from now on marks it again
            }
        }
        for (ConcurrentLinkedQueue<Big> q : bigCache.values()) {
            for (Big b : q) {
                long d = b.dirtyAt;
                if (d != 0 && now - d >= decayNanos && q.remove(b)) { // remove: exactly one of it and a poll wins
                    for (long pa : b.chunks) {
                        punch(pa, chunkSize);
                    }
                    b.dirtyAt = 0;
                    punched += b.length;
                    q.offer(b);
                }
            }
        }
        return punched;
    }

    /**
     * Punches the free memory of chunk {@code k}: walks its pages by their infos, skipping each live block (by its
     * order) and each slab page, and cuts every run of other pages into aligned power-of-two blocks, each taken from
     * the buddy with {@code allocAt} for the time of its punch (so that no allocation sees it meanwhile). A block the
     * buddy refuses (allocated since the walk read its pages) is skipped. A chunk of a large mapping is skipped whole.
     *
     * @return bytes punched
     */
    private long punchFree(int k) {
        int pagesPerChunk = (int) (chunkSize >>> PAGE_SHIFT);
        int first = k * pagesPerChunk;
        int end = first + pagesPerChunk;
        long punched = 0;
        int run = -1;
        for (int p = first; p < end; ) {
            long info = (long) INFO.getAcquire(pageInfo, p);
            int live;
            if (info == BIG_CHUNK) {
                return punched; // only on a chunk's first page: the whole chunk is a large mapping's
            } else if (info < 0) {
                live = 1; // a slab page
            } else if (info > 0 && (info & FREED) == 0) {
                live = 1 << ((int) ((info >>> ORDER_SHIFT) & 0x3fff) - 1); // a live block of that order
            } else {
                live = 0;
            }
            if (live == 0) {
                if (run < 0) {
                    run = p;
                }
                p++;
            } else {
                if (run >= 0) {
                    punched += punchRun(run, p);
                    run = -1;
                }
                p += live;
            }
        }
        if (run >= 0) {
            punched += punchRun(run, end);
        }
        return punched;
    }

    /** Punches the free pages {@code [from, to)} as the largest aligned blocks that tile them. */
    private long punchRun(int from, int to) {
        long punched = 0;
        while (from < to) {
            int order = Math.min(Math.min(Integer.numberOfTrailingZeros(from), 31 - Integer.numberOfLeadingZeros(to - from)),
                chunkOrder);
            long pa = (long) from << PAGE_SHIFT;
            if (buddy.allocAt(pa, order)) {
                try {
                    punch(pa, PAGE << order);
                    punched += PAGE << order;
                } finally {
                    buddy.free(pa, order);
                }
            }
            from += 1 << order;
        }
        return punched;
    }

    private void punch(long pa, long length) {
        int fd = memory.fd().orElseThrow();
        if (Libc.hasPunchHole()) {
            Libc.punchHole(fd, pa, length);
        }
    }

    /**
     * What the pool holds.
     *
     * @param capacity       the pool's bytes
     * @param allocatedBytes bytes of live segments, as asked for
     * @param liveSegments   live segments
     * @param cachedBytes    bytes of large mappings kept for reuse
     * @param residentBytes  bytes of the memfd backed by pages (data, not holes)
     * @param mappings       large mappings ever made (each a few system calls)
     * @param trimmedBytes   bytes punched by {@link #trim()} so far
     * @param decayedBytes   bytes punched by decay passes so far
     * @param decayPasses    decay passes run so far
     * @param allocations    segments allocated so far (frees: this minus {@code liveSegments})
     * @param failures       allocations that found no room so far
     * @param trims          calls of {@link #trim()} so far
     */
    public record Stats(long capacity, long allocatedBytes, long liveSegments, long cachedBytes, long residentBytes,
                        long mappings, long trimmedBytes, long decayedBytes, long decayPasses, long allocations,
                        long failures, long trims) {
    }

    /**
     * With live counters on, also publishes them (what the counters file shows is then this snapshot until the next
     * publication).
     *
     * @return counters and the resident size (walking the memfd's data extents with {@code lseek})
     */
    public Stats stats() {
        checkOpen();
        if (counters == null) {
            return snapshot();
        }
        while (!publishing.compareAndSet(0, 1)) { // a periodic publication runs: it ends soon
            checkOpen(); // or the pool closed and holds it for good
            Thread.onSpinWait();
        }
        try {
            Stats st = snapshot();
            publishCounters(st);
            return st;
        } finally {
            publishing.set(0);
        }
    }

    private Stats snapshot() {
        long bytes = 0;
        long live = 0;
        long allocs = 0;
        for (Counts c : allCounts) {
            bytes += (long) Counts.BYTES.getOpaque(c);
            live += (long) Counts.SEGMENTS.getOpaque(c);
            allocs += (long) Counts.ALLOCS.getOpaque(c);
        }
        return new Stats(capacity, bytes, live, cachedBytes.get(), residentBytes(), mappings.get(), trimmedBytes.get(),
            decayedBytes.get(), passes.get(), allocs, failures.get(), trims.get());
    }

    /** {@return the live counters' file, if counters are on} */
    public java.util.Optional<Path> countersFile() {
        return counters == null ? java.util.Optional.empty() : java.util.Optional.of(counters.file());
    }

    private Counts newCounts() {
        Counts c = new Counts();
        allCounts.add(c);
        return c;
    }

    /**
     * One thread's counts: written only by that thread (opaque stores, no fence), read by {@link #stats()} with
     * opaque loads. The race is benign: a sum over threads is exact once the threads' operations happen-before the
     * read (e.g. after a join), and otherwise a best-effort snapshot, as documented on {@link #stats()}. Counts of
     * terminated threads stay in the list (a few words per thread that ever used the pool). It also holds the thread's
     * magazines, which other threads may steal from (see {@link #mags}); what a terminated thread's magazines hold is
     * collected by the next trim, decay pass or failing allocation.
     */
    private static final class Counts {
        static final VarHandle BYTES;
        static final VarHandle SEGMENTS;
        static final VarHandle ALLOCS;
        static final VarHandle SMALL_BYTES;
        static final VarHandle BLOCK_BYTES;
        static final VarHandle LARGE_BYTES;

        static {
            try {
                MethodHandles.Lookup l = MethodHandles.lookup();
                BYTES = l.findVarHandle(Counts.class, "bytes", long.class);
                SEGMENTS = l.findVarHandle(Counts.class, "segments", long.class);
                ALLOCS = l.findVarHandle(Counts.class, "allocs", long.class);
                SMALL_BYTES = l.findVarHandle(Counts.class, "small", long.class);
                BLOCK_BYTES = l.findVarHandle(Counts.class, "block", long.class);
                LARGE_BYTES = l.findVarHandle(Counts.class, "large", long.class);
            } catch (ReflectiveOperationException e) {
                throw new ExceptionInInitializerError(e);
            }
        }

        long bytes;
        long segments;
        long allocs;
        long small;
        long block;
        long large;
        /** Operations of this thread: plain, only this thread reads or writes it. */
        int ops;
        /**
         * This thread's magazines, one per magazine class: a slot holds a free object's offset or {@link #EMPTY}. Only
         * the owner writes a non-empty value (a release store into a slot at or above its top, which is empty: every
         * taker leaves {@link #EMPTY}); the owner pops and any thread steals with an exchange to {@link #EMPTY}, so
         * exactly one thread gets each object.
         */
        final long[][] mags = new long[MAG_CLASSES][];
        /** Per class: slots at or above it are empty; below it they hold objects unless stolen. Owner only. */
        final int[] tops = new int[MAG_CLASSES];
        /** A flush's scratch: the objects it took out of the magazine. Owner only. */
        final long[] flushed = new long[64];

        Counts() {
            for (int c = 0; c < MAG_CLASSES; c++) {
                mags[c] = new long[MAG_CAPACITY[c]];
                java.util.Arrays.fill(mags[c], EMPTY);
            }
        }

        /** Owner only: {@return the most recently put object of class {@code c}, now the caller's; or EMPTY} */
        long pop(int c) {
            long[] slots = mags[c];
            int t = tops[c];
            while (t > 0) {
                long o = (long) SLOT.getAndSet(slots, --t, EMPTY); // EMPTY: a thief took it
                if (o != EMPTY) {
                    tops[c] = t;
                    return o;
                }
            }
            tops[c] = 0;
            return EMPTY;
        }

        /** Owner only: {@return whether {@code o} went into the magazine of class {@code c} (false: it is full)} */
        boolean push(int c, long o) {
            long[] slots = mags[c];
            int t = tops[c];
            if (t == slots.length) {
                return false;
            }
            SLOT.setRelease(slots, t, o);
            tops[c] = t + 1;
            return true;
        }

        void add(long b, long n, int cls) {
            BYTES.setOpaque(this, bytes + b);
            SEGMENTS.setOpaque(this, segments + n);
            if (n > 0) {
                ALLOCS.setOpaque(this, allocs + n);
            }
            switch (cls) {
                case SMALL -> SMALL_BYTES.setOpaque(this, small + b);
                case BLOCK -> BLOCK_BYTES.setOpaque(this, block + b);
                default -> LARGE_BYTES.setOpaque(this, large + b);
            }
        }
    }

    private long residentBytes() {
        int fd = memory.fd().orElse(-1);
        if (fd < 0 || !Libc.hasSeekData()) {
            return -1;
        }
        long resident = 0;
        long at = 0;
        while (at < capacity) {
            long data = Libc.seekData(fd, at, Libc.SEEK_DATA);
            if (data < 0 || data >= capacity) {
                break;
            }
            long hole = Libc.seekData(fd, data, Libc.SEEK_HOLE);
            resident += Math.min(hole, capacity) - data;
            at = hole;
        }
        return resident;
    }

    /** {@return whether {@link #close()} has run} */
    public boolean isClosed() {
        return closed;
    }

    /**
     * Unmaps everything and closes the memfd. Idempotent. Every segment of the pool ends: an access after it fails
     * with FFM's {@link IllegalStateException} ("Already closed"). Must not race with other operations.
     */
    @Override
    public void close() {
        if (!state.compareAndSet(0, 1)) {
            return;
        }
        synchronized (reclaimLock) { // a reclaim of leaked memory under way ends first; later ones see closed
            closed = true;
        }
        if (decayThread != null) {
            LockSupport.unpark(decayThread);
            boolean interrupted = false;
            while (decayThread.isAlive()) {
                try {
                    decayThread.join();
                } catch (InterruptedException e) {
                    interrupted = true; // finish closing: the thread ends within one pass
                }
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
        if (counters != null) {
            while (!publishing.compareAndSet(0, 2)) { // held for good: no publication can write the unmapped file
                Thread.onSpinWait();
            }
            counters.close();
        }
        if (leaks != null) {
            leaks.poolClosed();
            viewArena.close(); // untracked views end here even if tracked ones keep the mapping for a while
        }
        for (Big b : bigs.values()) {
            retire(b);
        }
        bigCache.clear(); // bigs stays: an open pool arena's close still finds and unpins its large mappings
        retireMain();
        buddy.close();
        memory.close();
    }

    /**
     * Ends a large mapping's views and unmaps it, now or, if a tracked view of it may still be reachable, when the
     * last such view is collected. Exactly one of this and {@link #unpin(Big)} does it: each writes its flag or count
     * (volatile) and then reads the other's, so at least one sees both done, and the CAS on {@code retired} picks one.
     */
    private void retire(Big b) {
        b.retiring = true;
        if (b.pins.get() == 0 && b.retired.compareAndSet(0, 1)) {
            b.mapping.close(); // ends every view (a handshake), then PROT_NONE
            mapper.release(b.address, b.length);
        }
    }

    private void unpin(Big b) {
        if (b.pins.decrementAndGet() == 0 && b.retiring && b.retired.compareAndSet(0, 1)) {
            b.mapping.close();
            mapper.release(b.address, b.length);
        }
    }

    /** As {@link #retire(Big)}, for the pool's one mapping at close. */
    private void retireMain() {
        mainRetiring = true;
        if (mainPins.get() == 0 && mainRetired.compareAndSet(0, 1)) {
            poolMapping.close();
            mapper.release(poolAddress, capacity);
        }
    }

    private void unpinMain() {
        if (mainPins.decrementAndGet() == 0 && mainRetiring && mainRetired.compareAndSet(0, 1)) {
            poolMapping.close();
            mapper.release(poolAddress, capacity);
        }
    }

    void checkOpen() {
        if (closed) {
            throw new IllegalStateException("already closed: pool '" + name + "'");
        }
    }

    @Override
    public String toString() {
        return "SegmentPool{name=" + name + ", capacity=" + capacity + ", chunkSize=" + chunkSize
            + (closed ? ", closed" : "") + '}';
    }

    /** A large segment's mapping: scattered chunks mapped contiguously. */
    private static final class Big {
        static final VarHandle SIZE;

        static {
            try {
                SIZE = MethodHandles.lookup().findVarHandle(Big.class, "size", long.class);
            } catch (ReflectiveOperationException e) {
                throw new ExceptionInInitializerError(e);
            }
        }

        final long address;
        final long length;
        final long[] chunks;
        final HostMapping mapping;
        final MemorySegment view;
        /** The live segment's byte size; 0 while cached. */
        volatile long size;
        /** Tracked views of it whose scope is not yet collected: its unmap waits for them. */
        final AtomicInteger pins = new AtomicInteger();
        /** Set once it is to be unmapped; {@link #retired} once it is. */
        volatile boolean retiring;
        final AtomicInteger retired = new AtomicInteger();
        /** While cached: the clock's time of its free (never 0), or 0 once a decay pass punched its chunks. */
        volatile long dirtyAt;

        Big(long address, long length, long[] chunks, HostMapping mapping, MemorySegment view) {
            this.address = address;
            this.length = length;
            this.chunks = chunks;
            this.mapping = mapping;
            this.view = view;
        }
    }
}
