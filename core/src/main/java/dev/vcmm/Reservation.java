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

    /** A backing: the allocation and the offset in it of the reservation's first byte. */
    record Backing(PhysMem memory, long offset) {
    }

    /** A backing being written or removed: the reservation is busy. */
    static final Backing IN_PROGRESS = new Backing(null, -1);

    private final Vcm vcm;
    private final long address;
    private final long length;
    private final ReservationAttributes attributes;
    final AtomicReference<Backing> backing = new AtomicReference<>();
    private volatile boolean released;
    /** The memory mapped into the process while a HOST reservation is backed; written under the backing's IN_PROGRESS. */
    volatile HostMapping hostMapping;

    Reservation(Vcm vcm, long address, long length, ReservationAttributes attributes) {
        this.vcm = vcm;
        this.address = address;
        this.length = length;
        this.attributes = attributes;
    }

    /** @return the VCM */
    public Vcm vcm() {
        return vcm;
    }

    /** @return the device address of the first byte */
    public long address() {
        return address;
    }

    /** @return the length in bytes, a multiple of 4 KiB */
    public long length() {
        return length;
    }

    /** @return the attributes */
    public ReservationAttributes attributes() {
        return attributes;
    }

    /** @return whether a physical allocation backs it now */
    public boolean isBacked() {
        Backing b = backing.get();
        return b != null && b != IN_PROGRESS;
    }

    /** @return the allocation backing it, or {@code null} */
    public PhysMem backingMemory() {
        Backing b = backing.get();
        return b == null || b == IN_PROGRESS ? null : b.memory();
    }

    /** @return the offset in the backing allocation of the first byte, or -1 if not backed */
    public long backingOffset() {
        Backing b = backing.get();
        return b == null || b == IN_PROGRESS ? -1 : b.offset();
    }

    /**
     * @return the memory mapped into the process while this HOST reservation is backed, or {@code null} (not
     * backed, or not in a HOST VCM); the ffm backend makes memory segments from it
     */
    public HostMapping hostMapping() {
        return hostMapping;
    }

    /** @return whether it was unreserved */
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

    /** Backs it with {@code memory} from its first byte. @see Vcmm#back(Reservation, PhysMem, long) */
    public Reservation back(PhysMem memory) {
        vcm.vcmm().back(this, memory, 0);
        return this;
    }

    /** Backs it with {@code memory} from {@code offset}. @see Vcmm#back(Reservation, PhysMem, long) */
    public Reservation back(PhysMem memory, long offset) {
        vcm.vcmm().back(this, memory, offset);
        return this;
    }

    /** Removes the mappings. @see Vcmm#unback(Reservation) */
    public Reservation unback() {
        vcm.vcmm().unback(this);
        return this;
    }

    /** Returns the range to the VCM. @see Vcmm#unreserve(Reservation) */
    public void unreserve() {
        vcm.vcmm().unreserve(this);
    }

    @Override
    public String toString() {
        return String.format("Reservation{%s 0x%x+0x%x %s%s%s}", vcm.name(), address, length, attributes,
            isBacked() ? ", backed" : "", released ? ", released" : "");
    }
}
