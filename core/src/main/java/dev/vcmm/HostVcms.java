package dev.vcmm;

import dev.vcmm.spi.HostMapper;
import dev.vcmm.spi.HostMapping;

import java.util.ArrayList;
import java.util.List;
import java.util.ServiceLoader;

/**
 * The HOST side of a {@link Vcmm}: which {@link HostMapper} gives HOST VCMs their real address space, and
 * the checks and steps that {@link Vcmm} runs for a VCM of {@link Vcm.Kind#HOST} when it creates, backs,
 * unbacks and frees one. Kept apart so that the graph code gains only one-line hooks.
 *
 * <p>A HOST VCM is a range of the process's own address space, reserved with no access when the VCM is
 * created; its reservations are sub-ranges (a reservation's address is the process virtual address).
 * Backing maps every physically contiguous run of the memory at its place with the reservation's
 * permissions; unbacking ends the views and returns the range to no access; freeing the VCM gives the
 * range back to the system.
 *
 * <p><b>Thread-safety:</b> thread-safe: the mapper is found once (racing first calls may each look, and
 * agree); everything else is called under the locks {@link Vcmm} already takes.
 */
final class HostVcms {

    /** The default alignment of a HOST VCM: 2 MiB, so that 2 MiB chunks can land on huge-page boundaries. */
    static final long DEFAULT_ALIGNMENT = 2L << 20;

    private final HostMapper configured;
    private volatile HostMapper discovered;
    private volatile String unavailable;

    /** @param configured the mapper the builder named, or {@code null} to discover one */
    HostVcms(HostMapper configured) {
        this.configured = configured;
    }

    /** @return {@code null} if HOST VCMs work here, else why not */
    String unavailableReason() {
        if (configured != null) {
            return configured.unavailableReason();
        }
        if (discovered == null && unavailable == null) {
            discover();
        }
        return discovered != null ? null : unavailable;
    }

    /** @return the mapper. @throws UnsupportedOperationException saying why HOST VCMs are unavailable */
    HostMapper mapper() {
        String why = unavailableReason();
        if (why != null) {
            throw new UnsupportedOperationException("HOST VCMs are unavailable here: " + why
                + "; every other kind of VCM still works");
        }
        return configured != null ? configured : discovered;
    }

    private void discover() {
        HostMapper best = null;
        List<String> reasons = new ArrayList<>();
        for (HostMapper m : ServiceLoader.load(HostMapper.class)) {
            String why = m.unavailableReason();
            if (why != null) {
                reasons.add(m.name() + ": " + why);
            } else if (best == null || m.priority() > best.priority()) {
                best = m;
            }
        }
        if (best == null) {
            unavailable = reasons.isEmpty()
                ? "no dev.vcmm.spi.HostMapper on the class path (vcmm-ffm-backend provides one on Linux x86-64 and aarch64)"
                : String.join("; ", reasons);
        }
        discovered = best;
    }

    // ---------------------------------------------------------------------------------------------
    // hooks called by Vcmm

    /**
     * Reserves the range of a new HOST VCM.
     *
     * @return its start
     * @throws IllegalArgumentException if the length or alignment is bad
     */
    long reserveRange(HostMapper m, long length, long alignment) {
        long page = m.pageSize();
        if (length <= 0 || length % page != 0) {
            throw new IllegalArgumentException("length=" + length + " must be a positive multiple of the host page size " + page);
        }
        if (Long.bitCount(alignment) != 1 || alignment < page) {
            throw new IllegalArgumentException("alignment=" + alignment + " must be a power of two >= the host page size " + page);
        }
        return m.reserve(length, alignment);
    }

    /** @return {@code alignment} raised to the host page size for a HOST VCM; unchanged for others */
    static long alignment(Vcm vcm, long alignment) {
        return vcm.kind() == Vcm.Kind.HOST ? Math.max(alignment, vcm.hostMapper.pageSize()) : alignment;
    }

    /**
     * Checks a reservation range of a HOST VCM against the host page size (no-op for other kinds).
     *
     * @throws IllegalArgumentException if the address or length is not a multiple of it
     */
    static void checkRange(Vcm vcm, long address, long length) {
        if (vcm.kind() != Vcm.Kind.HOST) {
            return;
        }
        long page = vcm.hostMapper.pageSize();
        if (address % page != 0 || length % page != 0) {
            throw new IllegalArgumentException(String.format("address=0x%x length=0x%x: a HOST reservation must be made of "
                + "whole host pages of %d bytes", address, length, page));
        }
    }

