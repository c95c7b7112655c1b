package dev.vcmm;

import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.Attributes;
import dev.vcmm.pagetable.FaultReason;
import dev.vcmm.pagetable.PageTable;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.space.AddressSpaceAllocator;
import dev.vcmm.spi.BlockAllocator;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * A Virtual Contiguous Memory region: an address space {@code [start, start + length)} in which
 * reservations are made and backed. A {@link Kind#VIRTUAL} VCM keeps one page table per distinct
 * page-table format among its associated devices (devices of one format share it); a
 * {@link Kind#ONE_TO_ONE} VCM has none: its device addresses are physical addresses. A {@link Kind#HOST} VCM is a
 * range of this process's address space: backing maps the memory there for real (and into the page tables of any
 * devices associated with it, which then share the process's addresses).
 *
 * <p>The VCM keeps its own invariants: its address-space allocator, its reservations, its page tables (one per
 * format, holding exactly the backed reservations) and its associations change only through its own methods and
 * those of its {@link Reservation}s, under its lock. When a mapping goes away it tells its devices
 * ({@link #invalidate}).
 *
 * <p><b>Thread-safety:</b> thread-safe. Each VCM has a read-write lock: backing and unbacking take it
 * shared (so they run concurrently on different reservations, and the page tables themselves take no
 * lock), while reserve, unreserve, associate, deassociate and free take it exclusively. Queries of the
 * reservations and associations return snapshots.
 */
public final class Vcm {

    /** What a VCM's addresses mean. */
    public enum Kind {
        /** Device addresses translate through page tables. */
        VIRTUAL,
        /** Device addresses are physical addresses; reservations are backed by memory at their own address. */
        ONE_TO_ONE,
        /**
         * A range of this process's own address space (the CPU for real): a reservation's address is a process
         * virtual address, and backing it maps the memory there with {@code mmap}. Needs a
         * {@link dev.vcmm.spi.HostMapper}; see {@link Vcmm#createHostVcm(long)}.
         */
        HOST,
        /**
         * A guest's address space under nested translation: its page tables (stage 1) map device addresses to
         * intermediate physical addresses (IPA) of a host VCM, live in the guest's own memory (IPA), and every read of
         * them is translated by the host VCM's stage-2 table; see {@link Vcmm#createGuestVcm}.
         */
        GUEST
    }

    static final long GRANULE = 4096;

    private final Vcmm vcmm;
    private final String name;
    private final VcmKind kind;
    private final long start;
    private final long length;
    /** The memory types: memory that backs a reservation must be one of them. */
    private final Bus bus;
    /** Where this VCM's page tables come from. */
    private final MemoryType tableMemory;
    /** Registered with on every back, unregistered on every unback. */
    private final ReverseMap reverse;
    private final AddressSpaceAllocator space;
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    /** By address, unsigned order: upper-half addresses are negative longs. */
    private final ConcurrentSkipListMap<Long, Reservation> reservations = new ConcurrentSkipListMap<>(Long::compareUnsigned);
    private final List<Association> associations = new CopyOnWriteArrayList<>();
    /** Guest VCMs whose stage 2 this VCM is ({@link VcmKind.Guest}): they walk its tables. */
    private final List<Vcm> guests = new CopyOnWriteArrayList<>();
    private final Map<PageTableFormat, PageTable> tables = new ConcurrentHashMap<>();
    /**
     * {@link #tables}' values as an array, replaced whole by every change of {@link #tables} (made under the write
     * lock): the back and unback paths iterate it with no iterator object and no hash-map traversal.
     */
    private volatile PageTable[] tableArray = new PageTable[0];
    /** A prebuilt table the VCM maps into but does not own (never closed by it); null if none. */
    private volatile PageTable borrowed;
    /** Its live bounds; changed under the write lock. */
    private final List<Bound> bounds = new CopyOnWriteArrayList<>();
    private volatile boolean freed;
    /** Set by {@link #closeAll()} when the VCMM closes: the VCM is unusable from then on. */
    private volatile boolean closed;
    /** Its owning client was released while others still used it: it frees itself once empty. */
    private volatile boolean orphan;
    /** Dirty tracking of its page tables (off until enabled). */
    private final DirtyTracking dirtyTracking = new DirtyTracking(this);
    /** Page-table entry writes of back, unback, remap and setAttributes; see {@link VcmmStats.VcmStats#pteWrites()}. */
    final PteWrites pteWrites = new PteWrites();

    Vcm(Vcmm vcmm, Bus bus, MemoryType tableMemory, ReverseMap reverse, String name, VcmKind kind, long start, long length) {
        this.vcmm = vcmm;
        this.bus = bus;
        this.tableMemory = tableMemory;
        this.reverse = reverse;
        this.name = name;
        this.kind = kind;
        this.start = start;
        this.length = length;
        this.space = new AddressSpaceAllocator(start, length, GRANULE);
    }

    /** {@return a name for messages and pictures} */
    public String name() {
        return name;
    }

    /** {@return what the VCM's addresses mean} */
    public Kind kind() {
        return kind.kind();
    }

    /** {@return the first device address} */
    public long start() {
        return start;
    }

    /** {@return the number of bytes of address space} */
    public long length() {
        return length;
    }

    /** {@return the VCMM it belongs to} */
    public Vcmm vcmm() {
        return vcmm;
    }

    /** {@return whether {@link #free()} was called} */
    public boolean isFreed() {
        return freed;
    }

    /** {@return its reservations in address order (a snapshot)} */
    public List<Reservation> reservations() {
        return List.copyOf(reservations.values());
    }

    /** {@return its associations (a snapshot)} */
    public List<Association> associations() {
        return List.copyOf(associations);
    }

    /** {@return the dirty tracking of this VCM: which pages its devices wrote (off until enabled)} */
    public DirtyTracking dirtyTracking() {
        return dirtyTracking;
    }

    /**
     * Runs {@code action} on the VCM's page tables (a snapshot, one per format) under the VCM's shared lock, so no
     * table is built or closed meanwhile; backs and unbacks run alongside.
     */
    <T> T withTables(java.util.function.Function<java.util.Collection<PageTable>, T> action) {
        checkUsable();
        lock.readLock().lock();
        try {
            checkUsable();
            return action.apply(List.copyOf(tables.values()));
        } finally {
            lock.readLock().unlock();
        }
    }

    /** @return whether its devices translate through its page tables */
    boolean walksTables() {
        return kind.walksTables();
    }

    /** {@return the formats it keeps page tables for (a snapshot)} */
    public List<PageTableFormat> formats() {
        return List.copyOf(tables.keySet());
    }

    /**
     * {@return a read-only view of its page table of {@code format}, or {@code null} if it has none; the table stays the
     *         VCM's, and only backing and unbacking change it}
     *
     * @param format the page-table format
     */
    public PageTableView table(PageTableFormat format) {
        PageTable t = tables.get(format);
        return t == null ? null : new PageTableView(t);
    }

    /**
     * {@return the smallest page size of this VCM (the RFC's {@code vcm_get_min_page_size}): the largest of 4 KiB, the
     *         host page size for a HOST VCM, and the smallest leaf of each page-table format its devices walk
     *         (devices use 4K-granule formats, so today it is 4 KiB but for HOST VCMs on a 16K or 64K host);
     *         reservation addresses and lengths are multiples of it}
     */
    public long minPageSize() {
        long min = kind.alignment(GRANULE);
        for (PageTableFormat f : tables.keySet()) {
            min = Math.max(min, f.leafSizes().getLast().size());
        }
        return min;
    }

    /** {@return the bytes of address space not reserved} */
    public long freeBytes() {
        lock.readLock().lock();
        try {
            return space.freeBytes();
        } finally {
            lock.readLock().unlock();
        }
    }

    /**
     * {@return the reservation holding device address {@code a}, or {@code null}}
     *
     * @param a the device address
     */
    public Reservation reservationAt(long a) {
        Map.Entry<Long, Reservation> e = reservations.floorEntry(a);
        return e != null && e.getValue().contains(a) ? e.getValue() : null;
    }

    // ---------------------------------------------------------------------------------------------
    // reservations

    /**
     * Reserves {@code length} bytes aligned to 4 KiB.
     *
     * @param length the length in bytes
     * @param attributes the mapping attributes
     * @return the new reservation
     * @see #reserve(long, ReservationAttributes, long)
     */
    public Reservation reserve(long length, ReservationAttributes attributes) {
        return reserve(length, attributes, GRANULE);
    }

    /**
     * Reserves {@code length} bytes (rounded up to 4 KiB) aligned to {@code alignment} (aligning to the largest chunk
     * of the memory that will back it lets the mapper use blocks). A HOST VCM rounds the alignment up to the host
     * page size and needs whole host pages.
     *
     * @param length the length in bytes
     * @param attributes the mapping attributes
     * @param alignment the alignment in bytes, a power of two
     * @return the new reservation
     * @throws IllegalArgumentException if the length or alignment is bad, or a page table of the VCM cannot express
     *                                  the attributes
     * @throws VcmmOutOfMemoryException if no free range of the VCM fits
     * @throws IllegalStateException    if the VCM is freed or its VCMM closed
     */
    public Reservation reserve(long length, ReservationAttributes attributes, long alignment) {
        return reserve(length, attributes, alignment, false);
    }

    /** As {@link #reserve(long, ReservationAttributes, long)}; a {@code sparse} one is published claimed for backing. */
    private Reservation reserve(long length, ReservationAttributes attributes, long alignment, boolean sparse) {
        checkUsable();
        Objects.requireNonNull(attributes, "attributes");
        long rounded = roundLength(length);
        long aligned = checkedAlignment(alignment);
        kind.checkRange(0, rounded);
        lock.writeLock().lock();
        try {
            checkNotFreed();
            checkExpressible(attributes);
            long address = space.allocate(rounded, aligned);
            if (address == AddressSpaceAllocator.NONE) {
                throw new VcmmOutOfMemoryException(name, rounded, 0, "no free range of " + this + " holds 0x"
                    + Long.toHexString(rounded) + " bytes aligned to 0x" + Long.toHexString(aligned)
                    + " (largest free range 0x" + Long.toHexString(space.largestFreeRange()) + ")");
            }
            Reservation r = new Reservation(this, address, rounded, attributes);
            if (sparse) {
                r.markSparse();
                r.beginBack(); // claimed before it is published: no other thread can back it before the null page
            }
            reservations.put(address, r);
            return r;
        } finally {
            lock.writeLock().unlock();
        }
    }

    /**
     * Reserves {@code length} bytes (rounded up to 4 KiB) as a <em>sparse</em> reservation (Vulkan's sparse residency):
     * it is backed at once, every page bound to the {@code Vcmm}'s null page, a single 4 KiB page of zeros mapped
     * read-only. Pages are then bound with {@link Reservation#remap(long, long, PhysMem, long)} (each page goes from the
     * null page to the memory in one store: a device sees zero or the memory, never a fault) and unbound with
     * {@link Reservation#unback(long, long)}, which for a sparse reservation maps the pages back to the null page
     * (whole range included) instead of removing them. While it is backed, a device's read of an unbound page returns
     * zeros and a write to one is dropped: the walk finds the read-only null-page leaf and takes a permission fault,
     * which the device model completes as a dropped write (counted by {@link Device#droppedWriteBytes()}) instead of
     * reporting it. That is Vulkan's {@code residencyNonResidentStrict} behaviour. Real hardware has no "writes
     * ignored" bit: an Arm SMMU would report the permission fault (and terminate or stall the transaction), which is
     * why GPU drivers map a writable scratch page instead, whose reads return garbage (what
     * {@code residencyNonResidentStrict = false} allows); here the null page is never writable, so reads stay zero.
     * {@link Reservation#unback()} removes every mapping, the null page's too: the reservation is then unbacked, and
     * faults like any other. {@link Reservation#physicalAddress(long)}, {@code Vcmm.translate} and {@code whoMaps}
     * treat an unbound page as unbound (-1, nothing), never as the null page. Attribute changes of a backed sparse
     * reservation are refused.
     *
     * @param length the length in bytes
     * @param attributes the attributes of bound pages; they must allow reads (the null page is mapped with these
     *                   attributes without write)
     * @return the new reservation, backed by the null page
     * @throws IllegalArgumentException if the VCM is not {@link Kind#VIRTUAL}, the attributes do not allow reads or
     *                                  cannot be expressed, or the length is bad; nothing changed
     * @throws VcmmOutOfMemoryException if no free range fits, or no page is free for the null page or the page tables
     *                                  (the reservation is then unreserved again)
     * @throws IllegalStateException    if the VCM is freed or its VCMM closed, or no non-secure memory type exists for
     *                                  the null page
     */
    public Reservation reserveSparse(long length, ReservationAttributes attributes) {
        checkUsable();
        Objects.requireNonNull(attributes, "attributes");
        kind.checkSubRange(this);
        if (!attributes.read()) {
            throw new IllegalArgumentException("attributes=" + attributes + " must allow reads: unbound pages of a sparse"
                + " reservation read the null page");
        }
        Reservation r = reserve(length, attributes, GRANULE, true);
        try {
            backNull(r, bus.nullPage().page());
        } catch (RuntimeException e) {
            r.endBack(null, 0); // idle again, so that it can be unreserved
            try {
                unreserve(r);
            } catch (RuntimeException u) {
                e.addSuppressed(u);
            }
            throw e;
        }
        return r;
    }

    /** Backs every page of the new sparse reservation {@code r} with the null page {@code np}. */
    private void backNull(Reservation r, PhysMem np) {
        lock.readLock().lock();
        try {
            boolean counted = false; // r was published claimed (IN_PROGRESS) by reserve(..., sparse = true)
            List<PageTable> done = new ArrayList<>();
            try {
                np.acquireBacking();
                counted = true;
                Attributes a = nullAttributes(r);
                for (PageTable t : tableArray) {
                    done.add(t);
                    mapNull(t, r, 0, r.length(), a, false);
                }
            } catch (RuntimeException e) {
                for (PageTable t : done) {
                    t.unmap(r.address(), r.length());
                }
                invalidate(r.address(), r.length());
                if (counted) {
                    np.releaseBacking();
                }
                r.endBack(null, 0);
                throw e;
            }
            r.bindings(Bindings.with(null, 0, r.length(), null, -1)); // every page unbound: on the null page
            pteWrites.addBytes(done.size() * r.length());
            r.endBack(np, 0);
        } finally {
            lock.readLock().unlock();
        }
    }

    /** {@return the page-table attributes of a null-page mapping of sparse reservation {@code r}: its own, read-only} */
    private static Attributes nullAttributes(Reservation r) {
        return r.attributes().withWrite(false).toPageAttributes();
    }

    /**
     * Points each page of {@code [offset, offset + length)} of sparse reservation {@code r} at the null page in table
     * {@code t}: with {@code map} on empty entries, or with {@code remap} (one store per page, blocks split hitlessly).
     */
    private static void mapNull(PageTable t, Reservation r, long offset, long length, Attributes a, boolean remap) {
        long pa = r.vcm().bus.nullPage().address();
        for (long o = offset; o < offset + length; o += GRANULE) {
            if (remap) {
                t.remap(r.address() + o, pa, GRANULE, a);
            } else {
                t.map(r.address() + o, pa, GRANULE, a);
            }
        }
    }

    /** @return the null page of this VCM's {@code Vcmm} */
    NullPage nullPage() {
        return bus.nullPage();
    }

    /**
     * Reserves exactly {@code [address, address + length)} (the length rounded up to 4 KiB).
     *
     * @param address the first address
     * @param length the length in bytes
     * @param attributes the mapping attributes
     * @return the new reservation
     * @throws IllegalArgumentException if misaligned, outside the VCM, or the attributes cannot be expressed
     * @throws IllegalStateException    if any part of the range is reserved already, the VCM is freed or its VCMM
     *                                  closed
     */
    public Reservation reserveAt(long address, long length, ReservationAttributes attributes) {
        checkUsable();
        Objects.requireNonNull(attributes, "attributes");
        long rounded = roundLength(length);
        if ((address & (GRANULE - 1)) != 0) {
            throw new IllegalArgumentException(String.format("address=0x%x must be a multiple of 4096", address));
        }
        if (!covers(address, rounded)) {
            throw new IllegalArgumentException(String.format("range address=0x%x length=0x%x is outside %s", address, rounded, this));
        }
        kind.checkRange(address, rounded);
        lock.writeLock().lock();
        try {
            checkNotFreed();
            checkExpressible(attributes);
            if (!space.allocateAt(address, rounded)) {
                throw new IllegalStateException(String.format("range address=0x%x length=0x%x overlaps %s", address, rounded,
                    overlapping(address, rounded)));
            }
            Reservation r = new Reservation(this, address, rounded, attributes);
            reservations.put(address, r);
            return r;
        } finally {
            lock.writeLock().unlock();
        }
    }

    private Reservation overlapping(long address, long length) {
        for (Reservation r : reservations.values()) {
            if (Long.compareUnsigned(r.address(), address + length - 1) <= 0
                && Long.compareUnsigned(address, r.address() + r.length() - 1) <= 0) {
                return r;
            }
        }
        return null;
    }

    /** Returns {@code r}'s range; see {@link Reservation#unreserve()}. */
    void unreserve(Reservation r) {
        checkOpen();
        lock.writeLock().lock();
        try {
            if (r.isReleased()) {
                throw new IllegalStateException("already unreserved: " + r);
            }
            if (r.references() > 1) {
                r.addReferences(-1); // another holder keeps it
                return;
            }
            if (!r.isIdle()) {
                throw new VcmmBusyException("busy: " + r + " is backed; unback it first");
            }
            if (r.bound() != null) {
                r.bound().removed(r);
            } else {
                space.free(r.address(), r.length());
            }
            reservations.remove(r.address());
            r.markReleased();
        } finally {
            lock.writeLock().unlock();
        }
        freeIfOrphanedAndEmpty();
    }

    // ---------------------------------------------------------------------------------------------
    // bounds

    /**
     * Creates a bound: takes {@code length} bytes (rounded up to 4 KiB) aligned to {@code alignment} out of the VCM's
     * free space, for reservations made through {@link Bound#reserve} only (the RFC's {@code vcm_create_bound}).
     *
     * @param length the length in bytes
     * @param alignment the alignment in bytes, a power of two of at least 4096
     * @return the new bound
     * @throws IllegalArgumentException if the length or alignment is bad
     * @throws VcmmOutOfMemoryException if no free range of the VCM fits
     * @throws IllegalStateException    if the VCM is freed or its VCMM closed
     */
    public Bound createBound(long length, long alignment) {
        checkUsable();
        long rounded = roundLength(length);
        long aligned = checkedAlignment(alignment);
        kind.checkRange(0, rounded);
        lock.writeLock().lock();
        try {
            checkNotFreed();
            long address = space.allocate(rounded, aligned);
            if (address == AddressSpaceAllocator.NONE) {
                throw new VcmmOutOfMemoryException(name, rounded, 0, "no free range of " + this + " holds a bound of 0x"
                    + Long.toHexString(rounded) + " bytes aligned to 0x" + Long.toHexString(aligned));
            }
            Bound b = new Bound(this, address, rounded);
            bounds.add(b);
            return b;
        } finally {
            lock.writeLock().unlock();
        }
    }

    /**
     * {@return the alignment a reservation or bound of this VCM gets for a requested {@code alignment}: the kind's
     * (a HOST VCM rounds up to the host page)}
     *
     * @throws IllegalArgumentException if {@code alignment} is not a power of two of at least 4 KiB
     */
    private long checkedAlignment(long alignment) {
        if (alignment < GRANULE || Long.bitCount(alignment) != 1) {
            throw new IllegalArgumentException("alignment=" + alignment + " must be a power of two >= 4096");
        }
        return kind.alignment(alignment);
    }

    /** {@return its live bounds (a snapshot)} */
    public List<Bound> bounds() {
        return List.copyOf(bounds);
    }

    /** A reservation inside {@code b}; see {@link Bound#reserve(long, ReservationAttributes, long)}. */
    Reservation reserveIn(Bound b, long length, ReservationAttributes attributes, long alignment) {
        checkUsable();
        long rounded = roundLength(length);
        long aligned = checkedAlignment(alignment);
        kind.checkRange(0, rounded);
        lock.writeLock().lock();
        try {
            checkNotFreed();
            b.checkNotFreed();
            checkExpressible(attributes);
            long address = b.allocate(rounded, aligned);
            if (address == AddressSpaceAllocator.NONE) {
                throw new VcmmOutOfMemoryException(name, rounded, 0, "no free range of " + b + " holds 0x"
                    + Long.toHexString(rounded) + " bytes aligned to 0x" + Long.toHexString(aligned)
                    + " (largest free range 0x" + Long.toHexString(b.largestFreeRange()) + ")");
            }
            Reservation r = new Reservation(this, address, rounded, attributes);
            r.inBound(b);
            b.added(r);
            reservations.put(address, r);
            return r;
        } finally {
            lock.writeLock().unlock();
        }
    }

    /** Frees an empty bound; see {@link Bound#free()}. */
    void freeBound(Bound b) {
        checkOpen();
        lock.writeLock().lock();
        try {
            b.checkNotFreed();
            if (!b.isEmpty()) {
                throw new VcmmBusyException("busy: " + b + " still holds reservations; unreserve them first");
            }
            space.free(b.start(), b.length());
            bounds.remove(b);
            b.markFreed();
        } finally {
            lock.writeLock().unlock();
        }
        freeIfOrphanedAndEmpty();
    }

    /** @return {@code query} run under the read lock (a consistent snapshot of what the write lock guards) */
    <T> T underReadLock(java.util.function.Supplier<T> query) {
        lock.readLock().lock();
        try {
            return query.get();
        } finally {
            lock.readLock().unlock();
        }
    }

    /** Takes a reference to {@code r}; see {@link Reservation#ref()}. */
    void ref(Reservation r) {
        checkOpen();
        lock.writeLock().lock();
        try {
            checkNotFreed();
            if (r.isReleased()) {
                throw new IllegalStateException("use after unreserve: " + r);
            }
            if (r.references() == Integer.MAX_VALUE) {
                throw new IllegalStateException("too many references to " + r);
            }
            r.addReferences(1);
        } finally {
            lock.writeLock().unlock();
        }
    }

    private void putTable(PageTableFormat f, PageTable t) {
        tables.put(f, t);
        tableArray = tables.values().toArray(new PageTable[0]);
    }

    private PageTable removeTable(PageTableFormat f) {
        PageTable t = tables.remove(f);
        tableArray = tables.values().toArray(new PageTable[0]);
        return t;
    }

    private void clearTables() {
        tables.clear();
        tableArray = new PageTable[0];
    }

    // ---------------------------------------------------------------------------------------------
    // backing

    /** Backs {@code r}; see {@link Reservation#back(PhysMem, long)}. */
    void back(Reservation r, PhysMem memory, long offset) {
        checkBack(r, memory, offset);
        lock.readLock().lock();
        try {
            if (r.isReleased()) {
                throw new IllegalStateException("use after unreserve: " + r);
            }
            if (!r.beginBack()) {
                throw new IllegalStateException("already backed: " + r);
            }
            boolean counted = false;
            PageTable[] ts = tableArray; // fixed while the read lock is held
            int done = 0;
            try {
                memory.acquireBacking();
                counted = true;
                Attributes a = r.attributes().toPageAttributes(memory);
                for (PageTable t : ts) {
                    kind.mapInto(t, r, memory, offset, a);
                    done++;
                }
                kind.map(r, memory, offset); // last: it undoes itself on failure
            } catch (RuntimeException e) {
                undoBack(r, memory, ts, done, counted);
                throw e;
            }
            reverse.register(r, memory);
            pteWrites.addBytes(ts.length * r.length());
            r.endBack(memory, offset);
        } finally {
            lock.readLock().unlock();
        }
    }

    /** Undoes a failed {@link #back}: the first {@code done} tables' mappings, the backing count, the state. */
    private void undoBack(Reservation r, PhysMem memory, PageTable[] ts, int done, boolean counted) {
        for (int i = 0; i < done; i++) {
            ts[i].unmap(r.address(), r.length());
        }
        invalidate(r.address(), r.length()); // a DMA may have cached the short-lived mapping
        if (counted) {
            memory.releaseBacking();
        }
        r.endBack(null, 0);
    }

    /** The argument checks of {@link #back}, out of its body (they make no change; a small back inlines better). */
    private void checkBack(Reservation r, PhysMem memory, long offset) {
        checkOpen();
        Objects.requireNonNull(memory, "memory");
        bus.checkHolds(memory.memoryType());
        if (offset < 0 || (offset & (GRANULE - 1)) != 0) {
            throw new IllegalArgumentException("offset=" + offset + " must be a non-negative multiple of 4096");
        }
        if (memory.length() - offset < r.length()) {
            throw new IllegalArgumentException("too little memory: " + memory + " from offset=" + offset + " has "
                + Math.max(0, memory.length() - offset) + " bytes, " + r + " needs " + r.length());
        }
        if (memory.memoryType().isSecure() && !r.attributes().secure()) {
            throw new IllegalArgumentException("secure memory " + memory + " can back only secure reservations, not " + r);
        }
        kind.checkBack(r, memory, offset);
    }

    /**
     * Changes {@code r}'s attributes; see {@link Reservation#setAttributes}. Under the write lock: no back, unback or
     * association change of this VCM runs meanwhile, so {@code r}'s backing and the set of tables are fixed.
     */
    void setAttributes(Reservation r, ReservationAttributes attributes) {
        checkOpen();
        Objects.requireNonNull(attributes, "attributes");
        lock.writeLock().lock();
        try {
            checkNotFreed();
            if (r.isReleased()) {
                throw new IllegalStateException("use after unreserve: " + r);
            }
            checkExpressible(attributes);
            Reservation.Backing b = r.backing();
            if (b == null) {
                r.attributes(attributes);
                return;
            }
            if (r.isSparse()) {
                throw new IllegalArgumentException("attributes of a backed sparse reservation cannot change in place (its"
                    + " null-page mappings must stay read-only): unback it first; " + r);
            }
            if (b.memory().memoryType().isSecure() && !attributes.secure()) {
                throw new IllegalArgumentException("attributes=" + attributes + " are not secure, and " + r
                    + " is backed by secure memory " + b.memory());
            }
            kind.checkAttributeChange(r);
            Attributes before = r.attributes().toPageAttributes(b.memory());
            Attributes after = attributes.toPageAttributes(b.memory());
            List<PageTable> done = new ArrayList<>();
            long rewritten = 0;
            try {
                for (PageTable t : tableArray) {
                    done.add(t);
                    rewritten += t.protect(r.address(), r.length(), after);
                }
            } catch (RuntimeException e) {
                for (PageTable t : done) {
                    try {
                        t.protect(r.address(), r.length(), before);
                    } catch (RuntimeException undo) {
                        e.addSuppressed(undo);
                    }
                }
                invalidate(r.address(), r.length());
                throw e;
            }
            r.attributes(attributes); // one-to-one walks read it: before the invalidation's sync
            pteWrites.addBytes(rewritten);
            invalidate(r.address(), r.length()); // no IOTLB entry and no burst in flight keeps the old attributes
        } finally {
            lock.writeLock().unlock();
        }
    }

    /**
     * Maps the reservation's runs of {@code memory} into one table, one {@link PageTable#map} per physically
     * contiguous run (no allocation); undoes its own part on failure.
     */
    static void mapInto(PageTable t, Reservation r, PhysMem memory, long offset, Attributes a) {
        long va = r.address();
        long end = offset + r.length();
        if (offset < 0 || r.length() <= 0 || offset > memory.length() - r.length()) {
            throw outsideWindow(r, memory, offset);
        }
        long at = offset;
        try {
            for (int i = memory.chunkIndexAt(offset); at < end; i++) {
                long pa = memory.chunkPa(i) + (at - memory.chunkOffset(i));
                i = memory.runLast(i, end);
                long to = Math.min(memory.chunkOffset(i) + BlockAllocator.orderSize(memory.chunkOrder(i)), end);
                t.map(va + (at - offset), pa, to - at, a); // a failing map leaves nothing of its own run behind
                at = to;
            }
        } catch (RuntimeException e) {
            if (at > offset) {
                t.unmap(va, at - offset); // only what this call mapped: an adopted table may map the rest itself
            }
            throw e;
        }
    }

    private static IllegalArgumentException outsideWindow(Reservation r, PhysMem memory, long offset) {
        return new IllegalArgumentException("window offset=" + offset + " length=" + r.length() + " is outside " + memory);
    }

    /** Unbacks {@code r}; see {@link Reservation#unback()}. */
    void unback(Reservation r) {
        checkOpen();
        lock.readLock().lock();
        try {
            Reservation.Backing b = r.beginUnback();
            if (b == null) {
                throw new IllegalStateException("not backed: " + r);
            }
            try {
                kind.unmap(r); // first: the CPU's views end before anything else goes
            } catch (RuntimeException e) {
                r.endUnback(b); // a view is held (e.g. by a native call): nothing changed
                throw e;
            }
            // from here on the reservation is never left in progress (that would wedge it for good): it ends
            // unbacked, or still backed if a page table kept part of its mappings (a retry of unback then finishes)
            Reservation.Backing end = b;
            try {
                RuntimeException tableFailure = null;
                long unmapped = 0;
                for (PageTable t : tableArray) {
                    try {
                        unmapped += t.unmap(r.address(), r.length());
                    } catch (RuntimeException e) {
                        tableFailure = chain(tableFailure, e);
                    }
                }
                pteWrites.addBytes(unmapped);
                Runnable hook = unbackHook;
                if (hook != null) {
                    hook.run();
                }
                // after the PTEs, before the memory is released; also after a partial failure: what was removed
                // must not stay cached in an IOTLB or in a burst in flight (inside a batch: at its commit)
                InvalidationBatch batch = InvalidationBatch.current(vcmm);
                invalidate(r.address(), r.length(), batch);
                if (tableFailure != null) {
                    throw new IllegalStateException("unback of " + r + " failed to remove its mappings from a page table;"
                        + " it stays backed (unback again to finish)", tableFailure);
                }
                end = null;
                releaseAll(r, b, batch);
            } finally {
                r.endUnback(end);
            }
        } finally {
            lock.readLock().unlock();
        }
    }

    /** Forgets every allocation {@code r} uses (its backing and its bindings' memories), after the invalidation. */
    private void releaseAll(Reservation r, Reservation.Backing b, InvalidationBatch batch) {
        Bindings x = r.bindings();
        r.bindings(null);
        reverse.unregister(r, b.memory());
        release(b.memory(), batch);
        if (x != null) {
            for (PhysMem pm : x.memories()) {
                if (pm != b.memory()) {
                    reverse.unregister(r, pm);
                    release(pm, batch);
                }
            }
        }
    }

    /** Drops a backing count now, or when {@code batch} commits (its devices may reach the memory until then). */
    private static void release(PhysMem pm, InvalidationBatch batch) {
        if (batch != null) {
            batch.afterCommit(pm::releaseBacking);
        } else {
            pm.releaseBacking();
        }
    }

    /** Unbacks {@code [offset, offset + length)} of {@code r}; see {@link Reservation#unback(long, long)}. */
    void unback(Reservation r, long offset, long length) {
        checkOpen();
        checkSubRange(r, offset, length);
        if (r.isSparse()) {
            unbind(r, offset, length);
            return;
        }
        if (offset == 0 && length == r.length()) {
            unback(r);
            return;
        }
        lock.readLock().lock();
        try {
            Reservation.Backing b = r.beginUnback();
            if (b == null) {
                throw new IllegalStateException("not backed (or being backed or unbacked): " + r);
            }
            Reservation.Backing end = b;
            try {
                RuntimeException tableFailure = null;
                long unmapped = 0;
                for (PageTable t : tableArray) {
                    try {
                        unmapped += t.unmap(r.address() + offset, length); // blocks sticking out are split hitlessly
                    } catch (RuntimeException e) {
                        tableFailure = chain(tableFailure, e);
                    }
                }
                pteWrites.addBytes(unmapped);
                InvalidationBatch batch = InvalidationBatch.current(vcmm);
                invalidate(r.address() + offset, length, batch);
                if (tableFailure != null) {
                    throw new IllegalStateException("unback of [0x" + Long.toHexString(offset) + ", +0x" + Long.toHexString(length)
                        + ") of " + r + " failed to remove its mappings from a page table; its pages stay bound (unback the"
                        + " range again to finish)", tableFailure);
                }
                Bindings before = r.bindings();
                Bindings after = Bindings.with(before, offset, length, null, -1);
                if (after.noneBound(r.length())) {
                    end = null; // its last bound pages went: the reservation is unbacked
                    releaseAll(r, b, batch);
                } else {
                    r.bindings(after);
                    releaseUnused(r, b, before, after, batch);
                }
            } finally {
                r.endUnback(end);
            }
        } finally {
            lock.readLock().unlock();
        }
    }

    /** Maps {@code [offset, offset + length)} of sparse reservation {@code r} back to the null page; see {@link #reserveSparse}. */
    private void unbind(Reservation r, long offset, long length) {
        lock.readLock().lock();
        try {
            Reservation.Backing b = r.beginUnback();
            if (b == null) {
                throw new IllegalStateException("not backed (or being backed or unbacked): " + r);
            }
            try {
                Bindings before = r.bindings();
                long va = r.address() + offset;
                List<PageTable> done = new ArrayList<>();
                try {
                    for (PageTable t : tableArray) {
                        done.add(t);
                        mapNull(t, r, offset, length, nullAttributes(r), true);
                    }
                } catch (RuntimeException e) {
                    for (PageTable t : done) {
                        restore(t, r, b, before, offset, length, r.attributes().toPageAttributes());
                    }
                    invalidate(va, length);
                    throw e;
                }
                InvalidationBatch batch = InvalidationBatch.current(vcmm);
                invalidate(va, length, batch); // no device reaches the memory the pages were bound to once this returns
                Bindings after = Bindings.with(before, offset, length, null, -1);
                r.bindings(after);
                pteWrites.addBytes(done.size() * length);
                releaseUnused(r, b, before, after, batch);
            } finally {
                r.endUnback(b);
            }
        } finally {
            lock.readLock().unlock();
        }
    }

    /**
     * Binds {@code [offset, offset + length)} of {@code r} to {@code memory} from {@code memoryOffset}; see
     * {@link Reservation#remap(long, long, PhysMem, long)}.
     */
    void remap(Reservation r, long offset, long length, PhysMem memory, long memoryOffset) {
        checkOpen();
        Objects.requireNonNull(memory, "memory");
        bus.checkHolds(memory.memoryType());
        checkSubRange(r, offset, length);
        if (memoryOffset < 0 || (memoryOffset & (GRANULE - 1)) != 0) {
            throw new IllegalArgumentException("memoryOffset=" + memoryOffset + " must be a non-negative multiple of 4096");
        }
        if (memory.length() - memoryOffset < length) {
            throw new IllegalArgumentException("too little memory: " + memory + " from memoryOffset=" + memoryOffset + " has "
                + Math.max(0, memory.length() - memoryOffset) + " bytes, the range needs " + length);
        }
        if (memory.memoryType().isSecure() && !r.attributes().secure()) {
            throw new IllegalArgumentException("secure memory " + memory + " can back only secure reservations, not " + r);
        }
        lock.readLock().lock();
        try {
            Reservation.Backing b = r.beginUnback();
            if (b == null) {
                throw new IllegalStateException("not backed (or being backed or unbacked): " + r);
            }
            try {
                Bindings before = r.bindings();
                boolean newUse = memory != b.memory() && (before == null || !before.uses(memory));
                if (newUse) {
                    memory.acquireBacking(); // refused if it was freed: nothing changed
                }
                Attributes a = r.attributes().toPageAttributes();
                long va = r.address() + offset;
                List<PageTable> done = new ArrayList<>();
                try {
                    for (PageTable t : tableArray) {
                        done.add(t);
                        memory.forEachRun(memoryOffset, length, (o, pa, n) -> t.remap(va + o, pa, n, a));
                    }
                } catch (RuntimeException e) {
                    for (PageTable t : done) {
                        restore(t, r, b, before, offset, length, a); // every page back to what it was
                    }
                    invalidate(va, length); // a device may have cached a new translation for a moment
                    if (newUse) {
                        memory.releaseBacking();
                    }
                    throw e;
                }
                InvalidationBatch batch = InvalidationBatch.current(vcmm);
                invalidate(va, length, batch); // the old translations: none is used once this (or the batch) returns
                Bindings after = Bindings.with(before, offset, length, memory, memoryOffset);
                r.bindings(after);
                pteWrites.addBytes(done.size() * length);
                if (newUse) {
                    reverse.register(r, memory);
                }
                releaseUnused(r, b, before, after, batch);
            } finally {
                r.endUnback(b);
            }
        } finally {
            lock.readLock().unlock();
        }
    }

    /** Releases the memories {@code before} bound that {@code after} no longer does (the backing's memory stays). */
    private void releaseUnused(Reservation r, Reservation.Backing b, Bindings before, Bindings after, InvalidationBatch batch) {
        if (before == null) {
            return;
        }
        for (PhysMem pm : before.memories()) {
            if (pm != b.memory() && !after.uses(pm)) {
                reverse.unregister(r, pm);
                release(pm, batch);
            }
        }
    }

    /** Puts each page of {@code [offset, offset + length)} of {@code r} back as {@code before} had it (a failed remap). */
    private static void restore(PageTable t, Reservation r, Reservation.Backing b, Bindings before, long offset, long length,
                                Attributes a) {
        for (long o = offset; o < offset + length; o += GRANULE) {
            Bindings.Extent e = before == null ? null : before.at(o);
            long va = r.address() + o;
            if (e == null) {
                t.remap(va, b.memory().physicalAddress(b.offset() + o), GRANULE, a);
            } else if (e.memory() == null && r.isSparse()) {
                mapNull(t, r, o, GRANULE, nullAttributes(r), true);
            } else if (e.memory() == null) {
                t.unmap(va, GRANULE);
            } else {
                t.remap(va, e.memory().physicalAddress(e.memoryOffset() + (o - e.offset())), GRANULE, a);
            }
        }
    }

    /** Maps {@code r}'s bindings over its backing in a new table {@code t} (the backing is mapped already). */
    private static void applyBindings(PageTable t, Reservation r, Attributes a) {
        Bindings x = r.bindings();
        if (x == null) {
            return;
        }
        for (Bindings.Extent e : x.extents()) {
            long va = r.address() + e.offset();
            if (e.memory() == null && r.isSparse()) {
                mapNull(t, r, e.offset(), e.length(), nullAttributes(r), true);
            } else if (e.memory() == null) {
                t.unmap(va, e.length());
            } else {
                e.memory().forEachRun(e.memoryOffset(), e.length(), (o, pa, n) -> t.remap(va + o, pa, n, a));
            }
        }
    }

    /**
     * @throws IllegalArgumentException if {@code [offset, offset + length)} is not whole 4 KiB pages inside {@code r}, or
     *                                  the VCM's kind has no page tables to bind parts of a reservation in
     * @throws IllegalStateException    if {@code r} was unreserved
     */
    private void checkSubRange(Reservation r, long offset, long length) {
        if (r.isReleased()) {
            throw new IllegalStateException("use after unreserve: " + r);
        }
        if (length <= 0 || offset < 0 || ((offset | length) & (GRANULE - 1)) != 0 || length > r.length() - offset) {
            throw new IllegalArgumentException(String.format("offset=0x%x length=0x%x must be whole 4 KiB pages inside %s",
                offset, length, r));
        }
        kind.checkSubRange(this);
    }

    /** A test-only failure point inside an unback, between the page tables and the IOTLBs ({@code null} outside tests). */
    static volatile Runnable unbackHook;

    private static RuntimeException chain(RuntimeException first, RuntimeException next) {
        if (first == null) {
            return next;
        }
        first.addSuppressed(next);
        return first;
    }

    /**
     * After the mappings of {@code [address, address + length)} were removed from the tables (or before they are
     * relied on): invalidates the range in the IOTLB of every device that may hold entries for it, once per device
     * (a device has at most one association with a VCM), then waits until no burst of those devices that may have
     * used a removed translation is in flight (the invalidation's sync). A device counts if its association is
     * active or programmed in one of its slots (activation programs the slot before it sets the flag, and a walk
     * may start in between). One-to-one devices have no IOTLB but are synchronized too: their bursts read the
     * reservation's backing.
     */
    void invalidate(long address, long length) {
        invalidate(address, length, null);
    }

    /**
     * As {@link #invalidate(long, long)}, or, with a {@code batch}, hands the invalidation to it: the batch invalidates
     * and synchronizes when it commits. A device whose association was deactivated inside an uncommitted batch counts
     * too: its IOTLB may still hold the association's entries until then.
     */
    void invalidate(long address, long length, InvalidationBatch batch) {
        Device first = null; // the usual single device needs no list
        List<Device> sync = null;
        for (Association a : associations) {
            Device d = a.device();
            if (a.isActive() || d.isProgrammed(a) || a.pendingBatch() != null) {
                if (batch != null) {
                    batch.gather(d, a.pasid(), address, length);
                    continue;
                }
                d.invalidateIotlb(a.pasid(), address, length);
                if (first == null) {
                    first = d;
                } else {
                    if (sync == null) {
                        sync = new ArrayList<>(2);
                    }
                    sync.add(d);
                }
            }
        }
        if (!guests.isEmpty()) {
            for (Vcm g : guests) {
                // combined (nested) entries are indexed by the guest's addresses, not by IPA: drop all of the guest's
                sync = g.flushDevices(sync);
            }
        }
        // after every IOTLB is invalidated: the waits overlap
        if (first != null) {
            first.synchronizeBursts();
        }
        if (sync != null) {
            for (Device d : sync) {
                d.synchronizeBursts();
            }
        }
    }

    /** Flushes the IOTLB of every device of this VCM that may hold entries, adding them to {@code sync}. @return sync */
    private List<Device> flushDevices(List<Device> sync) {
        for (Association a : associations) {
            Device d = a.device();
            if (a.isActive() || d.isProgrammed(a)) {
                d.flushIotlb();
                if (sync == null) {
                    sync = new ArrayList<>(2);
                }
                sync.add(d);
            }
        }
        return sync;
    }

    /**
     * Makes this VCM the stage 2 of {@code guest}: builds a table of {@code stage2} holding every backing, unless it
     * has one, and lists the guest, whose devices' IOTLBs every invalidation of this VCM then flushes.
     *
     * @throws IllegalArgumentException if {@code stage2} cannot express a reservation's attributes; nothing changed
     * @throws IllegalStateException    if the VCM is freed
     */
    void attachGuest(Vcm guest, PageTableFormat stage2) {
        lock.writeLock().lock();
        try {
            checkNotFreed();
            if (!tables.containsKey(stage2)) {
                putTable(stage2, buildTable(stage2));
            }
            guests.add(guest);
        } finally {
            lock.writeLock().unlock();
        }
    }

    /** Forgets {@code guest}; drops the stage-2 table when no association or other guest uses its format. */
    void detachGuest(Vcm guest, PageTableFormat stage2) {
        lock.writeLock().lock();
        try {
            guests.remove(guest);
            boolean used = associations.stream().anyMatch(o -> stage2.equals(o.device().format()))
                || guests.stream().anyMatch(g -> g.kind.usesStage2(this, stage2));
            if (!used) {
                PageTable t = removeTable(stage2);
                if (t != null) {
                    t.close();
                }
            }
        } finally {
            lock.writeLock().unlock();
        }
    }

    /** {@return the guest VCMs whose stage 2 this VCM is (a snapshot)} */
    public List<Vcm> guests() {
        return List.copyOf(guests);
    }

    /** {@return the host VCM whose stage-2 table translates this guest VCM's IPAs, or {@code null} if it is no guest} */
    public Vcm host() {
        return kind.host();
    }

    // ---------------------------------------------------------------------------------------------
    // translation

    /** Translates {@code address} for a device of {@code format}: the kind decides how. */
    WalkResult walk(PageTableFormat format, long address, Access access, boolean fromUser) {
        return kind.walk(this, format, address, access, fromUser);
    }

    /** The walk of a VCM with tables: its table of {@code format}, walked as hardware would. */
    WalkResult walkTable(PageTableFormat format, long address, Access access, boolean fromUser) {
        PageTable table = tables.get(format);
        if (table == null) {
            return new WalkResult.PageFault(address, 0, FaultReason.TRANSLATION, "no table of " + format.name() + " in " + this);
        }
        return table.walk(address, access, fromUser); // a closed table faults; a retired one is not reused while we walk
    }

    /** @return the root of its table of {@code format}, or 0 if it has none */
    long root(PageTableFormat format) {
        PageTable t = format == null ? null : tables.get(format);
        return t == null ? 0 : t.root();
    }

    // ---------------------------------------------------------------------------------------------
    // associations (called by the Vcmm under its graph lock)

    /**
     * Adds {@code a}: for the first device of a format, builds a table of that format holding every current backing.
     *
     * @throws IllegalArgumentException if the device is associated already, or the format cannot express a
     *                                  reservation's attributes (the caller checked {@link #checkDevice} first)
     * @throws IllegalStateException    if the VCM is freed
     */
    void attach(Association a) {
        lock.writeLock().lock();
        try {
            checkNotFreed();
            for (Association o : associations) {
                if (o.device() == a.device()) {
                    throw new IllegalArgumentException("already associated: " + o);
                }
            }
            PageTableFormat f = a.device().format();
            if (f != null && !tables.containsKey(f)) {
                putTable(f, buildTable(f));
            }
            associations.add(a);
        } finally {
            lock.writeLock().unlock();
        }
    }

    /** @throws IllegalArgumentException if the device cannot use this VCM in {@code mode}; nothing is changed */
    void checkDevice(Device device, AssociationMode mode) {
        kind.checkDevice(this, device, mode);
    }

    /** A new table of {@code f} holding every current backing of the VCM. Caller holds the write lock. */
    private PageTable buildTable(PageTableFormat f) {
        for (Reservation r : reservations.values()) {
            f.checkAttributes(r.attributes().toPageAttributes());
        }
        PageTable t = kind.createTable(f, tableMemory);
        try {
            for (Reservation r : reservations.values()) {
                Reservation.Backing b = r.backing();
                if (b != null && bus.nullPage().is(b.memory())) {
                    mapNull(t, r, 0, r.length(), nullAttributes(r), false); // a sparse reservation: its bindings below
                    applyBindings(t, r, r.attributes().toPageAttributes());
                } else if (b != null) {
                    kind.mapInto(t, r, b.memory(), b.offset(), r.attributes().toPageAttributes(b.memory()));
                    applyBindings(t, r, r.attributes().toPageAttributes(b.memory()));
                }
            }
        } catch (RuntimeException e) {
            t.close();
            throw e;
        }
        return t;
    }

    /**
     * Removes an inactive association; drops the table of its device's format when no other association needs it.
     *
     * @throws IllegalStateException if already removed
     * @throws VcmmBusyException     if it is active
     */
    void detach(Association a) {
        lock.writeLock().lock();
        try {
            if (a.isRemoved()) {
                throw new IllegalStateException("already deassociated: " + a);
            }
            if (a.isActive()) {
                throw new VcmmBusyException("busy: " + a + " is active; deactivate it first");
            }
            associations.remove(a);
            a.markRemoved();
            PageTableFormat f = a.device().format();
            if (f != null && associations.stream().noneMatch(o -> f.equals(o.device().format()))) {
                PageTable t = removeTable(f);
                if (t != null && t == borrowed) {
                    borrowed = null; // back to its owner, with whatever it held before the VCM adopted it
                } else if (t != null) {
                    t.close();
                }
            }
        } finally {
            lock.writeLock().unlock();
        }
    }

    // ---------------------------------------------------------------------------------------------
    // lifetime

    /**
     * Frees the VCM: its VCMM forgets it, and a HOST VCM's range goes back to the system.
     *
     * @throws VcmmBusyException     while it has reservations or associations (the RFC's -EBUSY)
     * @throws IllegalStateException if already freed, or its VCMM is closed
     */
    public void free() {
        vcmm.forget(this);
    }

    /**
     * Marks the VCM freed if it is empty; called by {@link Vcmm} under the graph lock, which then forgets it.
     *
     * @throws VcmmBusyException     if it has reservations or associations
     * @throws IllegalStateException if already freed
     */
    void retire() {
        lock.writeLock().lock();
        try {
            checkNotFreed();
            if (!reservations.isEmpty() || !associations.isEmpty() || !guests.isEmpty() || !bounds.isEmpty()) {
                throw new VcmmBusyException("busy: " + this + " still has " + reservations.size() + " reservation(s), "
                    + associations.size() + " association(s), " + guests.size() + " guest(s) and " + bounds.size() + " bound(s)");
            }
            freed = true;
            if (borrowed != null) { // adopted but never associated (a refused createCpuVcm): back to its owner
                removeTable(borrowed.format());
                borrowed = null;
            }
            kind.release(this);
        } finally {
            lock.writeLock().unlock();
        }
    }

    /** Its owning client was released: it is freed now if empty, else when its last reservation or association goes. */
    void orphan() {
        orphan = true;
        freeIfOrphanedAndEmpty();
    }

    /** Frees an orphaned VCM that became empty; called with no lock held. */
    void freeIfOrphanedAndEmpty() {
        if (orphan && !freed && reservations.isEmpty() && associations.isEmpty() && bounds.isEmpty()) {
            try {
                free();
            } catch (IllegalStateException raced) {
                // someone reserved or associated meanwhile (it is freed when that goes), or another thread freed it
            }
        }
    }

    /**
     * On {@link Vcmm#close()}, under the graph lock: the VCM becomes unusable, the kind lets go of what it holds (a HOST VCM's mappings go
     * before the memory types close), then every page table closes.
     *
     * @return a failure of the kind to report once everything is closed, or {@code null}
     */
    RuntimeException closeAll() {
        closed = true;
        RuntimeException failure = kind.close(this);
        for (PageTable t : tableArray) {
            if (t != borrowed) {
                t.close();
            }
        }
        clearTables();
        return failure;
    }

    /** @return what its kind says a one-call binding allocates with */
    PhysAllocOptions bindingOptions(PhysAllocOptions options) {
        return kind.bindingOptions(options);
    }

    /** @return a reservation for a one-call binding of {@code memory}, placed as its kind says */
    Reservation reserveFor(PhysMem memory, long length, ReservationAttributes attributes) {
        return kind.reserveFor(this, memory, length, attributes);
    }

    /**
     * Adopts {@code t} as its table of {@code t}'s format (a prebuilt table: {@link Vcmm#createCpuVcm(Device, PageTable,
     * long, long, AssociationMode)}); called before the VCM is associated. The VCM maps and unmaps its reservations in
     * it and never closes it.
     */
    void adopt(PageTable t) {
        lock.writeLock().lock();
        try {
            if (!tables.isEmpty() || !reservations.isEmpty()) {
                throw new IllegalStateException(this + " already has tables or reservations; adopt a table first");
            }
            putTable(t.format(), t);
            borrowed = t;
        } finally {
            lock.writeLock().unlock();
        }
    }

    /** @return whether it maps into {@code t} without owning it */
    boolean borrows(PageTable t) {
        return borrowed == t;
    }

    /** @return the kind a copy of this VCM gets. @throws IllegalArgumentException if it cannot be copied */
    VcmKind cloneKind() {
        return kind.cloneKind(this);
    }

    // ---------------------------------------------------------------------------------------------
    // checks

    /** @return whether {@code [a, a + len)} lies in the VCM (unsigned, no overflow) */
    boolean covers(long a, long len) {
        return len > 0 && Long.compareUnsigned(a, start) >= 0 && Long.compareUnsigned(a - start, length) < 0
            && Long.compareUnsigned(len, length - (a - start)) <= 0;
    }

    /** @throws IllegalStateException if the VCMM is closed or the VCM freed */
    void checkUsable() {
        checkOpen();
        checkNotFreed();
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("this Vcmm is closed");
        }
    }

    private void checkNotFreed() {
        if (freed) {
            throw new IllegalStateException("use after free: " + this);
        }
    }

    private void checkExpressible(ReservationAttributes attributes) {
        Attributes a = attributes.toPageAttributes();
        for (PageTable t : tableArray) { // the snapshot of the tables: no map iterator per reserve
            t.format().checkAttributes(a);
        }
    }

    private static long roundLength(long length) {
        if (length <= 0 || length > Long.MAX_VALUE - GRANULE) {
            throw new IllegalArgumentException("length=" + length + " must be positive");
        }
        return (length + GRANULE - 1) & -GRANULE;
    }

    void checkOwner(Vcmm owner) {
        if (vcmm != owner) {
            throw new IllegalArgumentException("foreign handle: " + this + " belongs to another Vcmm");
        }
    }

    @Override
    public String toString() {
        return String.format("Vcm{%s %s 0x%x+0x%x, %d reservations, %d associations%s}", name, kind(), start, length,
            reservations.size(), associations.size(), freed ? ", freed" : "");
    }
}
