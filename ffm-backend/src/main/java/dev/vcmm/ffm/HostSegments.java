package dev.vcmm.ffm;

import dev.vcmm.Reservation;
import dev.vcmm.Vcm;
import dev.vcmm.spi.HostMapping;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * {@link MemorySegment} views of backed HOST reservations: real, virtually contiguous memory over physically
 * scattered chunks, the same bytes the simulated devices reach through their IOMMUs.
 *
 * <p><b>Thread-safety:</b> stateless; thread-safe. A view's lifetime is its backing's: once a reservation under it
 * is unbacked (or the {@link dev.vcmm.Vcmm} closed) every access through the view fails with an
 * {@link IllegalStateException} ("Already closed"), never with a fault. A view of a read-only reservation is
 * read-only; a reservation that does not allow reads has no view.
 */
public final class HostSegments {

    private HostSegments() {
    }

    /**
     * {@return the view of a backed HOST reservation: {@code r.length()} bytes at address {@code r.address()}}
     *
     * @param r a backed reservation of a HOST VCM
     * @throws IllegalArgumentException if {@code r} is not in a HOST VCM
     * @throws IllegalStateException    if it is not backed
     */
    public static MemorySegment segment(Reservation r) {
        return mapping(r).segment();
    }

    /**
     * A view spanning several adjacent backed reservations of a HOST VCM, e.g. the two copies of a ring buffer, or
     * the pieces of a buffer grown by backing more reservations after it. It ends when any of them is unbacked.
     * Each call makes one shared arena, closed with the first of those backings to go.
     *
     * @param vcm     a HOST VCM
     * @param address the first byte, inside a reservation
     * @param length  bytes; {@code [address, address + length)} must be covered by backed reservations with no gap
     * @return the view, {@code length} bytes at address {@code address}
     * @throws IllegalArgumentException if the VCM is not HOST or a byte of the range is not in a reservation
     * @throws IllegalStateException    if a reservation of the range is not backed
     */
    public static MemorySegment segment(Vcm vcm, long address, long length) {
        Objects.requireNonNull(vcm, "vcm");
        if (vcm.kind() != Vcm.Kind.HOST) {
            throw new IllegalArgumentException("vcm=" + vcm + " is not a HOST VCM");
        }
        if (length <= 0 || address + length < address) {
            throw new IllegalArgumentException("length=" + length + " must be positive (address=0x" + Long.toHexString(address) + ")");
        }
        List<FfmHostMapping> parts = new ArrayList<>();
        boolean writable = true;
        for (long at = address; at - address < length; ) {
            Reservation r = vcm.reservationAt(at);
            if (r == null) {
                throw new IllegalArgumentException(String.format("address=0x%x is in no reservation of %s", at, vcm));
            }
            FfmHostMapping m = mapping(r);
            parts.add(m);
            writable &= m.writable();
            at = r.address() + r.length();
        }
        Arena arena = Arena.ofShared();
        try {
            for (FfmHostMapping m : parts) {
                m.addView(arena);
            }
        } catch (RuntimeException e) {
            FfmHostMapping.closeArena(arena); // the parts already tied to it will find it closed
            throw e;
        }
        MemorySegment view = MemorySegment.ofAddress(address).reinterpret(length, arena, null);
        return writable ? view : view.asReadOnly();
    }

    private static FfmHostMapping mapping(Reservation r) {
        Objects.requireNonNull(r, "reservation");
        if (r.vcm().kind() != Vcm.Kind.HOST) {
            throw new IllegalArgumentException(r + " is not in a HOST VCM: only HOST reservations are process memory");
        }
        HostMapping m = r.hostMapping();
        if (m == null) {
            throw new IllegalStateException("not backed: " + r);
        }
        if (!(m instanceof FfmHostMapping f)) {
            throw new IllegalArgumentException(r + " was mapped by another HostMapper (" + m + "), not the ffm backend's");
        }
        return f;
    }
}
