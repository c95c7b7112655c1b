package dev.vcmm;

import dev.vcmm.spi.HostMapping;

import java.util.concurrent.atomic.AtomicReference;

/**
 * A contiguous range of a {@link Vcm} with mapping attributes: no memory until it is backed by a physical
 * allocation ({@link #back(PhysMem)}), which writes the mappings into every page table of the VCM.
 *
 * <p><b>Thread-safety:</b> thread-safe. Back and unback of different reservations run concurrently; on one
 * reservation, racing backs or unbacks are decided atomically (one wins, the others get an
 * {@link IllegalStateException}).
 */
public final class Reservation {

    /**
     * A backing.
     *
     * @param memory the allocation
     * @param offset the offset in it of the reservation's first byte
     */
    record Backing(PhysMem memory, long offset) {
    }

    /** A backing being written or removed: the reservation is busy. */
    private static final Backing IN_PROGRESS = new Backing(null, -1);

    private final Vcm vcm;
    private final long address;
    private final long length;
    /** Changed only by {@link Vcm#setAttributes} under the VCM's write lock; read by anyone (walks of one-to-one VCMs). */
    private volatile ReservationAttributes attributes;
    /** {@code null}, {@link #IN_PROGRESS} or the current backing; changed only by the VCM's back and unback. */
    private final AtomicReference<Backing> backing = new AtomicReference<>();
    private volatile boolean released;
    /** Where sub-range unbacks and remaps changed its pages, or {@code null}; written under the backing's IN_PROGRESS. */
    private volatile Bindings bindings;
    /** Holders of the reservation: 1 when made, one more per {@link #ref()}; changed under the VCM's write lock. */
    private volatile int references = 1;
    /** The bound it was reserved from, or null; set once, before it is published. */
    private Bound bound;
    /** The memory mapped into the process while a HOST reservation is backed; written under the backing's IN_PROGRESS. */
    private volatile HostMapping hostMapping;
    /** Whether unbound pages map the null page (see {@link Vcm#reserveSparse}); set once, right after it is reserved. */
    private volatile boolean sparse;

    Reservation(Vcm vcm, long address, long length, ReservationAttributes attributes) {
        this.vcm = vcm;
        this.address = address;
        this.length = length;
        this.attributes = attributes;
    }

    /** {@return the VCM} */
    public Vcm vcm() {
        return vcm;
    }

    /** {@return the device address of the first byte} */
    public long address() {
        return address;
    }

    /** {@return the length in bytes, a multiple of 4 KiB} */
    public long length() {
        return length;
    }

    /** {@return the attributes} */
    public ReservationAttributes attributes() {
        return attributes;
    }

    /**
     * Changes the attributes in place (the RFC's {@code vcm_set_res_attr}, an {@code mprotect}): for a backed
     * reservation every page table of its VCM rewrites the reservation's leaves with the new permissions and cache
     * policy (same addresses, same leaf sizes, one compare-and-set per entry, never unmapped in between), then every
     * device of the VCM invalidates the range in its IOTLB and waits for its bursts in flight: when this returns, no
     * device uses the old attributes. An unbacked reservation just takes the new attributes for its next back. Takes
     * the VCM's lock exclusively, so backs and unbacks in the VCM wait for it; DMA does not.
     *
     * @param attributes the new attributes
     * @return this reservation
     * @throws IllegalArgumentException if a page table of the VCM cannot express them (e.g. no read permission in
     *                                  {@code armv7-short}, write-through in RISC-V), the reservation is backed by
     *                                  secure memory and they are not secure, or it is a backed HOST reservation (the
     *                                  process mapping is not changed in place); nothing changed
     * @throws IllegalStateException    if it was unreserved, or the VCM freed or closed; nothing changed
     */
    public Reservation setAttributes(ReservationAttributes attributes) {
        vcm.setAttributes(this, attributes);
        return this;
    }

    /** Sets the attributes; called by the VCM under its write lock. */
    void attributes(ReservationAttributes a) {
        attributes = a;
    }

    /** {@return whether a physical allocation backs it now} */
    public boolean isBacked() {
        Backing b = backing.get();
        return b != null && b != IN_PROGRESS;
    }

    /** {@return the allocation backing it, or {@code null} (also for a sparse reservation backed by the null page)} */
    public PhysMem backingMemory() {
        Backing b = backing.get();
        return b == null || b == IN_PROGRESS || vcm.nullPage().is(b.memory()) ? null : b.memory();
    }

    /** {@return the offset in the backing allocation of the first byte, or -1 if not backed (or backed by the null page)} */
    public long backingOffset() {
        Backing b = backing.get();
        return b == null || b == IN_PROGRESS || vcm.nullPage().is(b.memory()) ? -1 : b.offset();
    }

    /**
     * {@return whether it was made by {@link Vcm#reserveSparse}: its unbound pages read zero and ignore writes (they map
     * the null page read-only) instead of faulting, while it is backed}
     */
    public boolean isSparse() {
        return sparse;
    }

