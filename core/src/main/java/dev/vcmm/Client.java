package dev.vcmm;

import java.lang.ref.Cleaner;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * An owner: a client scope through which VCMs, reservations, physical allocations and associations are
 * created, and which gives them all back when it is closed, or when it is lost (becomes unreachable: a
 * {@link Cleaner} reclaims it). Releasing unbacks and unreserves the client's reservations, deactivates and
 * removes its associations, frees its VCMs (those no other client still reserves in) and its physical
 * allocations, except an allocation that still backs another client's reservation: that one is freed when
 * its last backing goes (reference counting). No page-table page is left behind.
 *
 * <p><b>Lifetime rule:</b> a client is released when {@link #close()} is called or when the {@code Client} object
 * itself becomes unreachable, whichever comes first. The handles made through it (VCMs, reservations, allocations,
 * associations) do <em>not</em> keep it alive: the VCMM's own registries reference them, so their reachability
 * cannot tell whether the client is still in use. Keep the {@code Client} reachable for as long as you use what it
 * made (a field, a try-with-resources block, or {@link java.lang.ref.Reference#reachabilityFence}). Once it is
 * released its handles fail with an {@link IllegalStateException} (e.g. "use after unreserve"), and every device
 * has stopped reaching its memory before that memory is freed (unback waits for DMA bursts in flight).
 *
 * <p><b>Thread-safety:</b> thread-safe: every method may be called from any thread; ownership sets are
 * concurrent and release runs once. Objects made through a client stay usable through {@link Vcmm} and
 * their own methods until the client is released.
 */
public final class Client implements AutoCloseable {

    private static final Cleaner CLEANER = Cleaner.create();

    private final Vcmm vcmm;
    private final String name;
    private final Owned owned;
    private final Cleaner.Cleanable cleanable;

    /** What a client owns; referenced by the cleaning action, so it must not reference the client. */
    static final class Owned implements Runnable {
        final Vcmm vcmm;
        final String name;
        final Set<Vcm> vcms = ConcurrentHashMap.newKeySet();
        final Set<Reservation> reservations = ConcurrentHashMap.newKeySet();
        final Set<PhysMem> memory = ConcurrentHashMap.newKeySet();
        final Set<Association> associations = ConcurrentHashMap.newKeySet();
        final AtomicBoolean released = new AtomicBoolean();
        /** Creation takes it shared, release exclusively: nothing is added to a released client. */
        final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();

        Owned(Vcmm vcmm, String name) {
            this.vcmm = vcmm;
            this.name = name;
        }

        /** Releases everything; runs once, from close() or from the cleaner. */
        @Override
        public void run() {
            lock.writeLock().lock();
            try {
                if (released.compareAndSet(false, true) && !vcmm.isClosed()) {
                    release();
                }
            } finally {
                lock.writeLock().unlock();
            }
        }

        private void release() {
            List<RuntimeException> failures = new ArrayList<>();
            for (Reservation r : reservations) {
                attempt(failures, () -> releaseReservation(r));
            }
            for (Association a : associations) {
                attempt(failures, () -> vcmm.release(a)); // deactivate and remove in one step
            }
            for (Vcm v : vcms) {
                attempt(failures, () -> {
                    if (!v.isFreed()) {
                        v.orphan(); // freed now if empty, else once the others' last use goes
                    }
                });
            }
            for (PhysMem pm : memory) {
                attempt(failures, pm::freeOrOrphan);
            }
            if (!failures.isEmpty()) {
                IllegalStateException e = new IllegalStateException("client " + name + ": " + failures.size()
                    + " release step(s) failed; the first: " + failures.getFirst().getMessage());
                failures.forEach(e::addSuppressed);
                throw e;
            }
        }

        /**
         * Unbacks and unreserves {@code r}. A back or unback another thread has under way (through the
         * reservation itself, outside this client's lock) is waited out: it holds the reservation only for
         * the time it writes or clears page-table entries. Bounded, then the failure is reported.
         */
        private static void releaseReservation(Reservation r) {
            for (int attempt = 0; ; attempt++) {
                try {
                    if (r.references() > 1 && !r.isReleased()) {
                        r.unreserve(); // drops this owner's reference only: another holds it (Reservation.ref)
                        return;
                    }
                    if (r.isBacked()) {
                        r.unback();
                    }
                    if (!r.isReleased()) {
                        r.unreserve();
                    }
                    return;
                } catch (IllegalStateException raced) { // a back or unback in flight changed the state under us
                    if (attempt >= 10_000) {
                        throw raced;
                    }
                    Thread.yield();
                }
            }
        }

        private static void attempt(List<RuntimeException> failures, Runnable step) {
            try {
                step.run();
            } catch (RuntimeException e) {
                failures.add(e);
            }
        }
    }

    Client(Vcmm vcmm, String name) {
        this.vcmm = vcmm;
        this.name = Objects.requireNonNull(name, "name");
        this.owned = new Owned(vcmm, name);
        this.cleanable = CLEANER.register(this, owned);
    }

    /** {@return the client's name, for messages} */
    public String name() {
        return name;
    }

    /** {@return the VCMM it works on} */
    public Vcmm vcmm() {
        return vcmm;
    }

    /** {@return whether it was released (closed, or reclaimed after becoming unreachable)} */
    public boolean isClosed() {
        return owned.released.get();
    }

    /** Runs a creation under the client's shared lock, after checking it is open, and records what it made. */
    private <T> T own(Set<T> set, java.util.function.Supplier<T> create) {
        owned.lock.readLock().lock();
        try {
            if (owned.released.get()) {
                throw new IllegalStateException("client " + name + " is closed");
            }
            T object = create.get();
            set.add(object);
            return object;
        } finally {
            owned.lock.readLock().unlock();
        }
    }

    /**
     * Creates a virtual VCM the client owns.
     *
     * @param start the first address
     * @param length the length in bytes
     * @return the new VCM
     * @see Vcmm#createVcm(long, long)
     */
    public Vcm createVcm(long start, long length) {
        return own(owned.vcms, () -> vcmm.createVcm(start, length));
    }

    /**
     * Creates a one-to-one VCM the client owns.
     *
     * @param start the first address
     * @param length the length in bytes
     * @return the new VCM
     * @see Vcmm#createOneToOneVcm(long, long)
     */
    public Vcm createOneToOneVcm(long start, long length) {
        return own(owned.vcms, () -> vcmm.createOneToOneVcm(start, length));
    }

    /**
     * Creates a HOST VCM the client owns; its range goes back to the system when the client is released.
     *
     * @param length the length in bytes
     * @return the new VCM
     * @see Vcmm#createHostVcm(long)
     */
    public Vcm createHostVcm(long length) {
        return own(owned.vcms, () -> vcmm.createHostVcm(length));
    }

    /**
     * Associates, owned by the client.
     *
     * @param vcm the VCM
     * @param device the device
     * @param mode which of the device's tables the association programs
     * @return the new association, inactive
     * @see Vcmm#assoc(Vcm, Device, AssociationMode)
     */
    public Association assoc(Vcm vcm, Device device, AssociationMode mode) {
        return own(owned.associations, () -> vcmm.assoc(vcm, device, mode));
    }

    /**
     * Associates for the whole device address space, owned by the client.
     *
     * @param vcm the VCM
     * @param device the device
     * @return the new association, inactive
     */
    public Association assoc(Vcm vcm, Device device) {
        return assoc(vcm, device, AssociationMode.WHOLE);
    }

    /**
     * Reserves, owned by the client.
     *
     * @param vcm the VCM
     * @param length the length in bytes
     * @param attributes the mapping attributes
     * @param alignment the alignment in bytes, a power of two
     * @return the new reservation
     * @see Vcm#reserve(long, ReservationAttributes, long)
     */
    public Reservation reserve(Vcm vcm, long length, ReservationAttributes attributes, long alignment) {
        return own(owned.reservations, () -> mine(vcm).reserve(length, attributes, alignment));
    }

    /**
     * Reserves at an address, owned by the client.
     *
     * @param vcm the VCM
     * @param address the first address
     * @param length the length in bytes
     * @param attributes the mapping attributes
     * @return the new reservation
     * @see Vcm#reserveAt(long, long, ReservationAttributes)
     */
    public Reservation reserveAt(Vcm vcm, long address, long length, ReservationAttributes attributes) {
        return own(owned.reservations, () -> mine(vcm).reserveAt(address, length, attributes));
    }

    /**
     * Allocates physical memory the client owns.
     *
     * @param memoryType the memory type
     * @param length the length in bytes
     * @param policy the chunk policy
     * @return the allocation
     * @see Vcmm#physAlloc(MemoryType, long, ChunkPolicy, PhysAllocOptions)
     */
    public PhysMem physAlloc(String memoryType, long length, ChunkPolicy policy) {
        return own(owned.memory, () -> vcmm.physAlloc(memoryType, length, policy));
    }

    /**
     * Allocates physical memory the client owns, with options.
     *
     * @param memoryType the memory type
     * @param length the length in bytes
     * @param policy the chunk policy
     * @param options the allocation options
     * @return the allocation
     */
    public PhysMem physAlloc(String memoryType, long length, ChunkPolicy policy, PhysAllocOptions options) {
        return own(owned.memory, () -> vcmm.physAlloc(vcmm.memoryType(memoryType), length, policy, options));
    }

    /** {@return how many objects the client owns now (VCMs, reservations, allocations, associations)} */
    public int ownedCount() {
        return owned.vcms.size() + owned.reservations.size() + owned.memory.size() + owned.associations.size();
    }

    /**
     * Releases everything the client owns (see the class documentation). Idempotent.
     *
     * @throws IllegalStateException listing the steps that failed (others were still carried out)
     */
    private Vcm mine(Vcm vcm) {
        Objects.requireNonNull(vcm, "vcm").checkOwner(vcmm);
        return vcm;
    }

    @Override
    public void close() {
        cleanable.clean();
    }

    @Override
    public String toString() {
        return "Client{" + name + ", owns " + ownedCount() + (isClosed() ? ", closed" : "") + '}';
    }
}
