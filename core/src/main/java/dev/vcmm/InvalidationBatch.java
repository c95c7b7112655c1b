package dev.vcmm;

import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A batch of unbacks, sub-range unbacks, remaps and deactivations whose IOTLB invalidations are gathered and issued
 * together when the batch commits (Linux's {@code iommu_iotlb_gather}), in a try-with-resources scope:
 * <pre>{@code
 * try (InvalidationBatch batch = vcmm.batch()) {
 *     for (Reservation r : buffers) {
 *         r.unback();                 // page tables cleared now; invalidation and sync gathered
 *     }
 *     gpuContext.deactivate();        // slot cleared now; its PASID's entries dropped at commit
 * }                                   // commit: merged invalidations, one sync per device, memory released
 * }</pre>
 * While the batch is open on a thread, {@link Reservation#unback()}, {@link Reservation#unback(long, long)},
 * {@link Reservation#remap(long, long, PhysMem, long)} and {@link Association#deactivate()} called on that thread for
 * a reservation or association of the same {@link Vcmm} change the page tables (or the device's slots) at once, and
 * hand their invalidations to the batch instead of issuing them. At commit ({@link #close()}), per device: a
 * deactivated PASID is invalidated whole and its ranges dropped; the ranges of each other PASID are sorted and
 * merged (overlapping or adjacent ranges become one); if more than {@link #MAX_RANGES} ranges remain the whole IOTLB
 * is flushed instead; then every device is synchronized once (its bursts in flight waited for), and only then are the
 * backing counts of the memory the batch unbound dropped (an orphan allocation freed).
 *
 * <p><b>Guarantee:</b> when {@link #close()} returns, no device reaches memory that an operation of the batch unbound,
 * exactly as when the single calls return. Before it returns a device may still reach that memory through a cached
 * translation; the memory cannot be freed until then (its backing count is held), and an association deactivated in
 * the batch cannot be deassociated until then ({@link VcmmBusyException}).
 *
 * <p><b>Thread-safety:</b> a batch belongs to the thread that opened it: only that thread's calls are gathered, and
 * {@link #close()} must be called on it ({@link IllegalStateException} otherwise, nothing changed). One batch per
 * thread at a time. Other threads run their operations unbatched meanwhile, as usual.
 */
public final class InvalidationBatch implements AutoCloseable {

    /** Ranges of one device past which the commit flushes its whole IOTLB instead (one operation). */
    public static final int MAX_RANGES = 64;

    private static final ThreadLocal<InvalidationBatch> CURRENT = new ThreadLocal<>();

    /** The gathered invalidations of one device. */
    private static final class Gather {
        final Set<Integer> wholePasids = new LinkedHashSet<>();
        /** {pasid, first, last} triples; last inclusive (unsigned), so a range may end at the top of the space. */
        final List<long[]> ranges = new ArrayList<>();
    }

    private final Vcmm vcmm;
    private final Thread owner;
    private final Map<Device, Gather> devices = new IdentityHashMap<>();
    private final List<Association> deactivated = new ArrayList<>();
    private final List<Runnable> afterCommit = new ArrayList<>();
    private long gathered;
    private long operations;
    private boolean committed;

    private InvalidationBatch(Vcmm vcmm) {
        this.vcmm = vcmm;
        this.owner = Thread.currentThread();
    }

    /** Opens a batch on the calling thread; see {@link Vcmm#batch()}. */
    static InvalidationBatch open(Vcmm vcmm) {
        if (CURRENT.get() != null) {
            throw new IllegalStateException("a batch is open already on this thread: close it first");
        }
        InvalidationBatch b = new InvalidationBatch(vcmm);
        CURRENT.set(b);
        return b;
    }

    /** @return the batch open on this thread for {@code vcmm}, or {@code null} */
    static InvalidationBatch current(Vcmm vcmm) {
        InvalidationBatch b = CURRENT.get();
        return b != null && b.vcmm == vcmm ? b : null;
    }

    /** Records that {@code device} must drop {@code pasid}'s entries of {@code [address, address + length)}. */
    void gather(Device device, int pasid, long address, long length) {
        devices.computeIfAbsent(device, d -> new Gather()).ranges.add(new long[] {pasid, address, address + length - 1});
        gathered++;
    }

    /** Records that {@code a} was deactivated (its slots cleared): its device drops its PASID's entries at commit. */
    void deactivated(Association a) {
        a.pendingBatch(this);
        deactivated.add(a);
        devices.computeIfAbsent(a.device(), d -> new Gather()).wholePasids.add(a.pasid());
        gathered++;
    }

    /** Runs {@code r} after the commit's invalidations and syncs (a backing count's release). */
    void afterCommit(Runnable r) {
        afterCommit.add(r);
    }

    /** {@return the invalidations gathered so far: what the same calls outside a batch would each have issued} */
    public long gatheredInvalidations() {
        return gathered;
    }

    /** {@return the IOTLB operations the commit issued (range, PASID and whole-IOTLB invalidations); 0 before it} */
    public long invalidationOperations() {
        return operations;
    }

    /** {@return whether the batch has committed} */
    public boolean isCommitted() {
        return committed;
    }

    /**
     * Commits: issues the merged invalidations, synchronizes every device once, then releases the memory the batch's
     * operations unbound. Idempotent.
     *
     * @throws IllegalStateException if called on another thread than the one that opened the batch; nothing changed
     */
    @Override
    public void close() {
        if (committed) {
            return;
        }
        if (Thread.currentThread() != owner) {
            throw new IllegalStateException("batch opened on " + owner.getName() + " closed on "
                + Thread.currentThread().getName() + ": close it on the thread that opened it");
        }
        committed = true;
        CURRENT.remove();
        RuntimeException failure = null;
        for (Map.Entry<Device, Gather> e : devices.entrySet()) {
            try {
                operations += invalidate(e.getKey(), e.getValue());
            } catch (RuntimeException x) {
                failure = chain(failure, x);
            }
        }
        for (Device d : devices.keySet()) {
            d.synchronizeBursts(); // after every IOTLB is invalidated: the waits overlap
        }
        for (Association a : deactivated) {
            a.pendingBatch(null);
        }
        for (Runnable r : afterCommit) {
            try {
                r.run();
            } catch (RuntimeException x) {
                failure = chain(failure, x);
            }
        }
        if (failure != null) {
            throw failure;
        }
    }

    /** Issues one device's merged invalidations. @return the IOTLB operations issued */
    private static long invalidate(Device d, Gather g) {
        List<long[]> ranges = new ArrayList<>();
        for (long[] r : g.ranges) {
            if (!g.wholePasids.contains((int) r[0])) {
                ranges.add(r);
            }
        }
        ranges.sort((x, y) -> x[0] != y[0] ? Long.compare(x[0], y[0]) : Long.compareUnsigned(x[1], y[1]));
        List<long[]> merged = new ArrayList<>();
        for (long[] r : ranges) {
            long[] last = merged.isEmpty() ? null : merged.get(merged.size() - 1);
            if (last != null && last[0] == r[0] && (last[2] == -1L || Long.compareUnsigned(r[1], last[2] + 1) <= 0)) {
                if (Long.compareUnsigned(r[2], last[2]) > 0) {
                    last[2] = r[2]; // overlapping or adjacent: one range
                }
            } else {
                merged.add(new long[] {r[0], r[1], r[2]});
            }
        }
        if (merged.size() + g.wholePasids.size() > MAX_RANGES) {
            d.flushIotlb();
            return 1;
        }
        for (int pasid : g.wholePasids) {
            d.invalidateIotlbPasid(pasid);
        }
        for (long[] r : merged) {
            d.invalidateIotlb((int) r[0], r[1], r[2] - r[1] + 1);
        }
        return g.wholePasids.size() + merged.size();
    }

    private static RuntimeException chain(RuntimeException first, RuntimeException next) {
        if (first == null) {
            return next;
        }
        first.addSuppressed(next);
        return first;
    }

    @Override
    public String toString() {
        return "InvalidationBatch{" + gathered + " gathered, " + (committed ? operations + " operations at commit" : "open") + '}';
    }
}
