package dev.vcmm.ffm;

import dev.vcmm.PhysMem;
import dev.vcmm.Reservation;
import dev.vcmm.Vcm;

import dev.vcmm.VcmmBusyException;

import java.lang.foreign.MemorySegment;

/**
 * Memory from {@link HostBuffers#allocate}: physical chunks of a memory type, mapped virtually contiguous into
 * the process, with the {@link MemorySegment} to use them. Closing it returns everything: the mapping, the
 * address space and the physical chunks. Closing it after its {@link dev.vcmm.Vcmm} was closed does nothing more (the
 * VCMM's close ended everything).
 *
 * <p><b>Thread-safety:</b> thread-safe. The segment may be used from any thread; {@link #close()} is idempotent,
 * and an access through the segment during or after it fails with an {@link IllegalStateException}. Closes are
 * serialised by the buffer's monitor (off the access path); a close that is refused changes nothing and may be
 * retried once the obstacle is gone.
 */
public final class HostBuffer implements AutoCloseable {

    private final Vcm vcm;
    private final Reservation reservation;
    private final PhysMem memory;
    private final MemorySegment segment;
    /** How far {@link #close()} got: {@link #OPEN} until it starts, {@link #CLOSED} once it is done. Written under {@code this}. */
    private volatile int stage = OPEN;

    private static final int OPEN = 0;
    private static final int UNBACKED = 1;
    private static final int UNRESERVED = 2;
    private static final int VCM_FREED = 3;
    private static final int CLOSED = 4;

    HostBuffer(Vcm vcm, Reservation reservation, PhysMem memory, MemorySegment segment) {
        this.vcm = vcm;
        this.reservation = reservation;
        this.memory = memory;
        this.segment = segment;
    }

    /** {@return the memory, of the length asked for; it is virtually contiguous and its address is real} */
    public MemorySegment segment() {
        if (stage != OPEN) {
            throw new IllegalStateException("already closed: " + this);
        }
        return segment;
    }

    /** {@return the bytes asked for} */
    public long length() {
        return segment.byteSize();
    }

    /** {@return the physical allocation behind it (its chunks say where every byte is)} */
    public PhysMem physMem() {
        return memory;
    }

    /** {@return the HOST reservation it is mapped at (devices may share the memory through {@link #physMem()})} */
    public Reservation reservation() {
        return reservation;
    }

    /** {@return whether a {@link #close()} has succeeded (a refused one leaves the buffer open)} */
    public boolean isClosed() {
        return stage == CLOSED;
    }

    /**
     * Ends the segment, unmaps, gives the address space back to the system and frees the chunks. Idempotent once it
     * has succeeded.
     *
     * <p>A close that is refused throws and changes nothing: the buffer stays open, mapped and usable, and a later
     * close succeeds once the obstacle is gone. Two obstacles are checked before anything is done: a view of the
     * segment in use by a native call (its arena cannot be closed), and the memory backing another reservation
     * (e.g. a device's). The one case that is not all-or-nothing is a reservation backed by the same memory on
     * another thread while this close runs: the buffer's own mapping and address space are gone by then, so the
     * close throws {@link VcmmBusyException} with the segment already ended, and a retry after that reservation is
     * unbacked frees the memory (every step done is remembered, none is repeated).
     *
     * @throws IllegalStateException if a view of the segment is in use by a native call ("busy"); nothing changed
     * @throws VcmmBusyException     if the memory still backs another reservation; nothing changed
     */
    @Override
    public synchronized void close() {
        int s = stage;
        if (s == CLOSED) {
            return;
        }
        if (s == OPEN && vcm.vcmm().isClosed()) {
            stage = CLOSED; // Vcmm.close ended every mapping and closed the memory types: nothing is left to give back
            return;
        }
        if (s == OPEN) {
            int others = memory.backingCount() - 1;
            if (others > 0) {
                throw new VcmmBusyException("busy: " + this + " cannot close: its memory still backs " + others
                    + " other reservation(s) (" + vcm.vcmm().reservationsOf(memory).stream().filter(r -> r != reservation).toList()
                    + "); unback them, then close again");
            }
            reservation.unback(); // throws, having changed nothing, if a view is held (e.g. by a native call)
            stage = s = UNBACKED;
        }
        if (s == UNBACKED) {
            reservation.unreserve();
            stage = s = UNRESERVED;
        }
        if (s == UNRESERVED) {
            vcm.free();
            stage = VCM_FREED;
        }
        memory.free(); // refused only if another thread backed a reservation with it since the check above
        stage = CLOSED;
    }

    @Override
    public String toString() {
        return "HostBuffer{0x" + Long.toHexString(reservation.address()) + "+" + segment.byteSize() + ", " + memory
            + (stage == CLOSED ? ", closed" : stage != OPEN ? ", closing" : "") + "}";
    }
}
