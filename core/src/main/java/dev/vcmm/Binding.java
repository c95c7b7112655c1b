package dev.vcmm;

import java.util.Objects;

/**
 * A reservation and the memory backing it, made in one call with one undo (VCM v2's {@code vcm_make_binding} and
 * {@code vcm_map}; {@link #close()} is {@code vcm_destroy_binding} and {@code vcm_unmap}). {@link #make} allocates,
 * reserves and backs; {@link #map} reserves and backs memory the caller already has. Either is all or nothing: if a
 * step fails, the steps before it are undone (unback, unreserve, free what it allocated) and the failure is thrown.
 *
 * <p>Where the reservation goes is the VCM's kind's business: in a virtual or HOST VCM anywhere, aligned to the
 * largest chunk of the memory so the tables can use blocks; in a one-to-one VCM at the memory's own physical address
 * (memory first, then the range: the reason VCM v2 has the call, as separate reserve and alloc calls could not be
 * made to meet). A binding's memory in a one-to-one VCM is allocated contiguous.
 *
 * <p>Reference counted: {@link #ref()} takes one more reference to the reservation ({@link Reservation#ref()}), and
 * each {@link #close()} drops one; the last one unbacks, unreserves and frees the memory if the binding allocated
 * it. So {@code close()} is not idempotent: every holder (the maker and each {@code ref()}) closes once, and a
 * close after the last fails with an {@link IllegalStateException}.
 *
 * <p><b>Thread-safety:</b> thread-safe: the steps are the reservation's and the memory type's own thread-safe calls,
 * and the reference count is the reservation's, changed under its VCM's lock.
 */
public final class Binding implements AutoCloseable {

    private final Reservation reservation;
    private final PhysMem memory;
    private final boolean ownsMemory;

    private Binding(Reservation reservation, PhysMem memory, boolean ownsMemory) {
        this.reservation = reservation;
        this.memory = memory;
        this.ownsMemory = ownsMemory;
    }

    /**
     * Allocates {@code length} bytes of {@code type}, reserves a range of {@code vcm} for them and backs it (VCM v2's
     * {@code vcm_make_binding}). Scattered chunks of {@code policy} in a virtual or HOST VCM, one contiguous range in a
     * one-to-one VCM.
     *
     * @param vcm        the VCM
     * @param type       the memory type
     * @param length     the length in bytes
     * @param policy     the chunk sizes
     * @param attributes the reservation's attributes
     * @return the binding
     * @throws IllegalArgumentException as {@link MemoryType#physAlloc}, {@link Vcm#reserve} and {@link Reservation#back}
     *                                  do (e.g. a foreign memory type, attributes a table cannot express); nothing left
     * @throws VcmmOutOfMemoryException if the memory or the VCM's space runs out; nothing left
     * @throws IllegalStateException    if the VCM is freed or closed; nothing left
     */
    public static Binding make(Vcm vcm, MemoryType type, long length, ChunkPolicy policy, ReservationAttributes attributes) {
        Objects.requireNonNull(vcm, "vcm");
        Objects.requireNonNull(type, "type");
        Objects.requireNonNull(policy, "policy");
        Objects.requireNonNull(attributes, "attributes");
        vcm.checkUsable();
        if (vcm.vcmm().memoryTypes().stream().noneMatch(m -> m == type)) {
            throw new IllegalArgumentException("foreign handle: memoryType=" + type.name() + " does not belong to " + vcm.vcmm());
        }
        PhysMem pm = type.physAlloc(length, policy, vcm.bindingOptions(PhysAllocOptions.DEFAULT));
        try {
            return new Binding(reserveAndBack(vcm, pm, (length + Vcm.GRANULE - 1) & -Vcm.GRANULE, attributes), pm, true);
        } catch (RuntimeException | Error e) {
            try {
                pm.free();
            } catch (RuntimeException undo) {
                e.addSuppressed(undo);
            }
            throw e;
        }
    }

    /**
     * Reserves a range of {@code vcm} as long as {@code memory} and backs it with it (VCM v2's {@code vcm_map}). The
     * memory stays the caller's: {@link #close()} does not free it.
     *
     * @param vcm        the VCM
     * @param memory     the memory
     * @param attributes the reservation's attributes
     * @return the binding
     * @throws IllegalArgumentException as {@link Vcm#reserve} and {@link Reservation#back} do, or for memory that is
     *                                  not contiguous in a one-to-one VCM; nothing left
     * @throws VcmmOutOfMemoryException if no range of the VCM fits; nothing left
     * @throws IllegalStateException    if the VCM is freed or closed, or the memory freed; nothing left
     */
    public static Binding map(Vcm vcm, PhysMem memory, ReservationAttributes attributes) {
        Objects.requireNonNull(vcm, "vcm");
        Objects.requireNonNull(memory, "memory");
        Objects.requireNonNull(attributes, "attributes");
        vcm.checkUsable();
        if (memory.isFreed()) {
            throw new IllegalStateException("use after free: " + memory);
        }
        return new Binding(reserveAndBack(vcm, memory, memory.length(), attributes), memory, false);
    }

    private static Reservation reserveAndBack(Vcm vcm, PhysMem pm, long length, ReservationAttributes attributes) {
        Reservation r = vcm.reserveFor(pm, length, attributes);
        try {
            return r.back(pm);
        } catch (RuntimeException | Error e) {
            try {
                r.unreserve();
            } catch (RuntimeException undo) {
                e.addSuppressed(undo);
            }
            throw e;
        }
    }

    /** {@return the reservation} */
    public Reservation reservation() {
        return reservation;
    }

    /** {@return the memory backing it} */
    public PhysMem memory() {
        return memory;
    }

    /** {@return the device address of the first byte} */
    public long address() {
        return reservation.address();
    }

    /** {@return whether {@link #close()} frees the memory (the binding allocated it)} */
    public boolean ownsMemory() {
        return ownsMemory;
    }

    /**
     * Takes one more reference (VCM v2's {@code vcm_ref_reserve} on the binding's reservation): the binding stays
     * until every holder has closed it.
     *
     * @return this binding
     * @throws IllegalStateException if it was destroyed
     */
    public synchronized Binding ref() {
        reservation.ref();
        return this;
    }

    /**
     * Drops one reference; the last unbacks, unreserves and, if the binding allocated the memory, frees it (VCM v2's
     * {@code vcm_destroy_binding}, or {@code vcm_unmap} for a {@link #map}ped binding). When the last close returns no
     * device reaches the memory.
     *
     * @throws VcmmBusyException     if this is the last reference and the memory the binding allocated also backs
     *                               another reservation; nothing changed
     * @throws IllegalStateException if every reference was closed already, or the memory's unback is refused (a
     *                               HOST view is held: nothing changed, close again later)
     */
    @Override
    public void close() {
        synchronized (this) {
            if (reservation.isReleased()) {
                throw new IllegalStateException("already destroyed: " + this);
            }
            if (reservation.references() > 1) {
                reservation.unreserve(); // drops one reference; the backing stays for the other holders
                return;
            }
            int others = memory.backingCount() - (reservation.backingMemory() == memory ? 1 : 0);
            if (ownsMemory && others > 0) {
                throw new VcmmBusyException("busy: " + memory + " of " + this + " also backs " + others
                    + " other reservation(s); unback them first");
            }
            if (reservation.isBacked()) {
                reservation.unback();
            }
            reservation.unreserve();
        }
        if (ownsMemory && !memory.isFreed()) {
            memory.free();
        }
    }

    @Override
    public String toString() {
        return "Binding{" + reservation + " <- " + memory + (ownsMemory ? ", owns its memory" : "") + '}';
    }
}
