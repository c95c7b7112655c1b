package dev.vcmm;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * The completion barrier of one device's DMA bursts: what an IOMMU driver's invalidation sync waits for (an
 * SMMUv3 {@code CMD_SYNC}, a VT-d invalidation wait descriptor). A DMA moves in bursts; each burst
 * {@linkplain #enter() enters} the fence before it translates and {@linkplain #leave(int) leaves} it after its
 * copy. {@link #synchronize()} returns once every burst that entered before the call began has left, so after
 * "clear the PTEs, invalidate the IOTLB, synchronize" no burst still holds a translation that was removed. The wait
 * is bounded by one burst: bursts that enter after {@code synchronize} began are not waited for.
 *
 * <p><b>Thread-safety:</b> thread-safe. {@link #enter()} and {@link #leave(int)} are lock-free and wait-free in the
 * absence of concurrent synchronizers (an enter that races with an epoch flip retries once per flip).
 * {@link #synchronize()} is blocking by nature: it waits (spinning, then yielding) for bursts in flight, and
 * synchronizers are serialised by a monitor of their own, which bursts never take. A thread must not call
 * {@link #synchronize()} while it is inside a burst of the same fence: it would wait for itself. The DMA engine
 * therefore leaves its burst before it calls a fault handler.
 *
 * <h2>Design</h2>
 * Two epochs, as userspace RCU's counter flip: a burst counts itself in the counter of the current epoch's parity
 * and re-reads the epoch; if the epoch moved meanwhile it uncounts and retries, so a burst is either counted
 * before a flip (and waited for) or enters the new epoch (and is not). A synchronizer flips the epoch and waits
 * for the old parity's count to reach zero. Counters are striped by thread and each stripe has its own cache line,
 * so bursts of different threads do not share a line; a thread always counts and uncounts in its own stripe, so
 * each stripe is never below the number of its bursts in flight, and a synchronizer may sum the stripes one by one.
 * <pre>
 *   burst:        e = epoch; count[e &amp; 1][me]++; if (epoch != e) { count[e &amp; 1][me]--; retry }
 *                 ... translate, copy ...;             count[e &amp; 1][me]--
 *   synchronize:  lock; e = epoch; epoch = e + 1; wait until sum(count[e &amp; 1][*]) == 0; unlock
 * </pre>
 * Every access to the epoch and the counters is volatile (sequentially consistent), which is what the
 * Dekker-style argument above needs: a burst's increment and a synchronizer's flip are ordered one way or the
 * other, and each side reads the other's write after its own.
 */
final class BurstFence {

    private static final VarHandle COUNTS = MethodHandles.arrayElementVarHandle(long[].class);
    private static final VarHandle EPOCH;

    static {
        try {
            EPOCH = MethodHandles.lookup().findVarHandle(BurstFence.class, "epoch", long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    /** Stripes per parity, a power of two. */
    private static final int STRIPES = 8;
    /** Longs between two counters: 128 bytes, two cache lines (adjacent-line prefetch). */
    private static final int PAD = 16;
    /** Spins of {@link Thread#onSpinWait()} before a synchronizer starts yielding. */
    private static final int SPINS = 256;

    /** {@code counts[((parity * STRIPES) + stripe + 1) * PAD]}: one padded counter per parity and stripe. */
    private final long[] counts = new long[(2 * STRIPES + 2) * PAD];
    private final Object synchronizers = new Object();
    private volatile long epoch;
    /** Synchronizations, and those that waited for a burst: written under {@link #synchronizers}, read opaque. */
    private long syncs;
    private long waits;
    private static final VarHandle SYNCS;
    private static final VarHandle WAITS;

    static {
        try {
            SYNCS = MethodHandles.lookup().findVarHandle(BurstFence.class, "syncs", long.class);
            WAITS = MethodHandles.lookup().findVarHandle(BurstFence.class, "waits", long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    /**
     * Counts the calling thread's burst in the current epoch.
     *
     * @return the counter the burst is counted in: pass it to {@link #leave(int)}
     */
    int enter() {
        int stripe = (int) Thread.currentThread().threadId() & (STRIPES - 1);
        for (;;) {
            long e = (long) EPOCH.getVolatile(this);
            int at = index(e, stripe);
            COUNTS.getAndAdd(counts, at, 1L);
            if ((long) EPOCH.getVolatile(this) == e) {
                return at;
            }
            COUNTS.getAndAdd(counts, at, -1L); // a synchronizer flipped meanwhile: count in the new epoch instead
        }
    }

    /** Ends the burst counted in {@code at}. */
    void leave(int at) {
        COUNTS.getAndAdd(counts, at, -1L);
    }

    /**
     * Waits until every burst that entered before this call has left. Must not be called inside a burst of this
     * fence.
     *
     * @return whether it had to wait for at least one burst in flight
     */
    boolean synchronize() {
        synchronized (synchronizers) {
            long e = (long) EPOCH.getVolatile(this);
            EPOCH.setVolatile(this, e + 1); // bursts entering from now on count in the other parity
            boolean waited = false;
            for (int spins = 0; inFlight(e) != 0; spins++) {
                waited = true;
                if (spins < SPINS) {
                    Thread.onSpinWait();
                } else {
                    Thread.yield();
                }
            }
            // counted under the monitor: plain (opaque) stores, no atomic of their own on this path
            SYNCS.setOpaque(this, (long) SYNCS.getOpaque(this) + 1);
            if (waited) {
                WAITS.setOpaque(this, (long) WAITS.getOpaque(this) + 1);
            }
            return waited;
        }
    }

    /** {@return the synchronizations so far (for stats: may lag a synchronization in progress)} */
    long syncs() {
        return (long) SYNCS.getOpaque(this);
    }

    /** {@return the synchronizations that waited for a burst in flight (for stats)} */
    long waits() {
        return (long) WAITS.getOpaque(this);
    }

    /** @return the bursts counted in epoch {@code e}'s parity now (a snapshot; see the class comment) */
    long inFlight(long e) {
        long sum = 0;
        for (int s = 0; s < STRIPES; s++) {
            sum += (long) COUNTS.getVolatile(counts, index(e, s));
        }
        return sum;
    }

    /** @return the bursts in flight in either epoch now (for tests and stats) */
    long inFlight() {
        return inFlight(0) + inFlight(1);
    }

    private static int index(long epoch, int stripe) {
        return ((int) (epoch & 1) * STRIPES + stripe + 1) * PAD;
    }
}
