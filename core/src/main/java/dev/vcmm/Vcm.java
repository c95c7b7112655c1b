package dev.vcmm;

import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.FaultReason;
import dev.vcmm.pagetable.PageTable;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.space.AddressSpaceAllocator;
import dev.vcmm.spi.HostMapper;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
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
 * <p><b>Thread-safety:</b> thread-safe. Each VCM has a read-write lock: backing and unbacking take it
 * shared (so they run concurrently on different reservations, and the page tables themselves take no
 * lock), while reserve, unreserve, associate, deassociate and free take it exclusively.
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
        HOST
    }

    static final long GRANULE = 4096;

    private final Vcmm vcmm;
    private final String name;
    private final Kind kind;
    private final long start;
    private final long length;
    final AddressSpaceAllocator space;
    final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    /** By address, unsigned order: upper-half addresses are negative longs. */
    final ConcurrentSkipListMap<Long, Reservation> reservations = new ConcurrentSkipListMap<>(Long::compareUnsigned);
    final List<Association> associations = new CopyOnWriteArrayList<>();
    final Map<PageTableFormat, PageTable> tables = new ConcurrentHashMap<>();
    private volatile boolean freed;
    /** The mapper of a HOST VCM, else {@code null}. */
    final HostMapper hostMapper;

    Vcm(Vcmm vcmm, String name, Kind kind, long start, long length) {
        this(vcmm, name, kind, start, length, null);
    }

    Vcm(Vcmm vcmm, String name, Kind kind, long start, long length, HostMapper hostMapper) {
        this.hostMapper = hostMapper;
        this.vcmm = vcmm;
        this.name = name;
        this.kind = kind;
        this.start = start;
        this.length = length;
        this.space = new AddressSpaceAllocator(start, length, GRANULE);
    }

    /** @return a name for messages and pictures */
    public String name() {
        return name;
    }

    /** @return what the VCM's addresses mean */
    public Kind kind() {
        return kind;
    }

    /** @return the first device address */
    public long start() {
        return start;
    }

    /** @return the number of bytes of address space */
    public long length() {
        return length;
    }

    /** @return the VCMM it belongs to */
    public Vcmm vcmm() {
        return vcmm;
    }

    /** @return whether {@link #free()} was called */
    public boolean isFreed() {
        return freed;
    }

    void markFreed() {
        freed = true;
    }

    /** @return its reservations in address order (a snapshot) */
    public List<Reservation> reservations() {
        return List.copyOf(reservations.values());
    }

    /** @return its associations (a snapshot) */
    public List<Association> associations() {
        return List.copyOf(associations);
    }

    /** @return the formats it keeps page tables for (a snapshot) */
    public List<PageTableFormat> formats() {
        return List.copyOf(tables.keySet());
    }

    /** @return its page table of {@code format}, or {@code null}; the table stays the VCM's */
    public PageTable table(PageTableFormat format) {
        return tables.get(format);
    }

    /** @return the bytes of address space not reserved */
    public long freeBytes() {
        lock.readLock().lock();
        try {
            return space.freeBytes();
        } finally {
            lock.readLock().unlock();
        }
    }

    /** Reserves {@code length} bytes aligned to 4 KiB. @see Vcmm#reserve(Vcm, long, ReservationAttributes, long) */
    public Reservation reserve(long length, ReservationAttributes attributes) {
        return vcmm.reserve(this, length, attributes, GRANULE);
    }

    /** Reserves {@code length} bytes aligned to {@code alignment}. @see Vcmm#reserve(Vcm, long, ReservationAttributes, long) */
    public Reservation reserve(long length, ReservationAttributes attributes, long alignment) {
        return vcmm.reserve(this, length, attributes, alignment);
    }

    /** Reserves exactly {@code [address, address + length)}. @see Vcmm#reserveAt */
    public Reservation reserveAt(long address, long length, ReservationAttributes attributes) {
        return vcmm.reserveAt(this, address, length, attributes);
    }

    /** Frees the VCM. @see Vcmm#free(Vcm) */
    public void free() {
        vcmm.free(this);
    }

    /** @return the reservation holding device address {@code a}, or {@code null} */
    public Reservation reservationAt(long a) {
        Map.Entry<Long, Reservation> e = reservations.floorEntry(a);
        return e != null && e.getValue().contains(a) ? e.getValue() : null;
    }

    /** The one-to-one "walk": a backed reservation holding the address maps it to itself. */
    WalkResult translateOneToOne(long address, Access access, boolean fromUser) {
        Reservation r = reservationAt(address);
        if (r == null || !r.isBacked()) {
            return new WalkResult.PageFault(address, 0, FaultReason.TRANSLATION,
                r == null ? "no reservation in one-to-one VCM " + name : "reservation not backed: " + r);
        }
        var attributes = r.attributes().toPageAttributes();
        if (access != null && !attributes.allows(access, fromUser)) {
            return new WalkResult.PageFault(address, 0, FaultReason.PERMISSION, access + " not allowed by " + r.attributes());
        }
        return new WalkResult.Translation(address, address, GRANULE, 0, attributes);
    }

    /** @return whether {@code [a, a + len)} lies in the VCM (unsigned, no overflow) */
    boolean covers(long a, long len) {
        return len > 0 && Long.compareUnsigned(a, start) >= 0 && Long.compareUnsigned(a - start, length) < 0
            && Long.compareUnsigned(len, length - (a - start)) <= 0;
    }

    List<Association> activeAssociations() {
        List<Association> out = new ArrayList<>();
        for (Association a : associations) {
            if (a.isActive()) {
                out.add(a);
            }
        }
        return out;
    }

    void checkOwner(Vcmm owner) {
        if (vcmm != owner) {
            throw new IllegalArgumentException("foreign handle: " + this + " belongs to another Vcmm");
        }
    }

    @Override
    public String toString() {
        return String.format("Vcm{%s %s 0x%x+0x%x, %d reservations, %d associations%s}", name, kind, start, length,
            reservations.size(), associations.size(), freed ? ", freed" : "");
    }
}
