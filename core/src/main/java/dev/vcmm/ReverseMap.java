package dev.vcmm;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicReferenceArray;

/**
 * The reverse map: physical memory to the reservations it backs. Answers {@link Vcmm#whoMaps(long)},
 * {@link Vcmm#reservationsOf(PhysMem)} and, through them, the cross-VCM {@link Vcmm#translate(Vcm, long, Vcm)}.
 *
 * <p><b>Thread-safety:</b> thread-safe. {@link #register} and {@link #unregister} add and remove a reservation in
 * the allocation's record by CAS (lock-free); the record's monitor, and the handle pool's, are taken only the first
 * time an allocation is backed (to publish its handle and write its frame entries, once, however many registrations
 * race) and when it is freed (never per chunk, nor per back or unback of an allocation backed before). Queries take
 * no lock and are weakly consistent while backings change: they see each reservation registered or not, never a torn
 * entry, and check every frame entry they follow against the allocation it names.
 *
 * <h2>Design: a frame table, as Linux's struct page array</h2>
 * Each memory type has a frame table, one 64-bit entry per 4 KiB page frame, in leaves of 512 entries (one 2 MiB
 * region) allocated on first use. Only the entry of a chunk's <em>first</em> frame is written, so registering an
 * allocation costs one store per chunk whatever the chunk's size and however many allocations are live, and no heap
 * object is made per chunk. A query finds the chunk holding {@code pa} from the chunks' natural alignment: a chunk of
 * order {@code k} starts at {@code pa} rounded down to {@code 4096 << k}, so probing each order from 0 up finds it in
 * at most {@code maxOrder + 1} loads.
 * <pre>
 *   entry (64 bits), 0 = no chunk starts in this frame
 *    63                     32 31                       6 5         0
 *   +-------------------------+--------------------------+-----------+
 *   |  handle of the PhysMem  |  index of the chunk in it |  order + 1 |
 *   +-------------------------+--------------------------+-----------+
 * </pre>
 * Handles index a table of registered allocations (recycled when an allocation is freed), each with the set of
 * reservations it backs. The record of an allocation hangs off the {@link PhysMem} itself
 * ({@link PhysMem#registration}), so finding it is one field load, not a lookup in a map of every live allocation:
 * the cost of a registration does not grow with the number of live allocations, and no map node is kept per buffer.
 * (A {@link PhysMem} belongs to one VCMM's memory type, so one reverse map at most ever records it.) The record,
 * its handle and its frame entries stay after the allocation's last reservation leaves (a query that follows an
 * entry then finds a record with no reservation: nothing is mapped), so that backing it again allocates nothing,
 * takes no handle and writes no frame entry: the frame entries are written at an allocation's first back and
 * cleared when it is freed, where the allocator's own work per chunk is done too.
 */
final class ReverseMap {

    private static final VarHandle LONGS = MethodHandles.arrayElementVarHandle(long[].class);
    private static final int FRAME_SHIFT = 12;
    private static final int LEAF_SHIFT = 9;
    private static final int LEAF = 1 << LEAF_SHIFT;
    private static final int INDEX_BITS = 26;
    private static final int ORDER_BITS = 6;
    /** The most chunks an allocation may have to be found by {@link #whoMaps}. */
    static final int MAX_CHUNKS = 1 << INDEX_BITS;

    /**
     * The record of one allocation: its handle, and what it backs. Made on the allocation's first registration and
     * kept on it, with its handle, until the allocation is freed ({@link #forget}), so backing the same allocation
     * again allocates nothing and takes no handle. What it backs is one {@link Reservation} (the usual case: no
     * array) or an array of two or more, replaced whole on every change by CAS, read without a lock.
     */
    static final class Registered {
        final PhysMem memory;
        /** The map that made it: {@link PhysMem}'s free tells it to recycle the handle. */
        final ReverseMap owner;
        /**
         * Published in {@link #byHandle} from the first registration until the allocation is freed, else -1; changed
         * under this record's monitor (and the pool's). Kept across unback and back, so re-backing takes no handle.
         */
        int handle = -1;
        /**
         * Whether its chunks' frame entries are written: from its first registration until the allocation is freed
         * (set under this record's monitor, read without it).
         */
        volatile boolean framed;
        /** Null, one {@link Reservation}, or a {@code Reservation[]} of two or more; changed by CAS only. */
        volatile Object reservations;

