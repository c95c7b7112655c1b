package dev.vcmm;

import dev.vcmm.spi.HostMapper;

import java.util.ArrayList;
import java.util.List;
import java.util.ServiceLoader;

/**
 * Which {@link HostMapper} gives a {@link Vcmm}'s HOST VCMs their real address space: the one the builder named, or
 * the available one of highest priority that {@link ServiceLoader} finds; and the reservation of a new HOST VCM's
 * range. What a HOST VCM does when it is backed, unbacked and freed is its kind's, {@link VcmKind.Host}.
 *
 * <p><b>Thread-safety:</b> thread-safe: the mapper is found once (racing first calls may each look, and agree).
 */
final class HostMappers {

    /** The default alignment of a HOST VCM: 2 MiB, so that 2 MiB chunks can land on huge-page boundaries. */
    static final long DEFAULT_ALIGNMENT = 2L << 20;

    private final HostMapper configured;
    private volatile HostMapper discovered;
    private volatile String unavailable;

    /** @param configured the mapper the builder named, or {@code null} to discover one */
    HostMappers(HostMapper configured) {
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
}
