package dev.vcmm;

import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.Attributes;
import dev.vcmm.pagetable.PageTable;
import dev.vcmm.pagetable.FaultReason;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.spi.HostMapper;
import dev.vcmm.spi.HostMapping;

import java.util.ArrayList;
import java.util.List;

/**
 * What a {@link Vcm}'s addresses mean, as an object: the behaviour that differs between kinds of VCM, which
 * {@link Vcm} calls at fixed points of its operations (reserve, back, unback, free, associate, walk, clone, close).
 * {@link Virtual} is the default and does nothing extra; {@link OneToOne} needs memory at a reservation's own
 * address and translates without tables; {@link Host} maps backed memory into this process. The public
 * {@link Vcm.Kind} is what {@link #kind()} reports. A CPU's VCM ({@link Vcmm#createCpuVcm}) is a virtual VCM
 * associated with the CPU device: it behaves as {@link Virtual} in every respect, so it has no class of its own.
 *
 * <p><b>Thread-safety:</b> immutable; the hooks are called under the locks {@link Vcm} takes for the operation.
 */
abstract sealed class VcmKind permits VcmKind.Virtual, VcmKind.OneToOne, VcmKind.Host, VcmKind.Guest {

    /** @return the kind callers see */
    abstract Vcm.Kind kind();

    /** @return whether devices translate through page tables (so the tables' dirty state records their writes) */
    boolean walksTables() {
        return true;
    }

    /** @return a new, empty page table of {@code format} for a VCM of this kind: in {@code tableMemory} by default */
    PageTable createTable(PageTableFormat format, MemoryType tableMemory) {
        return PageTable.create(format, tableMemory.memory(), tableMemory.allocator());
    }

    /** Maps {@code r}'s backing into one of the VCM's tables: the memory's physical runs by default. */
    void mapInto(PageTable t, Reservation r, PhysMem memory, long offset, Attributes a) {
        Vcm.mapInto(t, r, memory, offset, a);
    }

    /** @return the host VCM of a guest, else {@code null} */
    Vcm host() {
        return null;
    }

    /** @return whether this is a guest of {@code host} using its table of {@code stage2} */
    boolean usesStage2(Vcm host, PageTableFormat stage2) {
        return false;
    }

    /** @return the alignment a reservation of this kind gets when {@code alignment} is asked for */
    long alignment(long alignment) {
        return alignment;
    }

    /** Checks a reservation range before anything changes. @throws IllegalArgumentException if it does not fit */
    void checkRange(long address, long length) {
    }

    /**
     * Checks that {@code memory} from {@code offset} may back {@code r}; the generic checks (length, alignment,
     * security) have passed. Nothing is changed. @throws IllegalArgumentException if it may not
     */
    void checkBack(Reservation r, PhysMem memory, long offset) {
    }

    /** @return the options a one-call binding ({@link Binding#make}) allocates its memory with, given the caller's */
    PhysAllocOptions bindingOptions(PhysAllocOptions options) {
        return options;
    }

    /**
     * Reserves the range a one-call binding ({@link Binding#make}, {@link Binding#map}) backs with {@code memory}:
     * anywhere, aligned to the largest chunk so the tables can use blocks (4 KiB if no range that aligned is free).
     */
    Reservation reserveFor(Vcm vcm, PhysMem memory, long length, ReservationAttributes attributes) {
        long largest = Vcm.GRANULE;
        for (int i = 0; i < memory.chunkCount(); i++) {
            largest = Math.max(largest, 4096L << memory.chunkOrder(i));
        }
        try {
            return vcm.reserve(length, attributes, largest);
        } catch (VcmmOutOfMemoryException fragmented) {
            if (largest == Vcm.GRANULE) {
                throw fragmented;
            }
            return vcm.reserve(length, attributes, Vcm.GRANULE);
        }
    }

    /**
     * Checks that the attributes of backed {@code r} may change in place; nothing is changed.
     *
     * @throws IllegalArgumentException if they may not
     */
    void checkAttributeChange(Reservation r) {
    }

    /** The last step of a back, after the page tables: undoes itself on failure. */
    void map(Reservation r, PhysMem memory, long offset) {
    }

    /**
     * The first step of an unback, before the page tables.
     *
     * @throws IllegalStateException if it cannot be done now; nothing changed then
     */
    void unmap(Reservation r) {
    }

    /** After the VCM was freed (under its lock): gives back what the kind holds. */
    void release(Vcm vcm) {
    }

    /**
     * On {@link Vcmm#close()}, before the page tables and memory types close.
     *
     * @return a failure to report, or {@code null}
     */
    RuntimeException close(Vcm vcm) {
        return null;
    }