        private static final VarHandle RESERVATIONS;

        static {
            try {
                RESERVATIONS = MethodHandles.lookup().findVarHandle(Registered.class, "reservations", Object.class);
            } catch (ReflectiveOperationException e) {
                throw new ExceptionInInitializerError(e);
            }
        }

        Registered(PhysMem memory, ReverseMap owner) {
            this.memory = memory;
            this.owner = owner;
        }

        PhysMem memory() {
            return memory;
        }

        /** {@return the reservations now (a snapshot array)} */
        Reservation[] snapshot() {
            Object o = reservations;
            return o == null ? NONE : o instanceof Reservation r ? new Reservation[] {r} : (Reservation[]) o;
        }

        /** Adds {@code r} (no change if it is there): one CAS in the usual case of a first reservation. */
        void add(Reservation r) {
            for (;;) {
                Object o = reservations;
                Object n = with(o, r);
                if (n == o || RESERVATIONS.compareAndSet(this, o, n)) {
                    return;
                }
            }
        }

        /** Removes {@code r} (no change if it is not there). @return whether any reservation is left */
        boolean remove(Reservation r) {
            for (;;) {
                Object o = reservations;
                Object n = without(o, r);
                if (n == o || RESERVATIONS.compareAndSet(this, o, n)) {
                    return n != null;
                }
            }
        }

        private static Object with(Object o, Reservation r) {
            if (o == null) {
                return r;
            }
            if (o instanceof Reservation one) {
                return one == r ? o : new Reservation[] {one, r};
            }
            Reservation[] a = (Reservation[]) o;
            for (Reservation x : a) {
                if (x == r) {
                    return o;
                }
            }
            Reservation[] b = java.util.Arrays.copyOf(a, a.length + 1);
            b[a.length] = r;
            return b;
        }

        private static Object without(Object o, Reservation r) {
            if (o == null) {
                return null;
            }
            if (o instanceof Reservation one) {
                return one == r ? null : o;
            }
            Reservation[] a = (Reservation[]) o;
            for (int i = 0; i < a.length; i++) {
                if (a[i] == r) {
                    if (a.length == 2) {
                        return a[1 - i];
                    }
                    Reservation[] b = new Reservation[a.length - 1];
                    System.arraycopy(a, 0, b, 0, i);
                    System.arraycopy(a, i + 1, b, i, a.length - i - 1);
                    return b;
                }
            }
            return o;
        }
    }

    private static final Reservation[] NONE = new Reservation[0];

    /** The frame table of one memory type. */
    private static final class FrameTable {
        final MemoryType type;
        final AtomicReferenceArray<long[]> leaves;

        FrameTable(MemoryType type) {
            this.type = type;
            long frames = type.size() >>> FRAME_SHIFT;
            this.leaves = new AtomicReferenceArray<>((int) ((frames + LEAF - 1) >>> LEAF_SHIFT));
        }

        long get(long frame) {
            long[] leaf = leaves.get((int) (frame >>> LEAF_SHIFT));
            return leaf == null ? 0 : (long) LONGS.getAcquire(leaf, (int) (frame & (LEAF - 1)));
        }

        void set(long frame, long entry) {
            int i = (int) (frame >>> LEAF_SHIFT);
            long[] leaf = leaves.get(i);
            if (leaf == null) {
                leaf = new long[LEAF];
                if (!leaves.compareAndSet(i, null, leaf)) {
                    leaf = leaves.get(i); // another registration made it first
                }
            }
            LONGS.setRelease(leaf, (int) (frame & (LEAF - 1)), entry); // the entry after the record it names
        }
    }