    /**
     * Checks that {@code memory} from {@code offset} can back HOST reservation {@code r}: a non-secure memory
     * type whose physical memory the mapper can map, and every chunk a whole number of host pages at a page-aligned
     * file offset. Nothing is changed.
     *
     * @throws IllegalArgumentException naming the first offending chunk or the reason
     */
    static void checkBack(Reservation r, PhysMem memory, long offset) {
        Vcm vcm = r.vcm();
        if (vcm.kind() != Vcm.Kind.HOST) {
            return;
        }
        HostMapper m = vcm.hostMapper;
        long page = m.pageSize();
        MemoryType type = memory.memoryType();
        if (type.isSecure()) {
            throw new IllegalArgumentException("secure memory " + memory + " cannot be mapped into the host process (" + r + ")");
        }
        m.checkMappable(type.memory());
        if (offset % page != 0) {
            throw new IllegalArgumentException("offset=" + offset + " must be a multiple of the host page size " + page + " to back " + r);
        }
        long end = offset + r.length();
        long at = 0;
        for (PhysMem.Chunk c : memory.chunks()) {
            long cStart = at;
            at += c.size();
            if (at <= offset || cStart >= end) {
                continue;
            }
            if (c.size() < page) {
                throw new IllegalArgumentException("chunk " + c + " of " + memory + " is smaller than the host page size "
                    + Sizes.format(page) + ": it cannot back HOST " + r);
            }
            if ((c.pa() - type.base()) % page != 0) {
                throw new IllegalArgumentException("chunk " + c + " of " + memory + " lies at file offset " + Sizes.hex(c.pa() - type.base())
                    + ", not a multiple of the host page size " + Sizes.format(page) + ": it cannot back HOST " + r);
            }
        }
    }

    /** Maps the memory into the reservation's range; the last step of a back. */
    static HostMapping map(Reservation r, PhysMem memory, long offset) {
        List<HostMapper.Run> runs = new ArrayList<>();
        for (long[] s : Vcmm.slices(memory, offset, r.length())) {
            runs.add(new HostMapper.Run(s[0], s[1], s[2]));
        }
        ReservationAttributes a = r.attributes();
        int prot = (a.read() ? HostMapper.PROT_READ : 0) | (a.write() ? HostMapper.PROT_WRITE : 0)
            | (a.execute() ? HostMapper.PROT_EXEC : 0);
        return r.vcm().hostMapper.map(r.address(), r.length(), prot, memory.memoryType().memory(), runs);
    }

    /**
     * Ends the views and takes the memory away; the first step of an unback.
     *
     * @throws IllegalStateException if a view is held and cannot end now; the mapping stays
     */
    static void unmap(Reservation r) {
        HostMapping m = r.hostMapping;
        if (m != null) {
            m.close();
            r.hostMapping = null;
        }
    }

    /** Gives a freed HOST VCM's range back to the system. */
    static void release(Vcm vcm) {
        if (vcm.kind() == Vcm.Kind.HOST) {
            vcm.hostMapper.release(vcm.start(), vcm.length());
        }
    }

    /**
     * On {@link Vcmm#close()}: closes every mapping of every HOST VCM and releases their ranges, before the
     * memory types close. A VCM whose mapping cannot close keeps its range (safe: the views still work).
     *
     * @return the failures, or {@code null}
     */
    static RuntimeException closeAll(List<Vcm> vcms) {
        RuntimeException failure = null;
        for (Vcm vcm : vcms) {
            if (vcm.kind() != Vcm.Kind.HOST) {
                continue;
            }
            try {
                for (Reservation r : vcm.reservations.values()) {
                    unmap(r);
                }
                vcm.hostMapper.release(vcm.start(), vcm.length());
            } catch (RuntimeException e) {
                if (failure == null) {
                    failure = new IllegalStateException("HOST " + vcm + " could not be released on close: " + e.getMessage(), e);
                } else {
                    failure.addSuppressed(e);
                }
            }
        }
        return failure;
    }
}
