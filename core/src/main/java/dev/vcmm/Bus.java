package dev.vcmm;

import java.util.List;
import java.util.Objects;

/**
 * The physical address map a device sees: which {@link MemoryType} answers at each physical address, and which
 * addresses are secure. Built once by the {@link Vcmm} from its memory types (which never change after it is
 * built) and handed to every {@link Device} and {@link Vcm} at creation, so that neither asks the manager for
 * these facts. A lookup scans an array of a handful of entries: it runs on every IOTLB miss of a DMA.
 *
 * <p><b>Thread-safety:</b> immutable, except the {@link NullPage} it carries, which allocates its page once.
 */
final class Bus {

    private final MemoryType[] types;
    /** The null page that unbound pages of sparse reservations map; allocated on first use. */
    private final NullPage nullPage = new NullPage(this);

    /** @param types the memory types, pairwise disjoint (the builder checks it) */
    Bus(List<MemoryType> types) {
        this.types = types.toArray(new MemoryType[0]);
        for (MemoryType m : this.types) {
            Objects.requireNonNull(m, "memory type");
        }
    }

    /** @return the memory type holding physical address {@code pa}, or {@code null} if none does */
    MemoryType at(long pa) {
        for (MemoryType m : types) {
            if (pa >= m.base() && pa - m.base() < m.size()) {
                return m;
            }
        }
        return null;
    }

    /** @return the null page of sparse reservations */
    NullPage nullPage() {
        return nullPage;
    }

    /** @return the first non-secure memory type, or {@code null} */
    MemoryType firstNonSecure() {
        for (MemoryType m : types) {
            if (!m.isSecure()) {
                return m;
            }
        }
        return null;
    }

    /** @return whether {@code pa} lies in a secure memory type */
    boolean isSecure(long pa) {
        MemoryType m = at(pa);
        return m != null && m.isSecure();
    }

    /** @return whether {@code m} is one of this bus's memory types (identity) */
    boolean holds(MemoryType m) {
        for (MemoryType t : types) {
            if (t == m) {
                return true;
            }
        }
        return false;
    }

    /** @throws IllegalArgumentException if {@code m} is not one of this bus's memory types (a foreign handle) */
    void checkHolds(MemoryType m) {
        Objects.requireNonNull(m, "memoryType");
        if (!holds(m)) {
            throw new IllegalArgumentException("foreign handle: memoryType=" + m.name() + " does not belong to this Vcmm");
        }
    }
}
