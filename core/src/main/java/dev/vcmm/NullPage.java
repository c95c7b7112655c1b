package dev.vcmm;

import java.util.Objects;

/**
 * The null page of a {@link Vcmm}: one 4 KiB page of zeros that every unbound page of every sparse reservation maps
 * read-only (see {@link Vcm#reserveSparse}). It is taken on the first sparse reservation from the first non-secure
 * memory type of the bus ({@link ChunkPolicy#PAGES_4K}), zeroed explicitly (whatever the type's zero-on-handoff
 * setting), and kept for the life of the {@code Vcmm}: no caller ever holds its {@link PhysMem}, every sparse
 * reservation counts one backing of it (so {@code free} would be refused anyway), and it is never registered in the
 * reverse map, so {@code whoMaps} never reports it as a mapping of user memory.
 *
 * <p>Nothing writes it: every mapping of it is read-only, a device's write to it is dropped
 * ({@link Device}'s DMA engine checks {@link #holds(long)} on a permission fault), and {@code Vcmm.translate} and
 * {@code copy} see an unbound page of a sparse reservation as unbound (-1), not as the null page.
 *
 * <p><b>Thread-safety:</b> thread-safe. {@link #page()} allocates once under the object's monitor;
 * {@link #holds(long)} reads one volatile {@code long} and takes no lock (it runs on the DMA path).
 */
final class NullPage {

    /** The page's size. */
    static final long SIZE = 4096;

    private final Bus bus;
    /** The page, or {@code null} before the first sparse reservation; written once under the monitor. */
    private volatile PhysMem page;
    /** The page's physical address, or -1; written once (release) after the page is zeroed. */
    private volatile long pa = -1;

    NullPage(Bus bus) {
        this.bus = Objects.requireNonNull(bus, "bus");
    }

    /**
     * {@return the null page, allocated and zeroed on the first call}
     *
     * @throws IllegalStateException    if the bus has no non-secure memory type
     * @throws VcmmOutOfMemoryException if that memory type has no free page
     */
    synchronized PhysMem page() {
        PhysMem p = page;
        if (p != null) {
            return p;
        }
        MemoryType m = bus.firstNonSecure();
        if (m == null) {
            throw new IllegalStateException("sparse reservations need a non-secure memory type for the null page; none exists");
        }
        p = m.physAlloc(SIZE, ChunkPolicy.PAGES_4K);
        long at = p.physicalAddress(0);
        m.memory().zero(at, SIZE);
        page = p;
        pa = at;
        return p;
    }

    /** {@return whether physical address {@code address} lies in the null page} */
    boolean holds(long address) {
        long p = pa;
        return p >= 0 && address - p >= 0 && address - p < SIZE;
    }

    /** {@return whether {@code pm} is the null page} */
    boolean is(PhysMem pm) {
        return pm != null && pm == page;
    }

    /** {@return the null page's physical address, or -1 before the first sparse reservation} */
    long address() {
        return pa;
    }
}
