package dev.vcmm;

import java.util.ArrayList;
import java.util.List;

/**
 * What a backed reservation's pages are bound to, where a sub-range unback or remap changed them: an immutable, sorted
 * list of extents of the reservation, each unbound or bound to an offset of a {@code PhysMem}, laid over the
 * reservation's backing (which binds every page no extent covers). A reservation with no extents has no
 * {@code Bindings} at all ({@code null}): the common case costs nothing.
 *
 * <pre>
 *   reservation  [0 ................................................. length)
 *   backing      pm A from offset a: page at o -> A[a + o]
 *   extents          [o1, o1 + n1) unbound      [o2, o2 + n2) -> B[b + (o - o2)]
 * </pre>
 *
 * <p><b>Thread-safety:</b> immutable; a reservation publishes a new one with a volatile write while its backing state
 * is in progress (so changes of one reservation are serialised), and readers take one snapshot.
 */
final class Bindings {

    /**
     * One extent: {@code [offset, offset + length)} of the reservation, bound to {@code memory} from {@code memoryOffset},
     * or unbound when {@code memory} is {@code null}.
     */
    record Extent(long offset, long length, PhysMem memory, long memoryOffset) {

        long end() {
            return offset + length;
        }

        /** @return this extent's part in {@code [from, to)}, or {@code null} */
        Extent clip(long from, long to) {
            long s = Math.max(offset, from);
            long e = Math.min(end(), to);
            if (s >= e) {
                return null;
            }
            return new Extent(s, e - s, memory, memory == null ? -1 : memoryOffset + (s - offset));
        }
    }

    private final List<Extent> extents;

    private Bindings(List<Extent> extents) {
        this.extents = extents;
    }

    /** {@return the extents, by offset, disjoint} */
    List<Extent> extents() {
        return extents;
    }

    /**
     * {@return the bindings with {@code [offset, offset + length)} bound to {@code memory} from {@code memoryOffset}
     * (unbound if {@code memory} is {@code null}); {@code b} may be {@code null}}
     */
    static Bindings with(Bindings b, long offset, long length, PhysMem memory, long memoryOffset) {
        List<Extent> out = new ArrayList<>();
        long end = offset + length;
        for (Extent e : b == null ? List.<Extent>of() : b.extents) {
            Extent left = e.clip(0, offset); // what stays of the extent outside the new one
            Extent right = e.clip(end, Long.MAX_VALUE);
            if (left != null) {
                out.add(left);
            }
            if (right != null) {
                out.add(right);
            }
        }
        out.add(new Extent(offset, length, memory, memoryOffset));
        out.sort((x, y) -> Long.compare(x.offset, y.offset));
        return new Bindings(List.copyOf(out));
    }

    /** @return the extent covering reservation offset {@code o}, or {@code null} (the backing binds it) */
    Extent at(long o) {
        for (Extent e : extents) {
            if (o >= e.offset && o < e.end()) {
                return e;
            }
        }
        return null;
    }

    /** @return whether no page of a reservation of {@code length} bytes is bound (every byte in unbound extents) */
    boolean noneBound(long length) {
        long unbound = 0;
        for (Extent e : extents) {
            if (e.memory == null) {
                unbound += e.length;
            }
        }
        return unbound == length;
    }

    /** @return whether an extent binds pages to {@code pm} */
    boolean uses(PhysMem pm) {
        for (Extent e : extents) {
            if (e.memory == pm) {
                return true;
            }
        }
        return false;
    }

    /** @return the allocations the extents bind, each once */
    List<PhysMem> memories() {
        List<PhysMem> out = new ArrayList<>();
        for (Extent e : extents) {
            if (e.memory != null && !out.contains(e.memory)) {
                out.add(e.memory);
            }
        }
        return out;
    }

    // ---------------------------------------------------------------------------------------------
    // queries over a reservation: its backing and its bindings together

    /**
     * @return the physical address of byte {@code o} of {@code r} (one snapshot of its backing and bindings), or -1 if
     *         it is not backed or that page is unbound
     */
    static long physicalAddress(Reservation r, long o) {
        Reservation.Backing b = r.backing();
        if (b == null) {
            return -1;
        }
        Bindings x = r.bindings();
        Extent e = x == null ? null : x.at(o);
        if (e == null) {
            return b.memory().physicalAddress(b.offset() + o);
        }
        return e.memory == null ? -1 : e.memory.physicalAddress(e.memoryOffset + (o - e.offset));
    }

    /** @return the bytes of {@code r} that sub-range unbacks left unbound (0 without bindings) */
    static long unboundBytes(Reservation r) {
        Bindings x = r.bindings();
        long n = 0;
        for (Extent e : x == null ? List.<Extent>of() : x.extents) {
            if (e.memory == null) {
                n += e.length;
            }
        }
        return n;
    }

    /**
     * @return the offsets of {@code r} that map byte {@code memoryOffset} of {@code pm}: through the backing where no
     *         extent covers it, and through every extent bound to {@code pm}
     */
    static List<Long> offsetsOf(Reservation r, PhysMem pm, long memoryOffset) {
        Reservation.Backing b = r.backing();
        if (b == null) {
            return List.of();
        }
        Bindings x = r.bindings();
        List<Long> out = new ArrayList<>(1);
        if (b.memory() == pm && memoryOffset >= b.offset() && memoryOffset - b.offset() < r.length()) {
            long o = memoryOffset - b.offset();
            if (x == null || x.at(o) == null) {
                out.add(o);
            }
        }
        if (x != null) {
            for (Extent e : x.extents) {
                if (e.memory == pm && memoryOffset >= e.memoryOffset && memoryOffset - e.memoryOffset < e.length) {
                    out.add(e.offset + (memoryOffset - e.memoryOffset));
                }
            }
        }
        return out;
    }
}