    /** @throws IllegalArgumentException if {@code device} cannot use a VCM of this kind in {@code mode} */
    void checkDevice(Vcm vcm, Device device, AssociationMode mode) {
        if (device.kind() == DeviceKind.ONE_TO_ONE) {
            throw new IllegalArgumentException("device " + device.name() + " (" + device.kind() + ") cannot use " + vcm
                + ": one-to-one devices go with one-to-one VCMs only");
        }
    }

    /** @return the kind of a copy made by {@link Vcmm#cloneVcm}. @throws IllegalArgumentException if it has none */
    VcmKind cloneKind(Vcm vcm) {
        return this;
    }

    /**
     * Translates {@code address} for a device of {@code format} (the device is inside its burst fence): walks the
     * VCM's table of that format.
     */
    WalkResult walk(Vcm vcm, PageTableFormat format, long address, Access access, boolean fromUser) {
        return vcm.walkTable(format, address, access, fromUser);
    }

    /**
     * @throws IllegalArgumentException if part of a reservation of this kind cannot be unbacked or bound on its own
     *                                  (only page tables can: one-to-one and HOST VCMs refuse)
     */
    void checkSubRange(Vcm vcm) {
        if (kind() != Vcm.Kind.VIRTUAL) {
            throw new IllegalArgumentException("sub-range unback and remap need page tables; " + vcm + " is " + kind());
        }
    }

    // ---------------------------------------------------------------------------------------------

    /** Device addresses translate through page tables, one per format of the associated devices. */
    static final class Virtual extends VcmKind {
        static final Virtual INSTANCE = new Virtual();

        private Virtual() {
        }

        @Override
        Vcm.Kind kind() {
            return Vcm.Kind.VIRTUAL;
        }
    }

    /** Device addresses are physical addresses: no tables; a reservation is backed by memory at its own address. */
    static final class OneToOne extends VcmKind {
        static final OneToOne INSTANCE = new OneToOne();

        private OneToOne() {
        }

        @Override
        Vcm.Kind kind() {
            return Vcm.Kind.ONE_TO_ONE;
        }

        @Override
        boolean walksTables() {
            return false;
        }

        @Override
        void checkBack(Reservation r, PhysMem memory, long offset) {
            memory.forEachRun(offset, r.length(), (o, pa, n) -> {
                if (pa != r.address() + o) {
                    throw new IllegalArgumentException(String.format(
                        "one-to-one %s needs memory at its own address: byte 0x%x is at pa=0x%x", r, o, pa));
                }
            });
        }

        /** One range: device addresses are physical ones. */
        @Override
        PhysAllocOptions bindingOptions(PhysAllocOptions options) {
            return options.withContiguous(true);
        }

        /** At the memory's own address (VCM v2's reason for one-call bindings: allocate first, then reserve there). */
        @Override
        Reservation reserveFor(Vcm vcm, PhysMem memory, long length, ReservationAttributes attributes) {
            if (!memory.isContiguous()) {
                throw new IllegalArgumentException("one-to-one " + vcm + " needs contiguous memory, not " + memory);
            }
            return vcm.reserveAt(memory.physicalAddress(0), length, attributes);
        }

        @Override
        void checkDevice(Vcm vcm, Device device, AssociationMode mode) {
            if (device.kind() != DeviceKind.ONE_TO_ONE) {
                throw new IllegalArgumentException("device " + device.name() + " (" + device.kind() + ") cannot use " + vcm
                    + ": one-to-one devices go with one-to-one VCMs only");
            }
            if (mode != AssociationMode.WHOLE) {
                throw new IllegalArgumentException("a one-to-one device has no high and low tables: mode=" + mode);
            }
        }

        /** The one-to-one "walk": a backed reservation holding the address maps it to itself. */
        @Override
        WalkResult walk(Vcm vcm, PageTableFormat format, long address, Access access, boolean fromUser) {
            Reservation r = vcm.reservationAt(address);
            if (r == null || !r.isBacked()) {
                return new WalkResult.PageFault(address, 0, FaultReason.TRANSLATION,
                    r == null ? "no reservation in one-to-one VCM " + vcm.name() : "reservation not backed: " + r);
            }
            var attributes = r.attributes().toPageAttributes(r.backingMemory());
            if (access != null && !attributes.allows(access, fromUser)) {
                return new WalkResult.PageFault(address, 0, FaultReason.PERMISSION, access + " not allowed by " + r.attributes());
            }
            return new WalkResult.Translation(address, address, Vcm.GRANULE, 0, attributes);
        }
    }