    void markSparse() {
        sparse = true;
    }

    /**
     * {@return the memory mapped into the process while this HOST reservation is backed, or {@code null} (not
     * backed, or not in a HOST VCM); the ffm backend makes memory segments from it}
     */
    public HostMapping hostMapping() {
        return hostMapping;
    }

    /** {@return the bound it was reserved from ({@link Bound#reserve}), or {@code null}} */
    public Bound bound() {
        return bound;
    }

    void inBound(Bound b) {
        bound = b;
    }

    /** {@return whether it was unreserved} */
    public boolean isReleased() {
        return released;
    }

    void markReleased() {
        released = true;
    }

    /** @return whether {@code a} lies in the reservation (unsigned) */
    boolean contains(long a) {
        return Long.compareUnsigned(a, address) >= 0 && Long.compareUnsigned(a - address, length) < 0;
    }

    /**
     * Backs it with {@code memory} from its first byte, as {@link #back(PhysMem, long)} does.
     *
     * @param memory the physical allocation
     * @return this reservation
     */
    public Reservation back(PhysMem memory) {
        return back(memory, 0);
    }

    /**
     * Backs it with {@code memory} from {@code offset}: writes the mappings into every page table the VCM has (one per
     * format among its associated devices), with the largest leaves the chunks allow. In a one-to-one VCM the memory
     * must lie at the reservation's own address; in a HOST VCM it is also mapped into the process.
     *
     * @param memory the physical allocation
     * @param offset the offset in bytes
     * @return this reservation
     * @throws IllegalArgumentException if the memory is too short, misaligned, foreign, not at the reservation's
     *                                  address (one-to-one), or secure while the reservation is not
     * @throws IllegalStateException    if the reservation is backed, being backed, or unreserved, or the memory
     *                                  was freed; nothing is changed
     */
    public Reservation back(PhysMem memory, long offset) {
        vcm.back(this, memory, offset);
        return this;
    }

    /**
     * Removes the mappings from every page table of its VCM, invalidates them in the IOTLB of every device of the VCM
     * and waits for the DMA bursts in flight on those devices (at most one per DMA thread): when it returns, no device
     * reaches the memory through this reservation, and the memory's backing count drops.
     *
     * @return this reservation
     * @throws IllegalStateException if it is not backed (or is being backed or unbacked by another thread); or, for a
     *                               HOST reservation, if a view of it is held: nothing changed. If a page table fails
     *                               to remove its mappings, the IOTLBs are still invalidated and synchronized, the
     *                               reservation stays backed (its memory is not released) and a later unback
     *                               finishes; it is never left half-way.
     */
    public Reservation unback() {
        vcm.unback(this);
        return this;
    }

    /**
     * Unbacks the pages {@code [offset, offset + length)} of the reservation and keeps the others: removes their
     * mappings from every page table of its VCM (a block sticking out of the range is split hitlessly, so the other
     * pages stay reachable throughout), invalidates them in the IOTLB of every device of the VCM and waits for the DMA
     * bursts in flight: when it returns, no device reaches the memory those pages were bound to, and an access to them
     * faults. Unbacking every page, at once or piece by piece, unbacks the reservation. An allocation that no page is
     * bound to any more is released (its backing count drops), except the one {@link #back(PhysMem, long)} gave, which
     * is released when the reservation is unbacked. Inside an {@link InvalidationBatch} scope the invalidation, the
     * wait and the releases happen when the batch commits. In a {@linkplain #isSparse() sparse} reservation the pages
     * go back to the null page instead (they read zero and drop writes), and the reservation stays backed.
     *
     * @param offset the first byte, a multiple of 4 KiB
     * @param length the bytes, a positive multiple of 4 KiB with {@code offset + length <= length()}
     * @return this reservation
     * @throws IllegalArgumentException if the range is not whole pages inside the reservation, or its VCM is not
     *                                  {@link Vcm.Kind#VIRTUAL}; nothing changed
     * @throws IllegalStateException    if it is not backed, is being backed or unbacked by another thread, or was
     *                                  unreserved; nothing changed
     */
    public Reservation unback(long offset, long length) {
        vcm.unback(this, offset, length);
        return this;
    }

