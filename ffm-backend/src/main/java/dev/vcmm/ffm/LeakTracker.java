package dev.vcmm.ffm;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.ref.Cleaner;
import java.util.WeakHashMap;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

/**
 * A {@link SegmentPool}'s leak detection (see {@link LeakLevel}); absent when it is {@link LeakLevel#DISABLED}.
 *
 * <h2>What "dropped" means</h2>
 * A {@link MemorySegment} is a value-based object: copies and slices of it are equal views, and the object a caller
 * got from {@code allocate} may die while a slice of it lives on. What every view of a segment shares is its
 * <em>scope</em>. So a tracked segment is given a scope of its own: the pool's segment is
 * {@link MemorySegment#reinterpret(Arena, Consumer) reinterpreted} into a fresh automatic arena, with a cleanup
 * action that the JDK runs once that scope is unreachable, that is once no view of the segment is left anywhere.
 * If the segment was neither freed nor ended by the pool's close by then, it leaked. An arena is tracked as the
 * {@code PoolArena} object itself (its owner needs it to close it): registered with a {@link Cleaner}, reported if it
 * becomes unreachable unclosed, whether or not views of its segments live on (the arena can no longer be closed).
 *
 * <p><b>Thread-safety:</b> all methods may be called from any thread. Tracked segments are looked up by scope in a
 * {@link WeakHashMap} (identity: a scope does not override {@code equals}) under its monitor; only sampled
 * allocations and frees of tracked segments take it. Reports come from cleaner threads.
 */
final class LeakTracker {

    private final String pool;
    private final LeakLevel level;
    private final int interval;
    private final LeakListener listener;
    /** Tracked segments, live or freed, by their scope; an entry goes when its scope is collected. Guarded by itself. */
    private final WeakHashMap<MemorySegment.Scope, SegmentTrack> segments = new WeakHashMap<>();
    private final AtomicLong tracked = new AtomicLong();
    private final AtomicLong reported = new AtomicLong();
    private volatile boolean poolClosed;

    LeakTracker(String pool, LeakLevel level, int interval, LeakListener listener) {
        this.pool = pool;
        this.level = level;
        this.interval = interval;
        this.listener = listener;
    }

    /** @return whether to track this allocation: always when paranoid, one in {@code interval} at random when simple */
    boolean sample() {
        return level == LeakLevel.PARANOID || ThreadLocalRandom.current().nextInt(interval) == 0;
    }

    /**
     * @param segment the pool's segment
     * @param unpin   run once the tracked segment's scope is collected (after any report)
     * @return a view of {@code segment} with a scope of its own, tracked
     */
    MemorySegment track(MemorySegment segment, Runnable reclaim, Runnable unpin) {
        SegmentTrack t = new SegmentTrack(this, segment.address(), segment.byteSize(),
            new AllocationSite("segment of " + segment.byteSize() + " bytes allocated from pool '" + pool + "'"), reclaim,
            unpin);
        MemorySegment view = segment.reinterpret(Arena.ofAuto(), t); // t must not reach the scope: it would never die
        synchronized (segments) {
            segments.put(view.scope(), t);
        }
        tracked.incrementAndGet();
        return view;
    }

    /** @return the track of the segment whose scope this is, freed or not; null if none is tracked with it */
    SegmentTrack find(MemorySegment.Scope scope) {
        synchronized (segments) {
            return segments.get(scope);
        }
    }

    /** @return a handle the arena closes; the arena object's reachability is what is watched */
    ArenaTrack trackArena(Object arena) {
        ArenaTrack t = new ArenaTrack(this, new AllocationSite("arena of pool '" + pool + "' opened"));
        t.cleanable = CleanerHolder.CLEANER.register(arena, t);
        tracked.incrementAndGet();
        return t;
    }

    /** Every segment and arena still live ends with the pool: none of them is reported from now on. */
    void poolClosed() {
        poolClosed = true;
    }

    /** @return allocations tracked so far (segments and arenas) */
    long tracked() {
        return tracked.get();
    }