    private final MemoryType[] types;
    private final FrameTable[] tables;
    /** Handle -> registration; grown and recycled under {@link #handles}' monitor, read without it. */
    private volatile Registered[] byHandle = new Registered[64];
    private final HandlePool handles = new HandlePool();
    /** First registrations that found the entries already written by a racing one (a rare path; for tests). */
    private final java.util.concurrent.atomic.AtomicLong lostFramings = new java.util.concurrent.atomic.AtomicLong();

    ReverseMap(MemoryType[] types) {
        this.types = types.clone();
        this.tables = new FrameTable[types.length];
        for (int i = 0; i < types.length; i++) {
            tables[i] = new FrameTable(types[i]);
        }
    }

    /** Handles in use and free, recycled lowest-last; a monitor held per allocation registration, never per chunk. */
    private static final class HandlePool {
        int next;
        int[] free = new int[16];
        int freeCount;
    }

    /**
     * Records that {@code r} is backed by {@code memory}. The allocation's chunks enter the frame table at its first
     * registration and stay there until it is freed, so a later back of the same allocation (the usual cycle of a
     * buffer mapped per transfer) writes no frame entry and takes no lock: one CAS on the record's reservations.
     */
    void register(Reservation r, PhysMem memory) {
        Registered reg = memory.registration;
        if (reg == null) {
            Registered made = new Registered(memory, this);
            reg = PhysMem.REGISTRATION.compareAndSet(memory, null, made) ? made : memory.registration;
        }
        if (!reg.framed) {
            frame(reg);
        }
        reg.add(r);
    }

    /** Publishes the handle of {@code reg} and writes its chunks' frame entries, once (under the record's monitor). */
    private void frame(Registered reg) {
        synchronized (reg) {
            if (reg.framed) {
                lostFramings.incrementAndGet(); // another registration of the same allocation did it first
                return;
            }
            if (reg.handle < 0) {
                reg.handle = publish(reg);
            }
            PhysMem memory = reg.memory;
            FrameTable t = table(memory.memoryType());
            int n = memory.chunkCount();
            if (n <= MAX_CHUNKS) {
                for (int i = 0; i < n; i++) {
                    t.set(frame(t, memory.chunkPa(i)), entry(reg.handle, i, memory.chunkOrder(i)));
                }
            }
            reg.framed = true; // volatile: after the entries, so a registration that reads it true skips them
        }
    }

    /**
     * Records that {@code r} no longer is backed by {@code memory}: one CAS. The frame entries stay (a query that
     * follows one finds the record with no reservation: nothing mapped) until the allocation is freed.
     */
    void unregister(Reservation r, PhysMem memory) {
        Registered reg = memory.registration;
        if (reg != null) {
            reg.remove(r);
        }
    }

    /**
     * Clears the frame entries of an allocation being freed and recycles its handle. Called by {@link PhysMem}'s free
     * once the allocation is marked freed and backs nothing, so no registration of it runs now or can follow.
     */
    static void forget(PhysMem memory) {
        Registered reg = memory.registration;
        if (reg == null) {
            return;
        }
        synchronized (reg) {
            if (reg.framed) {
                FrameTable t = reg.owner.table(memory.memoryType());
                if (memory.chunkCount() <= MAX_CHUNKS) {
                    for (int i = 0, n = memory.chunkCount(); i < n; i++) {
                        t.set(frame(t, memory.chunkPa(i)), 0);
                    }
                }
                reg.framed = false;
            }
            if (reg.handle >= 0) {
                reg.owner.freeHandle(reg.handle);
                reg.handle = -1;
            }
        }
    }

    /** @return the reservations {@code memory} backs now (a snapshot) */
    List<Reservation> reservationsOf(PhysMem memory) {
        Registered reg = memory.registration;
        return reg == null ? List.of() : List.of(reg.snapshot());
    }

