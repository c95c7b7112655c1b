package dev.vcmm.ffm;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * One thread's cache of free small blocks (a "magazine" per order, as Linux's per-CPU page lists and
 * Netty's thread caches keep): LIFO stacks of physical addresses, so that a hot alloc/free pair touches
 * no shared word of the free bitmaps.
 *
 * <p><b>Thread-safety:</b> owned by one thread. Only the owner reads or writes the stacks, except after
 * the owner has terminated ({@link Thread#isAlive()} returning {@code false} happens-after everything the
 * owner did) when exactly one reclaimer, the one that removed the cache from the allocator's registry,
 * drains it. {@link #cachedBytes()} may be read by any thread: the owner publishes it with a release
 * store and readers use an acquire load, so a reader sees a value the owner once had.
 */
final class ThreadCache {

    private static final VarHandle CACHED_BYTES;

    static {
        try {
            CACHED_BYTES = MethodHandles.lookup().findVarHandle(ThreadCache.class, "cachedBytes", long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    final Thread owner;
    final long[][] stacks;
    final int[] counts;
    /** capacities[order]: how many blocks of that order the cache holds at most. */
    final int[] capacities;
    /**
     * The thread's arena: the uncarved rest {@code [arenaNext, arenaEnd)} of a 2 MiB block the thread took
     * whole, from which it refills its small orders, so that its small blocks (and their allocated-bitmap
     * cache line) are its own; {@code arenaNext == -1} when it has none. Owner-only.
     */
    long arenaNext = -1;
    long arenaEnd;
    /** The allocator's drain epoch this cache last obeyed; owner-only. */
    long seenEpoch;
    @SuppressWarnings("unused") // accessed through CACHED_BYTES
    private long cachedBytes;

    ThreadCache(Thread owner, int[] capacities, long epoch) {
        this.owner = owner;
        this.capacities = capacities;
        this.stacks = new long[capacities.length][];
        for (int k = 0; k < capacities.length; k++) {
            stacks[k] = new long[capacities[k]];
        }
        this.counts = new int[capacities.length];
        this.seenEpoch = epoch;
    }

    /** Owner only: adds {@code delta} to the published byte count (a release store: plain on x86). */
    void addCachedBytes(long delta) {
        CACHED_BYTES.setRelease(this, (long) CACHED_BYTES.get(this) + delta);
    }

    /** @return the bytes this cache holds, as last published by its owner (acquire load). */
    long cachedBytes() {
        return (long) CACHED_BYTES.getAcquire(this);
    }
}
