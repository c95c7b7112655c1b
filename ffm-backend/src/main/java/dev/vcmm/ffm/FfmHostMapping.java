package dev.vcmm.ffm;

import dev.vcmm.spi.HostMapper;
import dev.vcmm.spi.HostMapping;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * The backing of one HOST reservation as {@link MmapHostMapper} made it, and the owner of the lifetime of every
 * {@link MemorySegment} view of it.
 *
 * <p><b>Thread-safety:</b> thread-safe; the state changes under the object's monitor, off the access path. A view
 * is a segment of a shared {@link Arena} this mapping owns (views never close it); {@link #close()} closes that
 * arena, and every arena of a view spanning several reservations ({@link #addView}), BEFORE it returns the range to
 * {@code PROT_NONE}. Closing a shared arena is a handshake with every thread: an access through a view either
 * completed before it, or fails after it with the arena's {@link IllegalStateException}; none can reach the range
 * once it has no access, so a late access never faults the JVM.
 */
final class FfmHostMapping implements HostMapping {

    private final MmapHostMapper mapper;
    private final long address;
    private final long length;
    private final int prot;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment view;
    /** Arenas of views over this and neighbouring mappings; closed with this one. Guarded by {@code this}. */
    private final List<Arena> shared = new ArrayList<>();
    /** Guarded by {@code this}. */
    private boolean closed;

    FfmHostMapping(MmapHostMapper mapper, long address, long length, int prot) {
        this.mapper = mapper;
        this.address = address;
        this.length = length;
        this.prot = prot;
        MemorySegment v = MemorySegment.ofAddress(address).reinterpret(length, arena, null);
        this.view = writable() ? v : v.asReadOnly();
    }

    @Override
    public long address() {
        return address;
    }

    @Override
    public long length() {
        return length;
    }

    /** {@return whether the memory may be written; a view of a read-only mapping is read-only} */
    boolean writable() {
        return (prot & HostMapper.PROT_WRITE) != 0;
    }

    /**
     * @return the view of the whole range
     * @throws IllegalStateException         if the mapping is closed (the reservation was unbacked)
     * @throws UnsupportedOperationException if the reservation does not allow reads (no view could be used safely)
     */
    synchronized MemorySegment segment() {
        checkReadable();
        if (closed) {
            throw new IllegalStateException("already closed: the HOST mapping at 0x" + Long.toHexString(address) + " was unbacked");
        }
        return view;
    }

    /**
     * Ties {@code viewArena} to this mapping: it is closed when this mapping is.
     *
     * @throws IllegalStateException if this mapping is closed already
     */
    synchronized void addView(Arena viewArena) {
        checkReadable();
        if (closed) {
            throw new IllegalStateException("already closed: the HOST mapping at 0x" + Long.toHexString(address) + " was unbacked");
        }
        shared.add(viewArena);
    }

    private void checkReadable() {
        if ((prot & HostMapper.PROT_READ) == 0) {
            throw new UnsupportedOperationException("the HOST mapping at 0x" + Long.toHexString(address)
                + " does not allow reads: it has no memory segment view");
        }
    }

    @Override
    public synchronized boolean isClosed() {
        return closed;
    }

    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        for (Arena a : shared) {
            closeArena(a);
        }
        shared.clear();
        closeArena(arena); // throws, leaving the mapping as it is, if a view is held (e.g. by a running downcall)
        closed = true;
        mapper.noAccess(address, length); // only now: no view can reach the range any more
    }

    /** Closes {@code a} unless it is closed already (perhaps concurrently, by a neighbour). */
    static void closeArena(Arena a) {
        if (!a.scope().isAlive()) {
            return;
        }
        try {
            a.close();
        } catch (IllegalStateException e) {
            if (a.scope().isAlive()) {
                throw new IllegalStateException("busy: a view of a HOST mapping is in use and cannot be ended now: " + e.getMessage(), e);
            }
        }
    }

    @Override
    public String toString() {
        return String.format("FfmHostMapping{0x%x+0x%x prot=%d%s}", address, length, prot, isClosed() ? ", closed" : "");
    }
}