    /** @return leaks reported so far */
    long reported() {
        return reported.get();
    }

    private void report(LeakReport.Kind kind, long address, long bytes, Throwable site) {
        reported.incrementAndGet();
        try {
            listener.leaked(new LeakReport(pool, kind, address, bytes, site));
        } catch (RuntimeException | Error e) {
            // a listener must not throw (we run on a cleaner thread); dropped, as documented on LeakListener
        }
    }

    /**
     * Runs {@code action} on the cleaner thread once {@code watched} is unreachable, or when the returned handle is
     * cleaned, whichever comes first (once).
     *
     * @param watched what is watched; {@code action} must not reach it
     * @param action  what to run
     * @return the handle
     */
    static Cleaner.Cleanable whenUnreachable(Object watched, Runnable action) {
        return CleanerHolder.CLEANER.register(watched, action);
    }

    private static final class CleanerHolder {
        /** One daemon thread, started on first use: only when some pool tracks arenas. */
        static final Cleaner CLEANER = Cleaner.create();
    }

    /** Where a tracked allocation was made: its stack trace is the report's. */
    private static final class AllocationSite extends Throwable {
        AllocationSite(String what) {
            super(what, null, false, true);
        }
    }

    /**
     * A tracked segment; the cleanup action of its scope. Its state goes once from live to freed (the pool's free) or
     * to reclaimed (its scope collected while live); a compare-and-set picks one, so the memory goes back once.
     */
    static final class SegmentTrack implements Consumer<MemorySegment> {
        private static final int LIVE = 0;
        private static final int FREED = 1;
        private static final int RECLAIMED = 2;
        private final LeakTracker tracker;
        final long address;
        final long byteSize;
        private final Throwable site;
        private final Runnable reclaim;
        private final Runnable unpin;
        private final java.util.concurrent.atomic.AtomicInteger state = new java.util.concurrent.atomic.AtomicInteger();

        SegmentTrack(LeakTracker tracker, long address, long byteSize, Throwable site, Runnable reclaim, Runnable unpin) {
            this.tracker = tracker;
            this.address = address;
            this.byteSize = byteSize;
            this.site = site;
            this.reclaim = reclaim;
            this.unpin = unpin;
        }

        /** {@return whether it was freed (or reclaimed) already} */
        boolean freed() {
            return state.get() != LIVE;
        }

        /** {@return true for the one caller that moves it from live to freed: that caller frees the memory} */
        boolean claimFree() {
            return state.compareAndSet(LIVE, FREED);
        }

        /** The free that claimed it failed without freeing: live again (nothing changed). */
        void unclaimFree() {
            state.set(LIVE);
        }

        /**
         * Runs on the JDK's cleaner thread once no view of the segment is reachable: still live, it is reported and
         * its memory given back to the pool (no view can reach it any more), then the mapping is unpinned.
         */
        @Override
        public void accept(MemorySegment ignored) {
            try {
                if (state.compareAndSet(LIVE, RECLAIMED) && !tracker.poolClosed) {
                    tracker.report(LeakReport.Kind.SEGMENT, address, byteSize, site);
                    reclaim.run();
                }
            } finally {
                unpin.run();
            }
        }
    }

    /** A tracked arena; the action its cleaner runs when it is collected or closed. */
    static final class ArenaTrack implements Runnable {
        private final LeakTracker tracker;
        private final Throwable site;
        Cleaner.Cleanable cleanable;
        /** Bytes the arena holds: written by the arena (owner thread, or under its monitor), read at collection. */
        volatile long bytes;
        private volatile boolean closed;

        ArenaTrack(LeakTracker tracker, Throwable site) {
            this.tracker = tracker;
            this.site = site;
        }

        /** The arena closed: no report, and the cleaner forgets it now. */
        void closed() {
            closed = true;
            cleanable.clean();
        }

        @Override
        public void run() {
            if (!closed && !tracker.poolClosed) {
                tracker.report(LeakReport.Kind.ARENA, 0, bytes, site);
            }
        }
    }
}
