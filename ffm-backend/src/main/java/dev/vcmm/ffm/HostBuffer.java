package dev.vcmm.ffm;

import dev.vcmm.PhysMem;
import dev.vcmm.Reservation;
import dev.vcmm.Vcm;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * Memory from {@link HostBuffers#allocate}: physical chunks of a memory type, mapped virtually contiguous into
 * the process, with the {@link MemorySegment} to use them. Closing it returns everything: the mapping, the
 * address space and the physical chunks.
 *
 * <p><b>Thread-safety:</b> thread-safe. The segment may be used from any thread; {@link #close()} is idempotent,
 * and an access through the segment during or after it fails with an {@link IllegalStateException}.
 */
public final class HostBuffer implements AutoCloseable {

    private final Vcm vcm;
    private final Reservation reservation;
    private final PhysMem memory;
    private final MemorySegment segment;
    private final AtomicBoolean closed = new AtomicBoolean();

    HostBuffer(Vcm vcm, Reservation reservation, PhysMem memory, MemorySegment segment) {
        this.vcm = vcm;
        this.reservation = reservation;
        this.memory = memory;
        this.segment = segment;
    }

    /** @return the memory, of the length asked for; it is virtually contiguous and its address is real */
    public MemorySegment segment() {
        if (closed.get()) {
            throw new IllegalStateException("already closed: " + this);
        }
        return segment;
    }

    /** @return the bytes asked for */
    public long length() {
        return segment.byteSize();
    }

    /** @return the physical allocation behind it (its chunks say where every byte is) */
    public PhysMem physMem() {
        return memory;
    }

    /** @return the HOST reservation it is mapped at (devices may share the memory through {@link #physMem()}) */
    public Reservation reservation() {
        return reservation;
    }

    /** @return whether {@link #close()} was called */
    public boolean isClosed() {
        return closed.get();
    }

    /**
     * Ends the segment, unmaps, gives the address space back to the system and frees the chunks. Idempotent.
     *
     * @throws dev.vcmm.VcmmBusyException if the memory still backs another reservation (e.g. a device's); the
     *                                    mapping and address space are gone all the same
     */
    @Override
    public void close() {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        reservation.unback();
        reservation.unreserve();
        vcm.free();
        memory.free();
    }

    @Override
    public String toString() {
        return "HostBuffer{0x" + Long.toHexString(reservation.address()) + "+" + segment.byteSize() + ", " + memory
            + (closed.get() ? ", closed" : "") + "}";
    }
}
