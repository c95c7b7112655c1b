package dev.vcmm;

import dev.vcmm.space.AddressSpaceAllocator;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * A sub-range of a {@link Vcm} from which some reservations are taken (the RFC's {@code vcm_create_bound} and
 * {@code vcm_reserve_from_bound}): a device window inside a larger space, a per-client region. Made by
 * {@link Vcm#createBound(long, long)}, which takes the range out of the VCM's free space, so ordinary reservations
 * of the VCM never land in it; {@link #reserve} places reservations inside it only. A reservation of a bound is an
 * ordinary reservation of the VCM in every other respect (backed, unbacked, unreserved, listed by the VCM as any);
 * unreserving it returns its range to the bound. {@link #free()} gives the range back to the VCM and is refused while
 * the bound holds a reservation. A VCM with a bound is not empty: it cannot be freed until its bounds are.
 *
 * <p><b>Thread-safety:</b> thread-safe: every change runs under its VCM's write lock, as the VCM's own reserve and
 * unreserve do.
 */
public final class Bound {

    private final Vcm vcm;
    private final long start;
    private final long length;
    /** The bound's own free space; changed under the VCM's write lock only. */
    private final AddressSpaceAllocator space;
    /** Its live reservations; changed under the VCM's write lock only. */
    private final List<Reservation> reservations = new ArrayList<>();
    private volatile boolean freed;

    Bound(Vcm vcm, long start, long length) {
        this.vcm = vcm;
        this.start = start;
        this.length = length;
        this.space = new AddressSpaceAllocator(start, length, Vcm.GRANULE);
    }

    /** {@return the VCM it is a range of} */
    public Vcm vcm() {
        return vcm;
    }

    /** {@return its first device address (the RFC's {@code vcm_get_bound_start_addr})} */
    public long start() {
        return start;
    }

    /** {@return its length in bytes} */
    public long length() {
        return length;
    }

    /** {@return whether {@link #free()} was called} */
    public boolean isFreed() {
        return freed;
    }

    /** {@return its reservations in address order (a snapshot)} */
    public List<Reservation> reservations() {
        return vcm.underReadLock(() -> reservations.stream()
            .sorted((a, b) -> Long.compareUnsigned(a.address(), b.address())).toList());
    }

    /** {@return the bytes of the bound not reserved} */
    public long freeBytes() {
        return vcm.underReadLock(space::freeBytes);
    }

    /**
     * Reserves {@code length} bytes inside the bound, aligned to 4 KiB.
     *
     * @param length the length in bytes
     * @param attributes the mapping attributes
     * @return the new reservation
     * @see #reserve(long, ReservationAttributes, long)
     */
    public Reservation reserve(long length, ReservationAttributes attributes) {
        return reserve(length, attributes, Vcm.GRANULE);
    }

    /**
     * Reserves {@code length} bytes (rounded up to 4 KiB) inside the bound, aligned to {@code alignment}: as
     * {@link Vcm#reserve(long, ReservationAttributes, long)}, but only the bound's range is searched.
     *
     * @param length the length in bytes
     * @param attributes the mapping attributes
     * @param alignment the alignment in bytes, a power of two of at least 4096
     * @return the new reservation
     * @throws IllegalArgumentException if the length or alignment is bad, or the VCM's tables cannot express the
     *                                  attributes
     * @throws VcmmOutOfMemoryException if no free range of the bound fits
     * @throws IllegalStateException    if the bound is freed, or its VCM freed or closed
     */
    public Reservation reserve(long length, ReservationAttributes attributes, long alignment) {
        Objects.requireNonNull(attributes, "attributes");
        return vcm.reserveIn(this, length, attributes, alignment);
    }

    /**
     * Gives the range back to the VCM.
     *
     * @throws VcmmBusyException     while the bound holds a reservation (the RFC's -EBUSY); nothing changed
     * @throws IllegalStateException if already freed, or the VCM is closed
     */
    public void free() {
        vcm.freeBound(this);
    }

    // ---------------------------------------------------------------------------------------------
    // the VCM's side, under its write lock

    /** @return the reserved address, or {@link AddressSpaceAllocator#NONE}; caller holds the VCM's write lock */
    long allocate(long rounded, long alignment) {
        return space.allocate(rounded, alignment);
    }

    long largestFreeRange() {
        return space.largestFreeRange();
    }

    void added(Reservation r) {
        reservations.add(r);
    }

    /** Returns {@code r}'s range to the bound; caller holds the VCM's write lock. */
    void removed(Reservation r) {
        space.free(r.address(), r.length());
        reservations.remove(r);
    }

    /** @return whether it holds no reservation; caller holds the VCM's write lock */
    boolean isEmpty() {
        return reservations.isEmpty();
    }

    /** @throws IllegalStateException if freed */
    void checkNotFreed() {
        if (freed) {
            throw new IllegalStateException("use after free: " + this);
        }
    }

    void markFreed() {
        freed = true;
    }

    @Override
    public String toString() {
        return String.format("Bound{%s 0x%x+0x%x, %d reservations%s}", vcm.name(), start, length, reservations.size(),
            freed ? ", freed" : "");
    }
}
