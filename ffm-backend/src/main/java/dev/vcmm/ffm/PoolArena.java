package dev.vcmm.ffm;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * An {@link Arena} over a {@link SegmentPool}: {@link SegmentPool#newArena()} (confined) and
 * {@link SegmentPool#newSharedArena()} (shared).
 *
 * <p><b>Thread-safety:</b> a confined arena may be used (allocate, close, and access its segments) only by the thread
 * that created it; another thread gets a {@link WrongThreadException} and changes nothing. A shared arena may be
 * used by any thread; its allocations are serialised by its monitor (not lock-free), and its close is a handshake
 * with every thread, as {@link Arena#ofShared()}'s. Segments are zeroed and scoped to the arena (they are
 * {@link MemorySegment#reinterpret(Arena, java.util.function.Consumer) reinterpreted} into a JDK arena of the same
 * kind), so an access after close fails in FFM's own liveness check with an {@link IllegalStateException}. Close
 * ends that scope first, then frees every segment to the pool in one pass. Close is idempotent. An arena tracked by
 * the pool's leak detection and dropped unclosed has its segments freed on a cleaner thread once its JDK scope is
 * unreachable (no view left); its close and that reclaim claim the arena's records by CAS, so only one frees them.
 *
 * <p>From its first allocation to its close the arena pins the pool's mapping (one atomic increment, one decrement):
 * a pool closed meanwhile unmaps only after the arena's close, as its views have the arena's scope, which the pool's
 * close cannot end. An arena that never allocated pins nothing. An untracked arena's close takes no other atomic step
 * than the pin's, and an arena of one segment keeps it in fields (no array).
 */
final class PoolArena implements Arena {

    private final SegmentPool pool;
    private final Arena scope;
    private final Thread owner;
    /** What to free at close, or at the reclaim of a dropped arena; never refers to this arena or its scope. */
    private final Books books = new Books();
    private boolean closed;
    /** Null unless the pool's leak detection tracks this arena. */
    private final LeakTracker.ArenaTrack leak;
    /** With leak detection tracking this arena: frees its segments once its JDK scope is unreachable, if unclosed. */
    private final java.lang.ref.Cleaner.Cleanable reclaim;

    PoolArena(SegmentPool pool, boolean shared) {
        this.pool = pool;
        this.scope = shared ? Arena.ofShared() : Arena.ofConfined();
        this.owner = shared ? null : Thread.currentThread();
        LeakTracker leaks = pool.leaks;
        this.leak = leaks != null && leaks.sample() ? leaks.trackArena(this) : null;
        // Watch the JDK scope, not this object: every view of our segments holds the scope, so once it is unreachable
        // no view is left and the memory can go back (a view kept alive keeps the memory, even if this arena is gone)
        this.reclaim = leak == null ? null : LeakTracker.whenUnreachable(scope.scope(), new Reclaim(pool, books));
    }

    @Override
    public MemorySegment allocate(long byteSize, long byteAlignment) {
        if (owner == null) {
            synchronized (this) {
                return allocateLocked(byteSize, byteAlignment);
            }
        }
        checkOwner("allocate in");
        return allocateLocked(byteSize, byteAlignment);
    }

    private MemorySegment allocateLocked(long byteSize, long byteAlignment) {
        if (closed) {
            throw new IllegalStateException("already closed: " + this);
        }
        boolean pinning = !books.pinned;
        if (pinning) {
            // first allocation: from now on the pool's close leaves the mapping to this arena's close (our views have
            // our scope, which the pool's close cannot end); pinned before the pool's open check in the allocation,
            // so either that check sees the pool closed or the pool's close sees the pin
            pool.pinMain();
            books.pinned = true;
        }
        MemorySegment s;
        try {
            s = pool.allocateForArena(byteSize, byteAlignment);
        } catch (RuntimeException | Error e) { // refused (bad input, no room, pool closed): nothing changed, no pin
            if (pinning) {
                books.pinned = false;
                pool.unpinMainForArena();
            }
            throw e;
        }
        if (leak != null) {
            leak.bytes += byteSize; // only this arena writes it (owner thread, or under its monitor)
        }
        books.add(s.address(), byteSize);
        return s.reinterpret(scope, null);
    }

    @Override
    public MemorySegment.Scope scope() {
        return scope.scope();
    }

    /**
     * Ends every segment of the arena and frees them all to the pool. Idempotent.
     *
     * @throws WrongThreadException  if a confined arena is closed by another thread than its owner; nothing changed
     * @throws IllegalStateException if a segment is in use by a native call (FFM refuses the close); nothing changed
     */
    @Override
    public void close() {
        if (owner == null) {
            synchronized (this) {
                closeLocked();
            }
            return;
        }
        checkOwner("close");
        closeLocked();
    }

    private void closeLocked() {
        if (closed) {
            return;
        }
        scope.close(); // first: no access can reach the memory once it is back in the pool
        closed = true;
        if (reclaim != null) { // tracked: a reclaim could race us for the books, were this arena unreachable
            leak.closed();
            if (!books.claim()) {
                return; // cannot happen: a reclaim runs only once this arena is unreachable
            }
            reclaim.clean(); // claimed: its action does nothing, and the cleaner forgets it
        }
        RuntimeException first = books.releaseAll(pool);
        java.lang.ref.Reference.reachabilityFence(this); // keeps the scope reachable until the claim above is made
        if (first != null) {
            throw first;
        }
    }

    /**
     * The (address, size) pairs of an arena's segments, and whether it pinned the pool's mapping. Confined: written by
     * the owner only; shared: under the arena's monitor; read by a reclaim only once the arena is unreachable. Whoever
     * claims it (close or reclaim; without leak tracking only close, which claims nothing) frees them. The first
     * segment is kept in fields: an arena of one segment allocates no array.
     */
    static final class Books {
        private static final java.lang.invoke.VarHandle CLAIMED;

        static {
            try {
                CLAIMED = java.lang.invoke.MethodHandles.lookup().findVarHandle(Books.class, "claimed", boolean.class);
            } catch (ReflectiveOperationException e) {
                throw new ExceptionInInitializerError(e);
            }
        }

        private long firstAddress;
        private long firstSize;
        /** The (address, size) pairs of the second segment on; null until then. */
        private long[] more;
        /** Segments recorded. */
        private int count;
        /** Whether the arena pinned the pool's mapping ({@link SegmentPool#pinMain()}): at its first allocation. */
        boolean pinned;
        @SuppressWarnings("unused") // through CLAIMED
        private boolean claimed;

        void add(long address, long byteSize) {
            int n = count;
            if (n == 0) {
                firstAddress = address;
                firstSize = byteSize;
            } else {
                long[] m = more;
                int at = 2 * (n - 1);
                if (m == null) {
                    more = m = new long[8];
                } else if (at == m.length) {
                    more = m = Arrays.copyOf(m, at * 2);
                }
                m[at] = address;
                m[at + 1] = byteSize;
            }
            count = n + 1;
        }

        /** {@return the segments recorded} */
        int count() {
            return count;
        }

        /** {@return the address of segment {@code i}, {@code 0 <= i < count()}} */
        long address(int i) {
            return i == 0 ? firstAddress : more[2 * (i - 1)];
        }

        /** {@return the byte size of segment {@code i}, {@code 0 <= i < count()}} */
        long size(int i) {
            return i == 0 ? firstSize : more[2 * (i - 1) + 1];
        }

        /** {@return {@code true} for exactly one caller: the one that frees the segments (a CAS)} */
        boolean claim() {
            return CLAIMED.compareAndSet(this, false, true);
        }

        /**
         * Frees every segment to the pool (after the pool's close: only unpins their mappings), forgets them, and lets
         * go of the pin of the pool's mapping.
         *
         * @return the first exception a free threw (a bug, not an input error: pool.free refuses arena segments),
         * after the others were freed; or null
         */
        RuntimeException releaseAll(SegmentPool pool) {
            RuntimeException first = null;
            int n = count;
            for (int i = 0; i < n; i++) {
                try {
                    pool.releaseForArena(address(i), size(i));
                } catch (RuntimeException e) {
                    if (first == null) {
                        first = e;
                    }
                }
            }
            count = 0;
            more = null;
            if (pinned) {
                pinned = false;
                pool.unpinMainForArena();
            }
            return first;
        }
    }

    /** The cleanup of a dropped tracked arena: refers to the pool and the books, never to the arena or its scope. */
    private record Reclaim(SegmentPool pool, Books books) implements Runnable {
        @Override
        public void run() {
            if (books.claim()) {
                pool.reclaimArena(books);
            }
        }
    }

    private void checkOwner(String what) {
        if (Thread.currentThread() != owner) {
            throw new WrongThreadException("cannot " + what + " a confined arena of " + pool + " from thread "
                + Thread.currentThread().getName() + ": it belongs to " + owner.getName());
        }
    }

    @Override
    public String toString() {
        return "PoolArena{" + (owner == null ? "shared" : "confined to " + owner.getName()) + ", segments="
            + books.count() + (closed ? ", closed" : "") + ", " + pool + '}';
    }
}