    /**
     * Binds the pages {@code [offset, offset + length)} of this backed reservation to {@code memory} from
     * {@code memoryOffset} (another allocation, or another offset of the same one), replacing what they were bound to
     * (or mapping them, if they were unbacked) for every device at once: in each page table every page goes from the
     * old translation to the new one in one store, so a device reading the range sees each page old or new and never
     * faults, and the other pages of the reservation keep their translation throughout. Then the IOTLBs are invalidated
     * and the bursts in flight waited for: when it returns, no device reaches the old memory of the range. The range is
     * mapped with 4 KiB pages. An allocation no page is bound to any more is released as by {@link #unback(long, long)}.
     *
     * @param offset       the first byte, a multiple of 4 KiB
     * @param length       the bytes, a positive multiple of 4 KiB with {@code offset + length <= length()}
     * @param memory       the allocation to bind
     * @param memoryOffset the offset in {@code memory} of the range's first byte, a multiple of 4 KiB
     * @return this reservation
     * @throws IllegalArgumentException if the range is not whole pages inside the reservation, its VCM is not
     *                                  {@link Vcm.Kind#VIRTUAL}, the memory is too short, misaligned or foreign, or
     *                                  secure while the reservation is not; nothing changed
     * @throws IllegalStateException    if it is not backed, is being backed or unbacked by another thread, was
     *                                  unreserved, or the memory was freed; nothing changed
     */
    public Reservation remap(long offset, long length, PhysMem memory, long memoryOffset) {
        vcm.remap(this, offset, length, memory, memoryOffset);
        return this;
    }

    /**
     * {@return the physical address device address {@code address} of this reservation reaches now, or -1 if the
     *          reservation is not backed or that page is unbound}
     *
     * @param address an address inside the reservation
     * @throws IllegalArgumentException if {@code address} is outside the reservation
     */
    public long physicalAddress(long address) {
        if (!contains(address)) {
            throw new IllegalArgumentException(String.format("address=0x%x is outside %s", address, this));
        }
        return Bindings.physicalAddress(this, address - this.address);
    }

    /**
     * Drops one reference (see {@link #ref()}); the last one returns the range to the VCM (or to its bound).
     *
     * @throws VcmmBusyException     if this is the last reference and it is backed; nothing changed
     * @throws IllegalStateException if already unreserved
     */
    public void unreserve() {
        vcm.unreserve(this);
    }

    /**
     * Takes one more reference to the reservation (VCM v2's {@code vcm_ref_reserve}): a second holder may now
     * {@link #unreserve()} it without taking it from the first. Each {@code unreserve} drops one reference; only the
     * last one unreserves, and only that one is refused while the reservation is backed (the holders agree who
     * unbacks; a {@link Client} releasing a reservation someone else still holds drops its reference and leaves the
     * backing alone).
     *
     * @return this reservation
     * @throws IllegalStateException if it was unreserved, or its VCM freed or closed
     */
    public Reservation ref() {
        vcm.ref(this);
        return this;
    }

    /** {@return the number of holders: 1 when made, one more per {@link #ref()}, one fewer per {@link #unreserve()}} */
    public int references() {
        return references;
    }

    /** Changes the reference count by {@code delta}; called by the VCM under its write lock. */
    void addReferences(int delta) {
        references += delta;
    }

    // ---------------------------------------------------------------------------------------------
    // the backing state, changed by the VCM only

    /** @return the current backing read once (memory and offset together), or {@code null} if none or in progress */
    Backing backing() {
        Backing b = backing.get();
        return b == IN_PROGRESS ? null : b;
    }

    /** @return whether nothing backs it and no back or unback is in progress */
    boolean isIdle() {
        return backing.get() == null;
    }

    /** @return whether this call won the right to back it (it was idle and is now in progress) */
    boolean beginBack() {
        return backing.compareAndSet(null, IN_PROGRESS);
    }

    /** Ends a back begun by {@link #beginBack()}: backed by {@code memory}, or idle again if it is {@code null}. */
    void endBack(PhysMem memory, long offset) {
        // release, not volatile: readers acquire it (get or CAS), and the VCM lock's release CAS follows at once;
        // no reader pairs this store with a load of its own (the Dekker pair of DMA against unback is beginUnback's CAS)
        backing.setRelease(memory == null ? null : new Backing(memory, offset));
    }

    /** @return the backing this call won the right to remove (now in progress), or {@code null} if it is not backed */
    Backing beginUnback() {
        Backing b = backing.get();
        return b == null || b == IN_PROGRESS || !backing.compareAndSet(b, IN_PROGRESS) ? null : b;
    }

    /** Ends an unback begun by {@link #beginUnback()}: still backed by {@code end}, or idle if it is {@code null}. */
    void endUnback(Backing end) {
        backing.setRelease(end); // as endBack: a release store, the VCM lock's release CAS follows
    }

    /** @return where sub-range unbacks and remaps changed its pages, or {@code null} */
    Bindings bindings() {
        return bindings;
    }

    /** Publishes new bindings; called while the backing is in progress. */
    void bindings(Bindings b) {
        bindings = b;
    }

    /** Records the process mapping of a HOST reservation (or its end); written while the backing is in progress. */
    void hostMapped(HostMapping m) {
        hostMapping = m;
    }

    @Override
    public String toString() {
        return String.format("Reservation{%s 0x%x+0x%x %s%s%s}", vcm.name(), address, length, attributes,
            isBacked() ? ", backed" : "", released ? ", released" : "");
    }
}
