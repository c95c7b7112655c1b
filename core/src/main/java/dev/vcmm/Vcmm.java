package dev.vcmm;

import dev.vcmm.pagetable.Attributes;
import dev.vcmm.pagetable.LeafSize;
import dev.vcmm.pagetable.PageTable;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.space.AddressSpaceAllocator;
import dev.vcmm.spi.HostMapper;
import dev.vcmm.spi.MemoryBackend;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The Virtual Contiguous Memory Manager: memory types, devices, VCMs, reservations, associations and
 * backings as one graph, after the original VCMM proposal. Built with {@link #builder()}:
 * <pre>{@code
 * try (Vcmm vcmm = Vcmm.builder()
 *         .memoryType(MemoryType.builder("ddr").base(0x8000_0000L).size(1L << 30))
 *         .build()) {
 *     Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
 *     Vcm vcm = vcmm.createVcm(0x1000_0000L, 256L << 20);
 *     vcmm.assoc(vcm, gpu).activate();
 *     Reservation r = vcm.reserve(8 << 20, ReservationAttributes.RW, 1 << 20);
 *     PhysMem pm = vcmm.physAlloc("ddr", 8 << 20, ChunkPolicy.VCMM);
 *     r.back(pm);                                   // PTEs written into the VCM's arm64 table
 *     WalkResult t = gpu.translate(r.address() + 42);  // pa of byte 42 of pm
 *     r.unback(); r.unreserve(); pm.free();
 * }
 * }</pre>
 *
 * <p><b>Thread-safety:</b> thread-safe. Graph changes (creating and freeing VCMs and devices, associating,
 * activating) are serialised by one graph lock, off the hot path. Backing and unbacking take only their
 * VCM's lock shared and write page tables with no lock, so different reservations back and unback in
 * parallel; translation takes no lock at all. Reverse-map queries ({@link #whoMaps}, {@link #reservationsOf})
 * are weakly consistent while backings change.
 */
public final class Vcmm implements AutoCloseable {

    private final Map<String, MemoryType> memoryTypes;
    private final MemoryType[] typeArray;
    private final MemoryType pageTableMemory;
    private final ReentrantLock graph = new ReentrantLock();
    private final Map<String, Device> devices = new ConcurrentHashMap<>();
    private final List<Vcm> vcms = new CopyOnWriteArrayList<>();
    /** Physical memory -> the reservations it backs: a frame table per memory type. */
    private final ReverseMap reverse;
    private final AtomicInteger vcmNames = new AtomicInteger();
    private final AtomicBoolean closed = new AtomicBoolean();
    private final HostVcms host;

    private Vcmm(Map<String, MemoryType> memoryTypes, MemoryType pageTableMemory, HostMapper hostMapper) {
        this.memoryTypes = memoryTypes;
        this.typeArray = memoryTypes.values().toArray(new MemoryType[0]);
        this.pageTableMemory = pageTableMemory;
        this.host = new HostVcms(hostMapper);
        this.reverse = new ReverseMap(typeArray);
    }

    /** @return a builder */
    public static Builder builder() {
        return new Builder();
    }

    // ---------------------------------------------------------------------------------------------
    // memory

    /** @return the memory type called {@code name}. @throws IllegalArgumentException listing the known ones */
    public MemoryType memoryType(String name) {
        MemoryType m = memoryTypes.get(name);
        if (m == null) {
            throw new IllegalArgumentException("memoryType=" + name + " is unknown; known: " + memoryTypes.keySet());
        }
        return m;
    }

    /** @return every memory type, in the order they were added */
    public List<MemoryType> memoryTypes() {
        return List.copyOf(memoryTypes.values());
    }

    /** @return the memory type page tables are allocated from */
    public MemoryType pageTableMemory() {
        return pageTableMemory;
    }

    /** Allocates physical memory from the named memory type. @see MemoryType#physAlloc(long, ChunkPolicy) */
    public PhysMem physAlloc(String memoryType, long length, ChunkPolicy policy) {
        return memoryType(memoryType).physAlloc(length, policy);
    }

    /** Allocates physical memory. @see MemoryType#physAlloc(long, ChunkPolicy, PhysAllocOptions) */
    public PhysMem physAlloc(MemoryType memoryType, long length, ChunkPolicy policy, PhysAllocOptions options) {
        checkMemoryType(memoryType);
        return memoryType.physAlloc(length, policy, options);
    }

    /** @return whether {@code pa} lies in a secure memory type */
    public boolean isSecurePhysical(long pa) {
        for (MemoryType m : typeArray) { // an array, not the map: this runs on every IOTLB miss
            if (m.isSecure() && pa >= m.base() && pa - m.base() < m.size()) {
                return true;
            }
        }
        return false;
    }

    /** @return the memory type holding physical address {@code pa}, or {@code null} */
    public MemoryType memoryTypeAt(long pa) {
        for (MemoryType m : typeArray) { // an array, not the map: this runs on every DMA leaf
            if (pa >= m.base() && pa - m.base() < m.size()) {
                return m;
            }
        }
        return null;
    }

    /** @return a snapshot of every memory type's, VCM's and device's statistics (printable) */
    public VcmmStats stats() {
        checkOpen();
        return VcmmStats.of(this);
    }

    /**
     * Opens a client: an owner whose VCMs, reservations, allocations and associations are all given back
     * when it is closed or becomes unreachable.
     */
    public Client client(String name) {
        checkOpen();
        return new Client(this, name);
    }

    // ---------------------------------------------------------------------------------------------
    // devices

    /** Creates a device behind an IOMMU walking tables of {@code format}. */
    public Device device(String name, PageTableFormat format) {
        return device(name, DeviceKind.IOMMU, format, false);
    }

    /** Creates a one-to-one device (no translation). */
    public Device oneToOneDevice(String name) {
        return device(name, DeviceKind.ONE_TO_ONE, null, false);
    }

    /** Creates a CPU whose MMU walks tables of {@code format}. */
    public Device cpu(String name, PageTableFormat format) {
        return device(name, DeviceKind.CPU, format, false);
    }

    /**
     * Creates a device.
     *
     * @param name   unique in this VCMM
     * @param kind   how it reaches memory
     * @param format its page-table format; required for IOMMU and CPU devices, {@code null} for one-to-one
     * @param secure whether it may reach secure memory
     * @throws IllegalArgumentException if the name is taken or the format does not fit the kind
     */
    public Device device(String name, DeviceKind kind, PageTableFormat format, boolean secure) {
        return device(name, kind, format, secure, DeviceOptions.DEFAULT);
    }

    /**
     * Creates a device with an IOTLB of the given geometry. @see #device(String, DeviceKind, PageTableFormat, boolean)
     */
    public Device device(String name, DeviceKind kind, PageTableFormat format, boolean secure, DeviceOptions options) {
        Objects.requireNonNull(options, "options");
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(kind, "kind");
        if ((kind == DeviceKind.ONE_TO_ONE) != (format == null)) {
            throw new IllegalArgumentException("device=" + name + ": kind=" + kind
                + (format == null ? " needs a page-table format" : " takes no page-table format, got " + format.name()));
        }
        if (format != null && format.leafSizes().getLast().size() != Vcm.GRANULE) {
            throw new IllegalArgumentException("device=" + name + ": format " + format.name() + " maps "
                + LeafSize.humanSize(format.leafSizes().getLast().size()) + " pages at the least, and the graph backs"
                + " reservations in 4 KiB granules; use a 4K-granule format for a device (the 16K and 64K granules are"
                + " available to PageTable directly)");
        }
        graph.lock();
        try {
            checkOpen();
            if (devices.containsKey(name)) {
                throw new IllegalArgumentException("device=" + name + " exists already");
            }
            Device d = new Device(this, name, kind, format, secure, options);
            devices.put(name, d);
            return d;
        } finally {
            graph.unlock();
        }
    }

    /**
     * Installs a fault handler on a device (the original VCMM's hook); {@code null} removes it.
     *
     * @see Device#hook(FaultHandler)
     */
    public void hook(Device device, FaultHandler handler) {
        checkDevice(device);
        device.hook(handler);
    }

    /** @return the device called {@code name}. @throws IllegalArgumentException if there is none */
    public Device device(String name) {
        Device d = devices.get(name);
        if (d == null) {
            throw new IllegalArgumentException("device=" + name + " is unknown");
        }
        return d;
    }

    /** @return every device (a snapshot) */
    public List<Device> devices() {
        return List.copyOf(devices.values());
    }

    // ---------------------------------------------------------------------------------------------
    // VCMs

    /**
     * Creates a virtual VCM over device addresses {@code [start, start + length)}.
     *
     * @throws IllegalArgumentException if start or length is not a multiple of 4 KiB, or the range wraps
     */
    public Vcm createVcm(long start, long length) {
        return createVcm(Vcm.Kind.VIRTUAL, start, length);
    }

    /** Creates a one-to-one VCM over the physical range {@code [start, start + length)}. */
    public Vcm createOneToOneVcm(long start, long length) {
        return createVcm(Vcm.Kind.ONE_TO_ONE, start, length);
    }

    /** Creates a one-to-one VCM over the whole of {@code memoryType}. */
    public Vcm createOneToOneVcm(MemoryType memoryType) {
        checkMemoryType(memoryType);
        return createOneToOneVcm(memoryType.base(), memoryType.size());
    }

    /**
     * Creates the CPU's VCM (the original VCMM's pre-built VMM space): a virtual VCM associated with the
     * CPU device and active.
     *
     * @throws VcmmBusyException if the CPU already has an active association; nothing is created
     */
    public Vcm createCpuVcm(Device cpu, long start, long length) {
        checkDevice(cpu);
        if (cpu.kind() != DeviceKind.CPU) {
            throw new IllegalArgumentException("device=" + cpu.name() + " is " + cpu.kind() + ", not a CPU");
        }
        Vcm vcm = createVcm(start, length);
        try {
            assoc(vcm, cpu, AssociationMode.WHOLE).activate();
        } catch (RuntimeException e) {
            // a refused call changes nothing: drop the inactive association (and its table) and the VCM
            for (Association a : vcm.associations()) {
                try {
                    a.deassoc();
                } catch (RuntimeException undo) {
                    e.addSuppressed(undo);
                }
            }
            try {
                free(vcm);
            } catch (RuntimeException undo) {
                e.addSuppressed(undo);
            }
            throw e;
        }
        return vcm;
    }

    /**
     * Creates a HOST VCM: {@code length} bytes of this process's own address space, reserved with no access
     * and aligned to 2 MiB. Its reservations' addresses are process virtual addresses; backing one maps the
     * physical memory there (the same pages the simulated devices reach), and the ffm backend's
     * {@code HostSegments.segment(reservation)} gives the {@code MemorySegment}. Freeing the VCM gives the range
     * back to the system.
     *
     * @throws UnsupportedOperationException saying why, where HOST VCMs are unavailable (no memfd or mmap)
     * @throws IllegalArgumentException      if {@code length} is not a positive multiple of the host page size
     */
    public Vcm createHostVcm(long length) {
        return createHostVcm(length, HostVcms.DEFAULT_ALIGNMENT);
    }

    /** Creates a HOST VCM aligned to {@code alignment}, a power of two at least the host page size. @see #createHostVcm(long) */
    public Vcm createHostVcm(long length, long alignment) {
        checkOpen();
        HostMapper m = host.mapper();
        long start = host.reserveRange(m, length, alignment);
        try {
            return createVcm(Vcm.Kind.HOST, start, length, m);
        } catch (RuntimeException e) {
            try {
                m.release(start, length);
            } catch (RuntimeException undo) {
                e.addSuppressed(undo);
            }
            throw e;
        }
    }

    /** @return empty if HOST VCMs work here, else why not */
    public Optional<String> hostUnavailableReason() {
        return Optional.ofNullable(host.unavailableReason());
    }

    private Vcm createVcm(Vcm.Kind kind, long start, long length) {
        return createVcm(kind, start, length, null);
    }

    private Vcm createVcm(Vcm.Kind kind, long start, long length, HostMapper hostMapper) {
        if (((start | length) & (Vcm.GRANULE - 1)) != 0 || length <= 0) {
            throw new IllegalArgumentException(String.format("start=0x%x length=0x%x must be positive multiples of 4096", start, length));
        }
        if (start + length != 0 && Long.compareUnsigned(start + length, start) < 0) {
            throw new IllegalArgumentException(String.format("start=0x%x length=0x%x wraps around the address space", start, length));
        }
        graph.lock();
        try {
            checkOpen();
            Vcm vcm = new Vcm(this, "vcm" + vcmNames.incrementAndGet(), kind, start, length, hostMapper);
            vcms.add(vcm);
            return vcm;
        } finally {
            graph.unlock();
        }
    }

    /** @return every VCM not freed (a snapshot) */
    public List<Vcm> vcms() {
        return List.copyOf(vcms);
    }

    /**
     * Frees a VCM.
     *
     * @throws VcmmBusyException     while it has reservations or associations (the RFC's -EBUSY)
     * @throws IllegalStateException if already freed
     */
    public void free(Vcm vcm) {
        checkVcm(vcm);
        graph.lock();
        vcm.lock.writeLock().lock();
        try {
            if (!vcm.reservations.isEmpty() || !vcm.associations.isEmpty()) {
                throw new VcmmBusyException("busy: " + vcm + " still has " + vcm.reservations.size() + " reservation(s) and "
                    + vcm.associations.size() + " association(s)");
            }
            vcm.markFreed();
            vcms.remove(vcm);
            HostVcms.release(vcm); // a HOST VCM's range goes back to the system
        } finally {
            vcm.lock.writeLock().unlock();
            graph.unlock();
        }
    }

    // ---------------------------------------------------------------------------------------------
    // reservations

    /**
     * Reserves {@code length} bytes of {@code vcm} aligned to {@code alignment} (aligning to the largest
     * chunk of the memory that will back it lets the mapper use blocks).
     *
     * @throws IllegalArgumentException  for a bad length or alignment, or attributes a page table of the VCM
     *                                   cannot express
     * @throws VcmmOutOfMemoryException  if no free range of the VCM fits
     */
    public Reservation reserve(Vcm vcm, long length, ReservationAttributes attributes, long alignment) {
        checkVcm(vcm);
        Objects.requireNonNull(attributes, "attributes");
        long rounded = roundLength(length);
        if (alignment < Vcm.GRANULE || Long.bitCount(alignment) != 1) {
            throw new IllegalArgumentException("alignment=" + alignment + " must be a power of two >= 4096");
        }
        alignment = HostVcms.alignment(vcm, alignment);
        HostVcms.checkRange(vcm, 0, rounded);
        vcm.lock.writeLock().lock();
        try {
            checkUsable(vcm);
            checkExpressible(vcm, attributes);
            long address = vcm.space.allocate(rounded, alignment);
            if (address == AddressSpaceAllocator.NONE) {
                throw new VcmmOutOfMemoryException(vcm.name(), rounded, 0, "no free range of " + vcm + " holds 0x"
                    + Long.toHexString(rounded) + " bytes aligned to 0x" + Long.toHexString(alignment)
                    + " (largest free range 0x" + Long.toHexString(vcm.space.largestFreeRange()) + ")");
            }
            Reservation r = new Reservation(vcm, address, rounded, attributes);
            vcm.reservations.put(address, r);
            return r;
        } finally {
            vcm.lock.writeLock().unlock();
        }
    }

    /**
     * Reserves exactly {@code [address, address + length)} of {@code vcm}.
     *
     * @throws IllegalArgumentException if misaligned, outside the VCM, or the attributes cannot be expressed
     * @throws IllegalStateException    if any part of the range is reserved already
     */
    public Reservation reserveAt(Vcm vcm, long address, long length, ReservationAttributes attributes) {
        checkVcm(vcm);
        Objects.requireNonNull(attributes, "attributes");
        long rounded = roundLength(length);
        if ((address & (Vcm.GRANULE - 1)) != 0) {
            throw new IllegalArgumentException(String.format("address=0x%x must be a multiple of 4096", address));
        }
        if (!vcm.covers(address, rounded)) {
            throw new IllegalArgumentException(String.format("range address=0x%x length=0x%x is outside %s", address, rounded, vcm));
        }
        HostVcms.checkRange(vcm, address, rounded);
        vcm.lock.writeLock().lock();
        try {
            checkUsable(vcm);
            checkExpressible(vcm, attributes);
            if (!vcm.space.allocateAt(address, rounded)) {
                Reservation other = overlapping(vcm, address, rounded);
                throw new IllegalStateException(String.format("range address=0x%x length=0x%x overlaps %s", address, rounded, other));
            }
            Reservation r = new Reservation(vcm, address, rounded, attributes);
            vcm.reservations.put(address, r);
            return r;
        } finally {
            vcm.lock.writeLock().unlock();
        }
    }

    private static Reservation overlapping(Vcm vcm, long address, long length) {
        for (Reservation r : vcm.reservations.values()) {
            if (Long.compareUnsigned(r.address(), address + length - 1) <= 0
                && Long.compareUnsigned(address, r.address() + r.length() - 1) <= 0) {
                return r;
            }
        }
        return null;
    }

    /**
     * Returns a reservation's range to its VCM.
     *
     * @throws VcmmBusyException     while it is backed
     * @throws IllegalStateException if already unreserved
     */
    public void unreserve(Reservation r) {
        checkReservation(r);
        Vcm vcm = r.vcm();
        vcm.lock.writeLock().lock();
        try {
            if (r.isReleased()) {
                throw new IllegalStateException("already unreserved: " + r);
            }
            if (r.backing.get() != null) {
                throw new VcmmBusyException("busy: " + r + " is backed; unback it first");
            }
            vcm.space.free(r.address(), r.length());
            vcm.reservations.remove(r.address());
            r.markReleased();
        } finally {
            vcm.lock.writeLock().unlock();
        }
        if (!orphanVcms.isEmpty()) {
            sweepOrphans();
        }
    }

    // ---------------------------------------------------------------------------------------------
    // backing

    /**
     * Backs {@code r} with {@code memory} from {@code offset}: writes the mappings into every page table the
     * VCM has (one per format among its associated devices), with the largest leaves the chunks allow. In a
     * one-to-one VCM the memory must lie at the reservation's own address.
     *
     * @throws IllegalArgumentException if the memory is too short, misaligned, foreign, not at the reservation's
     *                                  address (one-to-one), or secure while the reservation is not
     * @throws IllegalStateException    if the reservation is backed, being backed, or unreserved, or the memory
     *                                  was freed; nothing is changed
     */
    public void back(Reservation r, PhysMem memory, long offset) {
        checkReservation(r);
        Objects.requireNonNull(memory, "memory");
        checkMemoryType(memory.memoryType());
        if (offset < 0 || (offset & (Vcm.GRANULE - 1)) != 0) {
            throw new IllegalArgumentException("offset=" + offset + " must be a non-negative multiple of 4096");
        }
        if (memory.length() - offset < r.length()) {
            throw new IllegalArgumentException("too little memory: " + memory + " from offset=" + offset + " has "
                + Math.max(0, memory.length() - offset) + " bytes, " + r + " needs " + r.length());
        }
        if (memory.memoryType().isSecure() && !r.attributes().secure()) {
            throw new IllegalArgumentException("secure memory " + memory + " can back only secure reservations, not " + r);
        }
        HostVcms.checkBack(r, memory, offset);
        Vcm vcm = r.vcm();
        if (vcm.kind() == Vcm.Kind.ONE_TO_ONE) {
            for (long[] s : slices(memory, offset, r.length())) {
                if (s[1] != r.address() + s[0]) {
                    throw new IllegalArgumentException(String.format("one-to-one %s needs memory at its own address: byte 0x%x is at pa=0x%x",
                        r, s[0], s[1]));
                }
            }
        }
        vcm.lock.readLock().lock();
        try {
            if (r.isReleased()) {
                throw new IllegalStateException("use after unreserve: " + r);
            }
            if (!r.backing.compareAndSet(null, Reservation.IN_PROGRESS)) {
                throw new IllegalStateException("already backed: " + r);
            }
            boolean counted = false;
            List<PageTable> done = new ArrayList<>();
            try {
                memory.acquireBacking();
                counted = true;
                Attributes a = r.attributes().toPageAttributes();
                for (PageTable t : vcm.tables.values()) {
                    mapInto(t, r, memory, offset, a);
                    done.add(t);
                }
                if (vcm.kind() == Vcm.Kind.HOST) {
                    r.hostMapping = HostVcms.map(r, memory, offset); // last: it undoes itself on failure
                }
            } catch (RuntimeException e) {
                for (PageTable t : done) {
                    t.unmap(r.address(), r.length());
                }
                DeviceDma.invalidate(vcm, r.address(), r.length()); // a DMA may have cached the short-lived mapping
                if (counted) {
                    memory.releaseBacking();
                }
                r.backing.set(null);
                throw e;
            }
            register(r, memory, offset);
            r.backing.set(new Reservation.Backing(memory, offset));
        } finally {
            vcm.lock.readLock().unlock();
        }
    }

    /** Maps the reservation's runs of {@code memory} into one table; undoes its own part on failure. */
    private static void mapInto(PageTable t, Reservation r, PhysMem memory, long offset, Attributes a) {
        long va = r.address();
        try {
            memory.forEachRun(offset, r.length(), (o, pa, n) -> t.map(va + o, pa, n, a));
        } catch (RuntimeException e) {
            t.unmap(va, r.length()); // whatever was mapped of the range: the rest is empty
            throw e;
        }
    }

    /**
     * @return the physically contiguous pieces of {@code [offset, offset + length)} of {@code memory}, each
     * {@code {offset in the window, pa, bytes}}, adjacent chunks merged so the mapper sees whole runs
     */
    static List<long[]> slices(PhysMem memory, long offset, long length) {
        List<long[]> out = new ArrayList<>();
        memory.forEachRun(offset, length, (o, pa, n) -> out.add(new long[] {o, pa, n}));
        return out;
    }

    /**
     * Removes a reservation's mappings from every page table of its VCM, invalidates them in the IOTLB of every
     * device of the VCM and waits for the DMA bursts in flight on those devices (at most one per DMA thread): when
     * it returns, no device reaches the memory through this reservation, and the memory's backing count drops.
     *
     * @throws IllegalStateException if it is not backed (or is being backed or unbacked by another thread); or, for a
     *                               HOST reservation, if a view of it is held: nothing changed. If a page table fails
     *                               to remove its mappings, the IOTLBs are still invalidated and synchronized, the
     *                               reservation stays backed (its memory is not released) and a later unback
     *                               finishes; it is never left half-way.
     */
    public void unback(Reservation r) {
        checkReservation(r);
        Vcm vcm = r.vcm();
        vcm.lock.readLock().lock();
        try {
            Reservation.Backing b = r.backing.get();
            if (b == null || b == Reservation.IN_PROGRESS || !r.backing.compareAndSet(b, Reservation.IN_PROGRESS)) {
                throw new IllegalStateException("not backed: " + r);
            }
            try {
                HostVcms.unmap(r); // first: the CPU's views end before anything else goes
            } catch (RuntimeException e) {
                r.backing.set(b); // a view is held (e.g. by a native call): nothing changed
                throw e;
            }
            // from here on the reservation is never left IN_PROGRESS (that would wedge it for good): it ends
            // unbacked, or still backed if a page table kept part of its mappings (a retry of unback then finishes)
            Reservation.Backing end = b;
            try {
                RuntimeException tableFailure = null;
                for (PageTable t : vcm.tables.values()) {
                    try {
                        t.unmap(r.address(), r.length());
                    } catch (RuntimeException e) {
                        tableFailure = chain(tableFailure, e);
                    }
                }
                Runnable hook = unbackHook;
                if (hook != null) {
                    hook.run();
                }
                // after the PTEs, before the memory is released; also after a partial failure: what was removed
                // must not stay cached in an IOTLB or in a burst in flight
                DeviceDma.invalidate(vcm, r.address(), r.length());
                if (tableFailure != null) {
                    throw new IllegalStateException("unback of " + r + " failed to remove its mappings from a page table;"
                        + " it stays backed (unback again to finish)", tableFailure);
                }
                end = null;
                unregister(r, b.memory());
                b.memory().releaseBacking();
            } finally {
                r.backing.set(end);
            }
        } finally {
            vcm.lock.readLock().unlock();
        }
    }

    private static RuntimeException chain(RuntimeException first, RuntimeException next) {
        if (first == null) {
            return next;
        }
        first.addSuppressed(next);
        return first;
    }

    /** A test-only failure point inside {@link #unback}, between the page tables and the IOTLBs ({@code null} outside tests). */
    static volatile Runnable unbackHook;

    /** @return the reverse map (for tests) */
    ReverseMap reverseMap() {
        return reverse;
    }

    private void register(Reservation r, PhysMem memory, long offset) {
        reverse.register(r, memory);
    }

    private void unregister(Reservation r, PhysMem memory) {
        reverse.unregister(r, memory);
    }

    /** @return the reservations {@code memory} backs now */
    public List<Reservation> reservationsOf(PhysMem memory) {
        return reverse.reservationsOf(memory);
    }

    /**
     * @return every place physical address {@code pa} is mapped: reservation and device address. O(orders) loads of
     *         the memory type's frame table, whatever the number of live backings
     */
    public List<Mapping> whoMaps(long pa) {
        return reverse.whoMaps(pa);
    }

    /**
     * @return the address in {@code dst} that maps the same physical byte as {@code address} in {@code src},
     * if any
     */
    public OptionalLong translate(Vcm src, long address, Vcm dst) {
        checkVcm(src);
        checkVcm(dst);
        Reservation r = src.reservationAt(address);
        if (r == null || !r.isBacked()) {
            return OptionalLong.empty();
        }
        long pa = r.backingMemory().physicalAddress(r.backingOffset() + (address - r.address()));
        for (Mapping m : whoMaps(pa)) {
            if (m.reservation().vcm() == dst) {
                return OptionalLong.of(m.address());
            }
        }
        return OptionalLong.empty();
    }

    /** Translates a device address through the device's active tables. @see Device#translate(long) */
    public WalkResult translate(Device device, long address) {
        checkDevice(device);
        return device.translate(address);
    }

    /**
     * Copies {@code length} bytes from {@code src} at {@code srcOffset} to {@code dst} at {@code dstOffset}
     * through their backing memory (the original VCMM's vcm_res_copy).
     *
     * @throws IllegalArgumentException if a range is outside its reservation
     * @throws IllegalStateException    if either reservation is not backed
     */
    public void copy(Reservation dst, long dstOffset, Reservation src, long srcOffset, long length) {
        checkReservation(dst);
        checkReservation(src);
        Objects.checkFromIndexSize(dstOffset, length, dst.length());
        Objects.checkFromIndexSize(srcOffset, length, src.length());
        PhysMem dm = dst.backingMemory();
        PhysMem sm = src.backingMemory();
        if (dm == null || sm == null) {
            throw new IllegalStateException("copy needs both reservations backed: " + (dm == null ? dst : src));
        }
        byte[] buffer = new byte[(int) Math.min(length, 64 << 10)];
        long done = 0;
        while (done < length) {
            long sOff = src.backingOffset() + srcOffset + done;
            long dOff = dst.backingOffset() + dstOffset + done;
            long sPa = sm.physicalAddress(sOff);
            long dPa = dm.physicalAddress(dOff);
            // stay inside one 4 KiB page on both sides: chunks are at least that contiguous
            int n = (int) Math.min(Math.min(length - done, buffer.length),
                Math.min(4096 - (sPa & 4095), 4096 - (dPa & 4095)));
            sm.memoryType().memory().copyOut(sPa, buffer, 0, n);
            dm.memoryType().memory().copyIn(buffer, 0, dPa, n);
            done += n;
        }
    }

    /**
     * Makes an independent copy of {@code vcm}: a new VCM over the same range with a copy of every
     * reservation, backed by the same physical memory. Associations are not copied. All or nothing: if any step
     * fails (e.g. a source reservation is unbacked and its memory freed meanwhile), everything the copy made is
     * undone, the copy is freed, and the failure is thrown.
     */
    public Vcm cloneVcm(Vcm vcm) {
        checkVcm(vcm);
        if (vcm.kind() == Vcm.Kind.HOST) {
            throw new IllegalArgumentException("a HOST VCM cannot be cloned (its range is the process's own): " + vcm
                + "; copyMappings into a VIRTUAL VCM instead");
        }
        Vcm copy = vcm.kind() == Vcm.Kind.VIRTUAL ? createVcm(vcm.start(), vcm.length()) : createOneToOneVcm(vcm.start(), vcm.length());
        try {
            copyMappings(vcm, vcm.start(), vcm.length(), copy);
            for (Reservation r : vcm.reservations()) {
                Runnable hook = cloneHook;
                if (hook != null) {
                    hook.run();
                }
                if (!r.isBacked() && copy.reservationAt(r.address()) == null) {
                    reserveAt(copy, r.address(), r.length(), r.attributes());
                }
            }
        } catch (RuntimeException | Error e) {
            discard(copy, e);
            throw e;
        }
        return copy;
    }

    /** A test-only point inside {@link #cloneVcm}, before each reservation's copy ({@code null} outside tests). */
    static volatile Runnable cloneHook;

    /** Undoes a VCM nobody else has seen yet: unbacks and unreserves what it has, then frees it. */
    private void discard(Vcm vcm, Throwable cause) {
        try {
            for (Reservation r : vcm.reservations()) {
                if (r.isBacked()) {
                    unback(r);
                }
                unreserve(r);
            }
            free(vcm);
        } catch (RuntimeException undo) {
            cause.addSuppressed(undo);
        }
    }

    /**
     * Copies the backed mappings of {@code [address, address + length)} of {@code src} into {@code dst} at the
     * same addresses (iommufd's IOAS_COPY): each backed reservation, or the part of it inside the range,
     * becomes a reservation of {@code dst} backed by the same memory.
     *
     * @return the new reservations
     * @throws IllegalStateException if a target range of {@code dst} is reserved already; what was copied
     *                               before stays
     */
    public List<Reservation> copyMappings(Vcm src, long address, long length, Vcm dst) {
        checkVcm(src);
        checkVcm(dst);
        List<Reservation> out = new ArrayList<>();
        long last = address + length - 1;
        for (Reservation r : src.reservations()) {
            Reservation.Backing b = r.backing.get(); // one read: memory and offset of the same backing
            long rLast = r.address() + r.length() - 1;
            if (b == null || b == Reservation.IN_PROGRESS || Long.compareUnsigned(rLast, address) < 0
                || Long.compareUnsigned(r.address(), last) > 0) {
                continue;
            }
            long from = Long.compareUnsigned(r.address(), address) >= 0 ? r.address() : address;
            long to = Long.compareUnsigned(rLast, last) <= 0 ? rLast : last;
            Runnable hook = cloneHook;
            if (hook != null) {
                hook.run();
            }
            Reservation c = reserveAt(dst, from, to - from + 1, r.attributes());
            try {
                back(c, b.memory(), b.offset() + (from - r.address()));
            } catch (RuntimeException e) {
                unreserve(c); // not left reserved and unbacked
                throw e;
            }
            out.add(c);
        }
        return out;
    }

    // ---------------------------------------------------------------------------------------------
    // associations

    /** Associates {@code vcm} with {@code device} for the whole device address space. */
    public Association assoc(Vcm vcm, Device device) {
        return assoc(vcm, device, AssociationMode.WHOLE);
    }

    /**
     * Associates {@code vcm} with {@code device}. For the first device of a page-table format the VCM builds a
     * table of that format from its current mappings.
     *
     * @throws IllegalArgumentException if the device kind does not fit the VCM kind, the association exists,
     *                                  or the format cannot express a reservation's attributes
     */
    public Association assoc(Vcm vcm, Device device, AssociationMode mode) {
        checkVcm(vcm);
        checkDevice(device);
        Objects.requireNonNull(mode, "mode");
        boolean oneToOne = device.kind() == DeviceKind.ONE_TO_ONE;
        if (oneToOne != (vcm.kind() == Vcm.Kind.ONE_TO_ONE)) {
            throw new IllegalArgumentException("device " + device.name() + " (" + device.kind() + ") cannot use " + vcm
                + ": one-to-one devices go with one-to-one VCMs only");
        }
        if (oneToOne && mode != AssociationMode.WHOLE) {
            throw new IllegalArgumentException("a one-to-one device has no high and low tables: mode=" + mode);
        }
        checkReach(vcm, device, mode);
        graph.lock();
        vcm.lock.writeLock().lock();
        try {
            checkUsable(vcm);
            for (Association a : vcm.associations) {
                if (a.device() == device) {
                    throw new IllegalArgumentException("already associated: " + a);
                }
            }
            PageTableFormat f = device.format();
            if (f != null && !vcm.tables.containsKey(f)) {
                vcm.tables.put(f, buildTable(vcm, f));
            }
            Association a = new Association(vcm, device, mode);
            vcm.associations.add(a);
            device.associations.add(a);
            return a;
        } finally {
            vcm.lock.writeLock().unlock();
            graph.unlock();
        }
    }

    /**
     * @throws IllegalArgumentException if the device's format cannot translate every address of the VCM, or the VCM
     *                                  does not lie in the half (low or high table) {@code mode} programs
     */
    private static void checkReach(Vcm vcm, Device device, AssociationMode mode) {
        PageTableFormat f = device.format();
        if (f == null) {
            return;
        }
        long first = vcm.start();
        long last = first + vcm.length() - 1;
        if (!f.isValidVa(first) || !f.isValidVa(last) || (first < 0) != (last < 0)) {
            throw new IllegalArgumentException(String.format("%s [0x%x, 0x%x] is outside the %d-bit input address space of"
                + " device %s (%s): no address of it could be mapped", vcm, first, last, f.vaBits(), device.name(), f.name()));
        }
        int want = switch (mode) {
            case WHOLE -> -1;
            case USE_LOW -> Device.LOW;
            case USE_HIGH -> Device.HIGH;
        };
        if (want >= 0 && (device.slotFor(first) != want || device.slotFor(last) != want)) {
            throw new IllegalArgumentException(String.format("%s [0x%x, 0x%x] does not lie in the %s half of device %s's"
                + " address space, which %s programs", vcm, first, last, want == Device.LOW ? "low" : "high", device.name(), mode));
        }
    }

    /** A new table of {@code f} holding every current backing of the VCM. Caller holds the VCM's write lock. */
    private PageTable buildTable(Vcm vcm, PageTableFormat f) {
        for (Reservation r : vcm.reservations.values()) {
            f.checkAttributes(r.attributes().toPageAttributes());
        }
        PageTable t = PageTable.create(f, pageTableMemory.memory(), pageTableMemory.allocator());
        try {
            for (Reservation r : vcm.reservations.values()) {
                PhysMem pm = r.backingMemory();
                if (pm != null) {
                    mapInto(t, r, pm, r.backingOffset(), r.attributes().toPageAttributes());
                }
            }
        } catch (RuntimeException e) {
            t.close();
            throw e;
        }
        return t;
    }

    void activate(Association a) {
        graph.lock();
        try {
            checkOpen();
            if (a.isRemoved()) {
                throw new IllegalStateException("association removed: " + a);
            }
            if (a.isActive()) {
                return;
            }
            Device d = a.device();
            d.dma.checkNotCrashed();
            for (int slot : a.slots()) {
                Association current = d.slot(slot);
                if (current != null) {
                    throw new VcmmBusyException("busy: device " + d.name() + " has " + current + " active in its "
                        + (slot == Device.LOW ? "low" : "high") + " slot");
                }
            }
            for (int slot : a.slots()) {
                d.program(slot, a);
            }
            a.setActive(true);
        } finally {
            graph.unlock();
        }
    }

    void deactivate(Association a) {
        graph.lock();
        try {
            if (a.isRemoved()) {
                throw new IllegalStateException("association removed: " + a);
            }
            Device d = a.device();
            for (int slot : a.slots()) {
                if (d.slot(slot) == a) {
                    d.program(slot, null);
                }
            }
            a.setActive(false);
            d.dma.deactivated(); // after the slots are cleared: flush the whole IOTLB
        } finally {
            graph.unlock();
        }
    }

    /** Deactivates and removes {@code a} in one step under the graph lock (a client's release). */
    void release(Association a) {
        graph.lock();
        try {
            if (!a.isRemoved()) {
                deactivate(a);
                deassoc(a); // its own sweep is skipped: the graph lock is still held here
            }
        } finally {
            graph.unlock();
        }
        if (!orphanVcms.isEmpty() && !graph.isHeldByCurrentThread()) {
            sweepOrphans(); // the VCM of an orphan may have lost its last association just now
        }
    }

    /** VCMs whose owning client was released while others still used them: freed once they are empty. */
    private final Set<Vcm> orphanVcms = ConcurrentHashMap.newKeySet();

    void adoptOrphan(Vcm vcm) {
        orphanVcms.add(vcm);
        sweepOrphans();
    }

    /** Frees the orphaned VCMs that became empty. Called with no lock held. */
    void sweepOrphans() {
        for (Vcm v : orphanVcms) {
            if (v.isFreed()) {
                orphanVcms.remove(v);
            } else if (v.reservations.isEmpty() && v.associations.isEmpty()) {
                try {
                    free(v);
                    orphanVcms.remove(v);
                } catch (IllegalStateException raced) {
                    // someone reserved or associated meanwhile: it stays an orphan until the next sweep
                }
            }
        }
    }

    void deassoc(Association a) {
        Vcm vcm = a.vcm();
        graph.lock();
        vcm.lock.writeLock().lock();
        try {
            if (a.isRemoved()) {
                throw new IllegalStateException("already deassociated: " + a);
            }
            if (a.isActive()) {
                throw new VcmmBusyException("busy: " + a + " is active; deactivate it first");
            }
            vcm.associations.remove(a);
            a.device().associations.remove(a);
            a.markRemoved();
            PageTableFormat f = a.device().format();
            if (f != null && vcm.associations.stream().noneMatch(o -> f.equals(o.device().format()))) {
                PageTable t = vcm.tables.remove(f);
                if (t != null) {
                    t.close();
                }
            }
        } finally {
            vcm.lock.writeLock().unlock();
            graph.unlock();
        }
        if (!orphanVcms.isEmpty() && !graph.isHeldByCurrentThread()) {
            sweepOrphans();
        }
    }

    // ---------------------------------------------------------------------------------------------
    // lifecycle and checks

    /** @return whether {@link #close()} was called */
    public boolean isClosed() {
        return closed.get();
    }

    /**
     * Closes every page table and memory type. Idempotent. Must not race with other calls; everything made
     * through this VCMM is unusable afterwards.
     */
    @Override
    public void close() {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        RuntimeException hostFailure;
        graph.lock();
        try {
            hostFailure = HostVcms.closeAll(vcms); // before the memory types: mappings of their pages go first
            for (Vcm vcm : vcms) {
                for (PageTable t : vcm.tables.values()) {
                    t.close();
                }
                vcm.tables.clear();
            }
            for (MemoryType m : memoryTypes.values()) {
                m.close();
            }
        } finally {
            graph.unlock();
        }
        if (hostFailure != null) {
            throw hostFailure;
        }
    }

    private void checkOpen() {
        if (closed.get()) {
            throw new IllegalStateException("this Vcmm is closed");
        }
    }

    private static long roundLength(long length) {
        if (length <= 0 || length > Long.MAX_VALUE - Vcm.GRANULE) {
            throw new IllegalArgumentException("length=" + length + " must be positive");
        }
        return (length + Vcm.GRANULE - 1) & -Vcm.GRANULE;
    }

    private static void checkUsable(Vcm vcm) {
        if (vcm.isFreed()) {
            throw new IllegalStateException("use after free: " + vcm);
        }
    }

    private static void checkExpressible(Vcm vcm, ReservationAttributes attributes) {
        Attributes a = attributes.toPageAttributes();
        for (PageTableFormat f : vcm.tables.keySet()) {
            f.checkAttributes(a);
        }
    }

    private void checkVcm(Vcm vcm) {
        Objects.requireNonNull(vcm, "vcm");
        checkOpen();
        vcm.checkOwner(this);
        checkUsable(vcm);
    }

    private void checkDevice(Device d) {
        Objects.requireNonNull(d, "device");
        checkOpen();
        d.checkOwner(this);
    }

    private void checkReservation(Reservation r) {
        Objects.requireNonNull(r, "reservation");
        checkOpen();
        r.vcm().checkOwner(this);
    }

    private void checkMemoryType(MemoryType m) {
        Objects.requireNonNull(m, "memoryType");
        if (memoryTypes.get(m.name()) != m) {
            throw new IllegalArgumentException("foreign handle: memoryType=" + m.name() + " does not belong to this Vcmm");
        }
    }

    @Override
    public String toString() {
        return "Vcmm{memoryTypes=" + memoryTypes.keySet() + ", devices=" + devices.size() + ", vcms=" + vcms.size() + '}';
    }

    /**
     * Builds a {@link Vcmm}: its memory types (the first serves page tables unless
     * {@link #pageTableMemory(String)} names another).
     *
     * <p><b>Thread-safety:</b> not thread-safe; use it from one thread.
     */
    public static final class Builder {
        private final List<MemoryType.Builder> types = new ArrayList<>();
        private String pageTables;
        private MemoryBackend backend;
        private HostMapper hostMapper;

        private Builder() {
        }

        /** Uses {@code mapper} for HOST VCMs instead of discovering one; for tests and unusual hosts. */
        public Builder hostMapper(HostMapper mapper) {
            this.hostMapper = Objects.requireNonNull(mapper, "mapper");
            return this;
        }

        /** Adds a memory type (built when the VCMM is). */
        public Builder memoryType(MemoryType.Builder type) {
            types.add(Objects.requireNonNull(type, "type"));
            return this;
        }

        /** Names the memory type page tables come from; default the first added. */
        public Builder pageTableMemory(String name) {
            this.pageTables = Objects.requireNonNull(name, "name");
            return this;
        }

        /** Uses {@code backend} for every memory type instead of discovering one; for tests. */
        public Builder backend(MemoryBackend backend) {
            this.backend = Objects.requireNonNull(backend, "backend");
            return this;
        }

        /**
         * Opens every memory type.
         *
         * @throws IllegalArgumentException if there is none, two share a name or overlap, or the page-table
         *                                  memory is unknown or secure
         */
        public Vcmm build() {
            if (types.isEmpty()) {
                throw new IllegalArgumentException("a Vcmm needs at least one memory type");
            }
            Map<String, MemoryType> built = new LinkedHashMap<>();
            try {
                for (MemoryType.Builder b : types) {
                    if (backend != null) {
                        b.backend(backend);
                    }
                    MemoryType m = b.build();
                    if (built.containsKey(m.name())) {
                        m.close();
                        throw new IllegalArgumentException("memoryType=" + m.name() + " is added twice");
                    }
                    for (MemoryType o : built.values()) {
                        if (m.base() < o.base() + o.size() && o.base() < m.base() + m.size()) {
                            m.close();
                            throw new IllegalArgumentException("memoryType=" + m.name() + " overlaps memoryType=" + o.name());
                        }
                    }
                    built.put(m.name(), m);
                }
                MemoryType pt = pageTables == null ? built.values().iterator().next() : built.get(pageTables);
                if (pt == null) {
                    throw new IllegalArgumentException("pageTableMemory=" + pageTables + " is not a memory type: " + built.keySet());
                }
                return new Vcmm(Collections.unmodifiableMap(built), pt, hostMapper);
            } catch (RuntimeException e) {
                built.values().forEach(MemoryType::close);
                throw e;
            }
        }
    }
}
