package dev.vcmm.ffm;

import dev.vcmm.ChunkPolicy;
import dev.vcmm.MemoryType;
import dev.vcmm.PhysAllocOptions;
import dev.vcmm.PhysMem;
import dev.vcmm.Reservation;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.Vcmm;

import java.lang.foreign.MemorySegment;
import java.util.Objects;

/**
 * The allocator face of vcmm, for users who just want memory: one call reserves address space, allocates
 * physical chunks by a policy and maps them, and returns a {@link HostBuffer} with its {@link MemorySegment}.
 * <pre>{@code
 * try (HostBuffer b = HostBuffers.allocate(vcmm, vcmm.memoryType("ddr"), 64 << 20, ChunkPolicy.HUGE)) {
 *     MemorySegment s = b.segment();   // 64 MiB, virtually contiguous, made of 2 MiB chunks
 *     s.fill((byte) 1);
 * }                                     // unmapped, address space released, chunks freed
 * }</pre>
 *
 * <p><b>Thread-safety:</b> stateless; thread-safe. Each buffer is a HOST VCM of its own, so buffers are made and
 * closed in parallel; they meet only in the memory type's lock-free allocator and the graph lock taken to add and
 * remove the VCM.
 */
public final class HostBuffers {

    private HostBuffers() {
    }

    /**
     * Allocates {@code length} bytes, read-write.
     *
     * @param vcmm       the manager whose HOST VCM holds the buffer
     * @param memoryType where the physical chunks come from
     * @param length     bytes, positive
     * @param policy     the chunk sizes, largest first; each must be at least the host page size
     * @return the buffer; the caller closes it
     * @throws UnsupportedOperationException   where HOST VCMs are unavailable
     * @throws IllegalArgumentException        for a bad length, or chunks the host cannot map
     * @throws dev.vcmm.VcmmOutOfMemoryException if the memory type has too little free memory
     */
    public static HostBuffer allocate(Vcmm vcmm, MemoryType memoryType, long length, ChunkPolicy policy) {
        Objects.requireNonNull(vcmm, "vcmm");
        Objects.requireNonNull(memoryType, "memoryType");
        Objects.requireNonNull(policy, "policy");
        if (length <= 0) {
            throw new IllegalArgumentException("length=" + length + " must be positive");
        }
        vcmm.hostUnavailableReason().ifPresent(why -> {
            throw new UnsupportedOperationException("HOST VCMs are unavailable here: " + why);
        });
        PhysMem pm = vcmm.physAlloc(memoryType, length, policy, PhysAllocOptions.DEFAULT);
        Vcm vcm = null;
        Reservation r = null;
        try {
            long size = pm.length();
            // aligned to the largest power of two up to 2 MiB (huge-page friendly), at least 64 KiB (any host page)
            long align = Math.clamp(Long.highestOneBit(size), 64L << 10, 2L << 20);
            vcm = vcmm.createHostVcm(size, align);
            r = vcm.reserveAt(vcm.start(), size, ReservationAttributes.RW);
            r.back(pm);
            MemorySegment s = HostSegments.segment(r);
            return new HostBuffer(vcm, r, pm, size == length ? s : s.asSlice(0, length));
        } catch (RuntimeException e) {
            undo(e, pm, vcm, r);
            throw e;
        }
    }

    private static void undo(RuntimeException e, PhysMem pm, Vcm vcm, Reservation r) {
        try {
            if (r != null) {
                if (r.isBacked()) {
                    r.unback();
                }
                r.unreserve();
            }
            if (vcm != null) {
                vcm.free();
            }
            pm.free();
        } catch (RuntimeException undo) {
            e.addSuppressed(undo);
        }
    }
}