    /** @return every place {@code pa} is mapped: reservation and the address of {@code pa} in it */
    List<Mapping> whoMaps(long pa) {
        for (FrameTable t : tables) {
            MemoryType type = t.type;
            if (pa < type.base() || pa - type.base() >= type.size()) {
                continue;
            }
            for (int order = 0; order <= type.maxOrder(); order++) {
                long head = pa & -(1L << (FRAME_SHIFT + order));
                if (head < type.base()) {
                    break;
                }
                long e = t.get(frame(t, head));
                if (e == 0 || (int) (e & ((1 << ORDER_BITS) - 1)) != order + 1) {
                    continue;
                }
                Registered reg = registered((int) (e >>> 32));
                int index = (int) ((e >>> ORDER_BITS) & (MAX_CHUNKS - 1));
                if (reg == null || index >= reg.memory().chunkCount() || reg.memory().chunkPa(index) != head) {
                    return List.of(); // changed under us: the chunk is being registered or unregistered
                }
                long pmOffset = reg.memory().chunkOffset(index) + (pa - head);
                List<Mapping> out = new ArrayList<>();
                for (Reservation r : reg.snapshot()) {
                    for (long off : Bindings.offsetsOf(r, reg.memory(), pmOffset)) { // the backing, and sub-range bindings
                        out.add(new Mapping(r, r.address() + off));
                    }
                }
                return out;
            }
            return List.of();
        }
        return List.of();
    }

    /** @return how many first registrations found the frame entries written by a racing one (for tests) */
    long lostFramings() {
        return lostFramings.get();
    }

    /** @return the number of allocations registered now */
    int registeredCount() {
        int n = 0;
        for (Registered reg : byHandle) {
            if (reg != null && reg.reservations != null) {
                n++;
            }
        }
        return n;
    }

    /** @return the handles in use: one per allocation backed at least once and not yet freed (a scan: for tests) */
    int handlesInUse() {
        int n = 0;
        for (Registered reg : byHandle) {
            n += reg != null ? 1 : 0;
        }
        return n;
    }

    /** @return the non-zero frame entries of every frame table (a full scan: for tests) */
    long liveFrameEntries() {
        long n = 0;
        for (FrameTable t : tables) {
            for (int i = 0; i < t.leaves.length(); i++) {
                long[] leaf = t.leaves.get(i);
                if (leaf != null) {
                    for (long e : leaf) {
                        n += e != 0 ? 1 : 0;
                    }
                }
            }
        }
        return n;
    }

    private FrameTable table(MemoryType type) {
        for (FrameTable t : tables) {
            if (t.type == type) {
                return t;
            }
        }
        throw new IllegalArgumentException("memoryType=" + type.name() + " is not one of this VCMM's");
    }

    private static long frame(FrameTable t, long pa) {
        return (pa - t.type.base()) >>> FRAME_SHIFT;
    }

    private static long entry(int handle, int index, int order) {
        return ((long) handle << 32) | ((long) index << ORDER_BITS) | (order + 1);
    }

    private Registered registered(int handle) {
        Registered[] a = byHandle;
        return handle < a.length ? a[handle] : null;
    }

    /** Takes a handle for {@code reg} and publishes it in {@link #byHandle}, in one hold of the pool's monitor. */
    private int publish(Registered reg) {
        synchronized (handles) {
            int handle = handles.freeCount > 0 ? handles.free[--handles.freeCount] : handles.next++;
            Registered[] a = byHandle;
            if (handle >= a.length) {
                a = java.util.Arrays.copyOf(a, Math.max(a.length * 2, handle + 1));
            }
            a[handle] = reg;
            byHandle = a; // volatile: the record before any frame entry that names it
            return handle;
        }
    }

    private void freeHandle(int handle) {
        synchronized (handles) {
            Registered[] a = byHandle;
            a[handle] = null;
            byHandle = a;
            if (handles.freeCount == handles.free.length) {
                handles.free = java.util.Arrays.copyOf(handles.free, handles.free.length * 2);
            }
            handles.free[handles.freeCount++] = handle;
        }
    }
}