    /**
     * A range of this process's own address space, reserved with no access when the VCM is created; its reservations
     * are sub-ranges (a reservation's address is the process virtual address). Backing maps every physically
     * contiguous run of the memory at its place with the reservation's permissions; unbacking ends the views and
     * returns the range to no access; freeing the VCM gives the range back to the system. Devices associated with it
     * walk tables of the process's addresses, as with a virtual VCM.
     */
    static final class Host extends VcmKind {
        private final HostMapper mapper;

        Host(HostMapper mapper) {
            this.mapper = mapper;
        }

        @Override
        Vcm.Kind kind() {
            return Vcm.Kind.HOST;
        }

        /** Raised to the host page size. */
        @Override
        long alignment(long alignment) {
            return Math.max(alignment, mapper.pageSize());
        }

        @Override
        void checkRange(long address, long length) {
            long page = mapper.pageSize();
            if (address % page != 0 || length % page != 0) {
                throw new IllegalArgumentException(String.format("address=0x%x length=0x%x: a HOST reservation must be made of "
                    + "whole host pages of %d bytes", address, length, page));
            }
        }

        /**
         * A non-secure memory type whose physical memory the mapper can map, and every chunk under the window a whole
         * number of host pages at a page-aligned file offset (the mapping is made per run, but a run is only as
         * aligned as its chunks).
         */
        @Override
        void checkBack(Reservation r, PhysMem memory, long offset) {
            long page = mapper.pageSize();
            MemoryType type = memory.memoryType();
            if (type.isSecure()) {
                throw new IllegalArgumentException("secure memory " + memory + " cannot be mapped into the host process (" + r + ")");
            }
            mapper.checkMappable(type.memory());
            if (offset % page != 0) {
                throw new IllegalArgumentException("offset=" + offset + " must be a multiple of the host page size " + page + " to back " + r);
            }
            long end = offset + r.length();
            for (int i = memory.chunkIndexAt(offset); i < memory.chunkCount() && memory.chunkOffset(i) < end; i++) {
                PhysMem.Chunk c = memory.chunks().get(i);
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

        /** The process mapping has no in-place protection change (the SPI has no mprotect). */
        @Override
        void checkAttributeChange(Reservation r) {
            if (r.hostMapping() != null) {
                throw new IllegalArgumentException("the attributes of backed HOST " + r + " cannot change in place (the process"
                    + " mapping would keep the old ones); unback it, change them, and back it again");
            }
        }

        /** Maps the runs of the window into the reservation's range: the one place a PhysMem run becomes an SPI run. */
        @Override
        void map(Reservation r, PhysMem memory, long offset) {
            List<HostMapper.Run> runs = new ArrayList<>();
            memory.forEachRun(offset, r.length(), (o, pa, n) -> runs.add(new HostMapper.Run(o, pa, n)));
            ReservationAttributes a = r.attributes();
            int prot = (a.read() ? HostMapper.PROT_READ : 0) | (a.write() ? HostMapper.PROT_WRITE : 0)
                | (a.execute() ? HostMapper.PROT_EXEC : 0);
            r.hostMapped(mapper.map(r.address(), r.length(), prot, memory.memoryType().memory(), runs));
        }

        /** Ends the views and takes the memory away. @throws IllegalStateException if a view is held; the mapping stays */
        @Override
        void unmap(Reservation r) {
            HostMapping m = r.hostMapping();
            if (m != null) {
                m.close();
                r.hostMapped(null);
            }
        }

        @Override
        void release(Vcm vcm) {
            mapper.release(vcm.start(), vcm.length());
        }

        /** Closes every mapping and releases the range; a VCM whose mapping cannot close keeps its range (its views still work). */
        @Override
        RuntimeException close(Vcm vcm) {
            try {
                for (Reservation r : vcm.reservations()) {
                    unmap(r);
                }
                mapper.release(vcm.start(), vcm.length());
                return null;
            } catch (RuntimeException e) {
                return new IllegalStateException("HOST " + vcm + " could not be released on close: " + e.getMessage(), e);
            }
        }

        @Override
        VcmKind cloneKind(Vcm vcm) {
            throw new IllegalArgumentException("a HOST VCM cannot be cloned (its range is the process's own): " + vcm
                + "; copyMappings into a VIRTUAL VCM instead");
        }
    }

    /**
     * A guest under nested translation: its tables (stage 1, one per format of its devices) map device addresses to
     * IPAs of the {@link #host} VCM, live in the guest's own memory (IPA pages of {@link #pool}, a backed reservation of
     * the host) and are read through {@link Stage2Memory}, so each of their reads is translated by the host's table
     * of {@link #stage2}. A reservation of the guest is backed by memory the host VCM maps (the guest's RAM): its
     * entries hold the IPA of that memory, and memory the host does not map cannot back it. A device walk is the
     * nested walk: stage 1 (each table read through stage 2), then stage 2 of the output IPA; the IOTLB caches the
     * combined translation.
     */
    static final class Guest extends VcmKind {
        final Vcm host;
        final PageTableFormat stage2;
        final Reservation pool;
        private final Stage2Memory memory;
        private final GuestTableAllocator allocator;

        Guest(Vcm host, PageTableFormat stage2, Reservation pool, Bus bus) {
            this.host = host;
            this.stage2 = stage2;
            this.pool = pool;
            this.memory = new Stage2Memory(host, stage2, bus);
            this.allocator = new GuestTableAllocator(pool.address(), pool.length());
        }

        @Override
        Vcm.Kind kind() {
            return Vcm.Kind.GUEST;
        }

        @Override
        Vcm host() {
            return host;
        }

        @Override
        boolean usesStage2(Vcm h, PageTableFormat f) {
            return h == host && f.equals(stage2);
        }

        @Override
        PageTable createTable(PageTableFormat format, MemoryType tableMemory) {
            return PageTable.create(format, memory, allocator); // in the guest's memory, read through stage 2
        }

        /** {@return the IPA where the host maps byte {@code offset} of {@code memory}, for {@code length} bytes} */
        private long ipaOf(PhysMem memory, long offset, long length) {
            for (Reservation h : host.reservations()) {
                PhysMem pm = h.backingMemory();
                long from = h.backingOffset();
                if (pm == memory && offset >= from && offset - from <= h.length() - length) {
                    return h.address() + (offset - from);
                }
            }
            throw new IllegalArgumentException(String.format("%s was not given %s bytes [0x%x, 0x%x): no reservation of its"
                + " host %s is backed by them; back a host reservation with that memory first", "the guest", memory, offset,
                offset + length, host));
        }

        @Override
        void checkBack(Reservation r, PhysMem memory, long offset) {
            ipaOf(memory, offset, r.length());
        }

        @Override
        void mapInto(PageTable t, Reservation r, PhysMem memory, long offset, Attributes a) {
            long ipa = ipaOf(memory, offset, r.length());
            try {
                t.map(r.address(), ipa, r.length(), a);
            } catch (RuntimeException e) {
                t.unmap(r.address(), r.length()); // whatever was mapped of the range: the rest is empty
                throw e;
            }
        }

        @Override
        void release(Vcm vcm) {
            host.detachGuest(vcm, stage2);
        }

        @Override
        VcmKind cloneKind(Vcm vcm) {
            throw new IllegalArgumentException("a GUEST VCM cannot be cloned (its tables live in its host's memory): " + vcm);
        }

        /**
         * The nested walk: stage 1 through {@link Stage2Memory} (a stage-2 fault on a table read names that stage-1
         * level), then stage 2 of the output IPA; the translation combines both: the output of stage 2, the largest
         * leaf of the device's format inside both leaves, and the permissions both allow (stage 1's user and memory
         * type).
         */
        @Override
        WalkResult walk(Vcm vcm, PageTableFormat format, long address, Access access, boolean fromUser) {
            Stage2Memory.Walk w = Stage2Memory.begin();
            WalkResult r1;
            try {
                r1 = vcm.walkTable(format, address, access, fromUser);
            } catch (Stage2Memory.Stage2Fault e) {
                WalkResult.PageFault f = e.fault;
                return new WalkResult.PageFault(address, f.level(), f.reason(), f.detail(), 2, w.stage1Reads, e.ipa);
            }
            if (r1 instanceof WalkResult.PageFault f) {
                return new WalkResult.PageFault(f.va(), f.level(), f.reason(), f.detail(), 1, -1, 0);
            }
            WalkResult.Translation t1 = (WalkResult.Translation) r1;
            WalkResult r2 = host.walkTable(stage2, t1.pa(), access, true);
            Stage2Memory.countStage2(r2);
            if (r2 instanceof WalkResult.PageFault f) {
                return new WalkResult.PageFault(address, f.level(), f.reason(), f.detail(), 2, -1, t1.pa());
            }
            WalkResult.Translation t2 = (WalkResult.Translation) r2;
            long size = 0;
            long limit = Math.min(t1.leafSize(), t2.leafSize());
            for (dev.vcmm.pagetable.LeafSize l : format.leafSizes()) {
                if (l.size() <= limit && l.size() > size) {
                    size = l.size();
                }
            }
            Attributes a1 = t1.attributes();
            Attributes a2 = t2.attributes();
            Attributes a = new Attributes(a1.read() && a2.read(), a1.write() && a2.write(), a1.execute() && a2.execute(),
                a1.user(), a1.cache());
            return new WalkResult.Translation(address, t2.pa(), size, t1.level(), a);
        }
    }
}
