package dev.vcmm;

import dev.vcmm.pagetable.LeafSize;
import dev.vcmm.pagetable.PageTableFormat;
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
 * <p>The VCMM keeps the graph lock, the registries of memory types, devices and VCMs, and the operations that
 * span objects (associating, activating, cloning, copying mappings, translating between VCMs). Everything else is
 * an object's own: a {@link Vcm} reserves, and its {@link Reservation}s back and unback; a {@link Device} moves
 * bytes, seeing memory through the memory types it was handed at creation.
 *
 * <p><b>Thread-safety:</b> thread-safe. Graph changes (creating and freeing VCMs and devices, associating,
 * activating) are serialised by one graph lock, off the hot path. Backing and unbacking take only their
 * VCM's lock shared and write page tables with no lock, so different reservations back and unback in
 * parallel; translation takes no lock at all. Reverse-map queries ({@link #whoMaps}, {@link #reservationsOf})
 * are weakly consistent while backings change.
 */
public final class Vcmm implements AutoCloseable {

    private final Map<String, MemoryType> memoryTypes;
    /** The memory types as devices and VCMs see them: immutable, handed to each at creation. */
    private final Bus bus;
    private final MemoryType pageTableMemory;
    private final ReentrantLock graph = new ReentrantLock();
    private final Map<String, Device> devices = new ConcurrentHashMap<>();
    private final List<Vcm> vcms = new CopyOnWriteArrayList<>();
    /** Physical memory -> the reservations it backs: a frame table per memory type. */
    private final ReverseMap reverse;
    private final AtomicInteger vcmNames = new AtomicInteger();
    private final AtomicBoolean closed = new AtomicBoolean();
    private final HostMappers host;

    private Vcmm(Map<String, MemoryType> memoryTypes, MemoryType pageTableMemory, HostMapper hostMapper) {
        this.memoryTypes = memoryTypes;
        this.bus = new Bus(List.copyOf(memoryTypes.values()));
        this.pageTableMemory = pageTableMemory;
        this.host = new HostMappers(hostMapper);
        this.reverse = new ReverseMap(memoryTypes.values().toArray(new MemoryType[0]));
    }

    /** {@return a builder} */
    public static Builder builder() {
        return new Builder();
    }

    // ---------------------------------------------------------------------------------------------
    // memory

    /**
     * {@return the memory type called {@code name}.}
     *
     * @param name the name
     * @throws IllegalArgumentException listing the known ones
     */
    public MemoryType memoryType(String name) {
        MemoryType m = memoryTypes.get(name);
        if (m == null) {
            throw new IllegalArgumentException("memoryType=" + name + " is unknown; known: " + memoryTypes.keySet());
        }
        return m;
    }

    /** {@return every memory type, in the order they were added} */
    public List<MemoryType> memoryTypes() {
        return List.copyOf(memoryTypes.values());
    }

    /** {@return the memory type page tables are allocated from} */
    public MemoryType pageTableMemory() {
        return pageTableMemory;
    }

    /**
     * Allocates physical memory from the named memory type.
     *
     * @param memoryType the memory type
     * @param length the length in bytes
     * @param policy the chunk policy
     * @return the allocation
     * @see MemoryType#physAlloc(long, ChunkPolicy)
     */
    public PhysMem physAlloc(String memoryType, long length, ChunkPolicy policy) {
        return memoryType(memoryType).physAlloc(length, policy);
    }

    /**
     * Allocates physical memory.
     *
     * @param memoryType the memory type
     * @param length the length in bytes
     * @param policy the chunk policy
     * @param options the allocation options
     * @return the allocation
     * @see MemoryType#physAlloc(long, ChunkPolicy, PhysAllocOptions)
     */
    public PhysMem physAlloc(MemoryType memoryType, long length, ChunkPolicy policy, PhysAllocOptions options) {
        checkMemoryType(memoryType);
        return memoryType.physAlloc(length, policy, options);
    }

    /**
     * Wraps the physical range {@code [pa, pa + length)} as an allocation of the memory type holding it (the RFC's
     * {@code vcm_map_phys_addr}); see {@link MemoryType#physAllocAt(long, long)}.
     *
     * @param pa     the physical address of the first byte
     * @param length the length in bytes
     * @return the allocation
     * @throws IllegalArgumentException if no memory type holds {@code pa}, or the range is misaligned or leaves it
     * @throws VcmmBusyException        if part of the range is allocated; nothing taken
     */
    public PhysMem physAllocAt(long pa, long length) {
        checkOpen();
        MemoryType m = bus.at(pa);
        if (m == null) {
            throw new IllegalArgumentException(String.format("pa=0x%x is in no memory type of this Vcmm: %s", pa, memoryTypes.keySet()));
        }
        return m.physAllocAt(pa, length);
    }

    /**
     * {@return whether {@code pa} lies in a secure memory type}
     *
     * @param pa the physical address
     */
    public boolean isSecurePhysical(long pa) {
        return bus.isSecure(pa);
    }

    /**
     * {@return the memory type holding physical address {@code pa}, or {@code null}}
     *
     * @param pa the physical address
     */
    public MemoryType memoryTypeAt(long pa) {
        return bus.at(pa);
    }

    /** {@return a snapshot of every memory type's, VCM's and device's statistics (printable)} */
    public VcmmStats stats() {
        checkOpen();
        return VcmmStats.of(this);
    }

    /**
     * Opens a client: an owner whose VCMs, reservations, allocations and associations are all given back
     * when it is closed or becomes unreachable.
     *
     * @param name the client's name, for messages
     * @return the new client
     */
    public Client client(String name) {
        checkOpen();
        return new Client(this, name);
    }

    // ---------------------------------------------------------------------------------------------
    // devices

    /**
     * Creates a device behind an IOMMU walking tables of {@code format}.
     *
     * @param name the name, unique in this VCMM
     * @param format the page-table format
     * @return the new device
     */
    public Device device(String name, PageTableFormat format) {
        return device(name, DeviceKind.IOMMU, format, false);
    }

    /**
     * Creates a one-to-one device (no translation).
     *
     * @param name the name, unique in this VCMM
     * @return the new device
     */
    public Device oneToOneDevice(String name) {
        return device(name, DeviceKind.ONE_TO_ONE, null, false);
    }

    /**
     * Creates a CPU whose MMU walks tables of {@code format}.
     *
     * @param name the name, unique in this VCMM
     * @param format the page-table format
     * @return the new CPU device
     */
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
     * @return the new device
     * @throws IllegalArgumentException if the name is taken or the format does not fit the kind
     */
    public Device device(String name, DeviceKind kind, PageTableFormat format, boolean secure) {
        return device(name, kind, format, secure, DeviceOptions.DEFAULT);
    }

    /**
     * Creates a device with an IOTLB of the given geometry and burst size.
     *
     * @param name    unique in this VCMM
     * @param kind    how it reaches memory
     * @param format  its page-table format; required for IOMMU and CPU devices, {@code null} for one-to-one
     * @param secure  whether it may reach secure memory
     * @param options its IOTLB geometry and largest burst
     * @return the new device
     * @throws IllegalArgumentException if the name is taken or the format does not fit the kind
     * @see #device(String, DeviceKind, PageTableFormat, boolean)
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
            Device d = new Device(this, bus, name, kind, format, secure, options);
            devices.put(name, d);
            return d;
        } finally {
            graph.unlock();
        }
    }

    /**
     * {@return the device called {@code name}.}
     *
     * @param name the name
     * @throws IllegalArgumentException if there is none
     */
    public Device device(String name) {
        Device d = devices.get(name);
        if (d == null) {
            throw new IllegalArgumentException("device=" + name + " is unknown");
        }
        return d;
    }

    /** {@return every device (a snapshot)} */
    public List<Device> devices() {
        return List.copyOf(devices.values());
    }

    // ---------------------------------------------------------------------------------------------
    // VCMs

    /**
     * Creates a virtual VCM over device addresses {@code [start, start + length)}.
     *
     * @param start the first address
     * @param length the length in bytes
     * @return the new VCM
     * @throws IllegalArgumentException if start or length is not a multiple of 4 KiB, or the range wraps
     */
    public Vcm createVcm(long start, long length) {
        return createVcm(VcmKind.Virtual.INSTANCE, start, length);
    }

    /**
     * Creates a one-to-one VCM over the physical range {@code [start, start + length)}.
     *
     * @param start the first address
     * @param length the length in bytes
     * @return the new VCM
     */
    public Vcm createOneToOneVcm(long start, long length) {
        return createVcm(VcmKind.OneToOne.INSTANCE, start, length);
    }

    /**
     * Creates a one-to-one VCM over the whole of {@code memoryType}.
     *
     * @param memoryType the memory type
     * @return the new VCM
     */
    public Vcm createOneToOneVcm(MemoryType memoryType) {
        checkMemoryType(memoryType);
        return createOneToOneVcm(memoryType.base(), memoryType.size());
    }

    /**
     * Creates the CPU's VCM (the original VCMM's pre-built VMM space): a virtual VCM associated with the
     * CPU device and active.
     *
     * @param cpu the CPU device
     * @param start the first address
     * @param length the length in bytes
     * @return the new VCM
     * @throws VcmmBusyException if the CPU already has an active association; nothing is created
     */
    public Vcm createCpuVcm(Device cpu, long start, long length) {
        return createCpuVcm(cpu, start, length, AssociationMode.WHOLE);
    }

    /**
     * Creates a CPU VCM for one half of the CPU's address space, active in the slot {@code mode} names: the RFC's
     * {@code VCM_EXT_USER} (the low half, TTBR0, {@link AssociationMode#USE_LOW}: switched per process by deactivating
     * one user VCM and activating another) and {@code VCM_EXT_KERNEL} (the high half, TTBR1,
     * {@link AssociationMode#USE_HIGH}: the one kernel space every process shares). Where the halves divide is the
     * CPU's {@link Device#setSplit split}.
     *
     * @param cpu the CPU device
     * @param start the first address
     * @param length the length in bytes
     * @param mode which of the CPU's tables the VCM is programmed into
     * @return the new VCM, associated and active
     * @throws IllegalArgumentException if the device is not a CPU, or the range does not lie in the half {@code mode}
     *                                  programs; nothing is created
     * @throws VcmmBusyException        if the CPU already has an active association in that slot; nothing is created
     */
    public Vcm createCpuVcm(Device cpu, long start, long length, AssociationMode mode) {
        return createCpuVcm(cpu, null, start, length, mode);
    }

    /**
     * Creates a CPU VCM over a prebuilt table (the RFC's {@code vcm_create_from_prebuilt}): instead of building a new
     * table, the VCM adopts {@code prebuilt}, a table its owner built (the kernel's, with the mappings it already
     * holds), maps and unmaps its own reservations in it, and programs its root into the CPU
     * ({@link Association#root()} is {@code prebuilt.root()}). The VCM never closes it: when its association goes,
     * or the VCMM closes, the table goes back to its owner with its own mappings and without the VCM's (tables its
     * mappings needed may stay linked and empty, as after any unmap). The VCM
     * does not know the table's own mappings: reserve their ranges (and leave them unbacked) to keep its placements
     * off them; a back over an address the table maps already is refused ({@code AlreadyMappedException}), nothing
     * changed.
     *
     * @param cpu the CPU device
     * @param prebuilt the table to adopt: open, of the CPU's format, in this VCMM's page-table memory, adopted by no
     *                 other live VCM
     * @param start the first address
     * @param length the length in bytes
     * @param mode which of the CPU's tables the VCM is programmed into
     * @return the new VCM, associated and active
     * @throws IllegalArgumentException if the table does not fit those rules, or as
     *                                  {@link #createCpuVcm(Device, long, long, AssociationMode)}; nothing is created
     * @throws VcmmBusyException        if the CPU already has an active association in that slot; nothing is created
     */
    public Vcm createCpuVcm(Device cpu, dev.vcmm.pagetable.PageTable prebuilt, long start, long length, AssociationMode mode) {
        checkDevice(cpu);
        Objects.requireNonNull(mode, "mode");
        if (prebuilt != null) {
            if (prebuilt.isClosed() || !prebuilt.format().equals(cpu.format()) || prebuilt.memory() != pageTableMemory.memory()) {
                throw new IllegalArgumentException("prebuilt " + prebuilt + " must be open, of format "
                    + (cpu.format() == null ? "none" : cpu.format().name()) + " and in the page-table memory "
                    + pageTableMemory.name() + " to serve CPU " + cpu.name());
            }
            for (Vcm v : vcms) {
                if (v.borrows(prebuilt)) {
                    throw new IllegalArgumentException("prebuilt " + prebuilt + " is adopted by " + v + " already");
                }
            }
        }
        if (cpu.kind() != DeviceKind.CPU) {
            throw new IllegalArgumentException("device=" + cpu.name() + " is " + cpu.kind() + ", not a CPU");
        }
        Vcm vcm = createVcm(start, length);
        try {
            if (prebuilt != null) {
                vcm.adopt(prebuilt);
            }
            assoc(vcm, cpu, mode).activate();
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
                vcm.free();
            } catch (RuntimeException undo) {
                e.addSuppressed(undo);
            }
            throw e;
        }
        return vcm;
    }

    /**
     * Creates a guest VCM under nested translation, as a hypervisor gives a virtual machine's assigned devices: the
     * guest's addresses {@code [start, start + length)} translate through its own page tables (stage 1, one per format
     * of the devices associated with it, any stage-1 format) to intermediate physical addresses (IPA) of {@code host},
     * whose table of {@code stage2} maps them to physical memory. The guest's tables live in its own memory: pages of
     * {@code tablePool}, a backed reservation of the host, and every read of them is translated by stage 2. A guest
     * reservation is backed by memory some reservation of the host is backed by (its entries hold that IPA); any
     * other memory is refused. An unback in the guest invalidates its devices' IOTLBs for the range; an unback (or
     * any invalidation) in the host flushes the IOTLBs of every device of its guests, since they cache combined
     * translations by guest address. Free the guest before the host.
     *
     * @param host      a VIRTUAL VCM of this VCMM: the guest's IPA space
     * @param stage2    the format of the host's stage-2 table, e.g. {@code arm64-s2-4k}; it must reach every address of
     *                  {@code host} and express its reservations (stage 2 maps with user access: reserve {@code user})
     * @param tablePool a backed reservation of {@code host} whose IPA pages hold the guest's tables
     * @param start     the guest's first address
     * @param length    the guest's length in bytes
     * @return the new guest VCM ({@link Vcm.Kind#GUEST})
     * @throws IllegalArgumentException if an argument is refused as above; nothing changed
     * @throws IllegalStateException    if the VCMM is closed or {@code host} is freed
     */
    public Vcm createGuestVcm(Vcm host, PageTableFormat stage2, Reservation tablePool, long start, long length) {
        Objects.requireNonNull(host, "host");
        Objects.requireNonNull(stage2, "stage2");
        Objects.requireNonNull(tablePool, "tablePool");
        host.checkOwner(this);
        host.checkUsable();
        if (host.kind() != Vcm.Kind.VIRTUAL) {
            throw new IllegalArgumentException("host=" + host + " must be a VIRTUAL VCM, not " + host.kind());
        }
        if (tablePool.vcm() != host || !tablePool.isBacked()) {
            throw new IllegalArgumentException("tablePool=" + tablePool + " must be a backed reservation of " + host);
        }
        long last = host.start() + host.length() - 1;
        if (!stage2.isValidVa(host.start()) || !stage2.isValidVa(last) || stage2.leafSizes().getLast().size() != Vcm.GRANULE) {
            throw new IllegalArgumentException(String.format("stage2=%s cannot translate every IPA of %s [0x%x, 0x%x] with"
                + " 4 KiB pages", stage2.name(), host, host.start(), last));
        }
        Vcm guest = createVcm(new VcmKind.Guest(host, stage2, tablePool, bus), start, length);
        try {
            host.attachGuest(guest, stage2);
        } catch (RuntimeException e) {
            graph.lock();
            try {
                vcms.remove(guest); // never attached: nothing else knows it
            } finally {
                graph.unlock();
            }
            throw e;
        }
        return guest;
    }

    /**
     * Creates a HOST VCM: {@code length} bytes of this process's own address space, reserved with no access
     * and aligned to 2 MiB. Its reservations' addresses are process virtual addresses; backing one maps the
     * physical memory there (the same pages the simulated devices reach), and the ffm backend's
     * {@code HostSegments.segment(reservation)} gives the {@code MemorySegment}. Freeing the VCM gives the range
     * back to the system.
     *
     * @param length the length in bytes
     * @return the new VCM
     * @throws UnsupportedOperationException saying why, where HOST VCMs are unavailable (no memfd or mmap)
     * @throws IllegalArgumentException      if {@code length} is not a positive multiple of the host page size
     */
    public Vcm createHostVcm(long length) {
        return createHostVcm(length, HostMappers.DEFAULT_ALIGNMENT);
    }

    /**
     * Creates a HOST VCM aligned to {@code alignment}, a power of two at least the host page size.
     *
     * @param length the length in bytes
     * @param alignment the alignment in bytes, a power of two
     * @return the new VCM
     * @see #createHostVcm(long)
     */
    public Vcm createHostVcm(long length, long alignment) {
        checkOpen();
        HostMapper m = host.mapper();
        long start = host.reserveRange(m, length, alignment);
        try {
            return createVcm(new VcmKind.Host(m), start, length);
        } catch (RuntimeException e) {
            try {
                m.release(start, length);
            } catch (RuntimeException undo) {
                e.addSuppressed(undo);
            }
            throw e;
        }
    }

    /** {@return empty if HOST VCMs work here, else why not} */
    public Optional<String> hostUnavailableReason() {
        return Optional.ofNullable(host.unavailableReason());
    }

    private Vcm createVcm(VcmKind kind, long start, long length) {
        if (((start | length) & (Vcm.GRANULE - 1)) != 0 || length <= 0) {
            throw new IllegalArgumentException(String.format("start=0x%x length=0x%x must be positive multiples of 4096", start, length));
        }
        if (start + length != 0 && Long.compareUnsigned(start + length, start) < 0) {
            throw new IllegalArgumentException(String.format("start=0x%x length=0x%x wraps around the address space", start, length));
        }
        graph.lock();
        try {
            checkOpen();
            Vcm vcm = new Vcm(this, bus, pageTableMemory, reverse, "vcm" + vcmNames.incrementAndGet(), kind, start, length);
            vcms.add(vcm);
            return vcm;
        } finally {
            graph.unlock();
        }
    }

    /** {@return every VCM not freed (a snapshot)} */
    public List<Vcm> vcms() {
        return List.copyOf(vcms);
    }

    /**
     * Forgets a VCM that frees itself ({@link Vcm#free()}): under the graph lock, the VCM checks it is empty and
     * marks itself freed, then the registry drops it.
     */
    void forget(Vcm vcm) {
        checkOpen();
        graph.lock();
        try {
            vcm.retire();
            vcms.remove(vcm);
        } finally {
            graph.unlock();
        }
    }

    /** @return the reverse map (for tests) */
    ReverseMap reverseMap() {
        return reverse;
    }

    /**
     * {@return the reservations {@code memory} backs now}
     *
     * @param memory the physical allocation
     */
    public List<Reservation> reservationsOf(PhysMem memory) {
        return reverse.reservationsOf(memory);
    }

    /**
     * {@return every place physical address {@code pa} is mapped: reservation and device address. O(orders) loads of
     *         the memory type's frame table, whatever the number of live backings}
     *
     * @param pa the physical address
     */
    public List<Mapping> whoMaps(long pa) {
        return reverse.whoMaps(pa);
    }

    /**
     * {@return the address in {@code dst} that maps the same physical byte as {@code address} in {@code src},
     * if any}
     *
     * @param src     the VCM {@code address} is in
     * @param address an address of {@code src}
     * @param dst     the VCM to look in
     */
    public OptionalLong translate(Vcm src, long address, Vcm dst) {
        checkVcm(src);
        checkVcm(dst);
        Reservation r = src.reservationAt(address);
        if (r == null) {
            return OptionalLong.empty();
        }
        long pa = Bindings.physicalAddress(r, address - r.address()); // the backing, or a sub-range binding
        if (pa < 0) {
            return OptionalLong.empty();
        }
        for (Mapping m : whoMaps(pa)) {
            if (m.reservation().vcm() == dst) {
                return OptionalLong.of(m.address());
            }
        }
        return OptionalLong.empty();
    }

    /**
     * Copies {@code length} bytes from {@code src} at {@code srcOffset} to {@code dst} at {@code dstOffset}
     * through their backing memory (the original VCMM's vcm_res_copy).
     *
     * @param dst the destination
     * @param dstOffset the offset in {@code dst}
     * @param src the source
     * @param srcOffset the offset in {@code src}
     * @param length the length in bytes
     * @throws IndexOutOfBoundsException if a range is outside its reservation (or the length is negative)
     * @throws IllegalStateException    if either reservation is not backed
     */
    public void copy(Reservation dst, long dstOffset, Reservation src, long srcOffset, long length) {
        checkReservation(dst);
        checkReservation(src);
        Objects.checkFromIndexSize(dstOffset, length, dst.length());
        Objects.checkFromIndexSize(srcOffset, length, src.length());
        if (!dst.isBacked() || !src.isBacked()) {
            throw new IllegalStateException("copy needs both reservations backed: " + (!dst.isBacked() ? dst : src));
        }
        for (long o = 0; o < length; o = (o & -4096L) + 4096) { // every page on both sides bound: else nothing is copied
            if (Bindings.physicalAddress(src, srcOffset + o) < 0 || Bindings.physicalAddress(dst, dstOffset + o) < 0) {
                throw new IllegalStateException("copy needs every page of both ranges bound; byte 0x" + Long.toHexString(o)
                    + " of the range is unbound in " + (Bindings.physicalAddress(src, srcOffset + o) < 0 ? src : dst));
            }
        }
        byte[] buffer = new byte[(int) Math.min(length, 64 << 10)];
        long done = 0;
        while (done < length) {
            long sPa = Bindings.physicalAddress(src, srcOffset + done);
            long dPa = Bindings.physicalAddress(dst, dstOffset + done);
            if (sPa < 0 || dPa < 0) {
                throw new IllegalStateException("a page of the copy was unbacked while it ran");
            }
            // stay inside one 4 KiB page on both sides: chunks are at least that contiguous
            int n = (int) Math.min(Math.min(length - done, buffer.length),
                Math.min(4096 - (sPa & 4095), 4096 - (dPa & 4095)));
            memoryTypeAt(sPa).memory().copyOut(sPa, buffer, 0, n); // a bound page may be in another allocation's type
            memoryTypeAt(dPa).memory().copyIn(buffer, 0, dPa, n);
            done += n;
        }
    }

    /**
     * Makes an independent copy of {@code vcm}: a new VCM over the same range with a copy of every
     * reservation, backed by the same physical memory. Associations are not copied. All or nothing: if any step
     * fails (e.g. a source reservation is unbacked and its memory freed meanwhile), everything the copy made is
     * undone, the copy is freed, and the failure is thrown.
     *
     * @param vcm the VCM
     * @return the copy
     */
    public Vcm cloneVcm(Vcm vcm) {
        checkVcm(vcm);
        Vcm copy = createVcm(vcm.cloneKind(), vcm.start(), vcm.length());
        try {
            copyMappings(vcm, vcm.start(), vcm.length(), copy);
            for (Reservation r : vcm.reservations()) {
                Runnable hook = cloneHook;
                if (hook != null) {
                    hook.run();
                }
                if (!r.isBacked() && copy.reservationAt(r.address()) == null) {
                    copy.reserveAt(r.address(), r.length(), r.attributes());
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
                    r.unback();
                }
                r.unreserve();
            }
            vcm.free();
        } catch (RuntimeException undo) {
            cause.addSuppressed(undo);
        }
    }

    /**
     * Copies the backed mappings of {@code [address, address + length)} of {@code src} into {@code dst} at the
     * same addresses (iommufd's IOAS_COPY): each backed reservation, or the part of it inside the range,
     * becomes a reservation of {@code dst} backed by the same memory.
     *
     * @param src the source
     * @param address the device address
     * @param length the length in bytes
     * @param dst the destination
     * @return the new reservations
     * @throws IllegalStateException if a target range of {@code dst} is reserved already; what was copied
     *                               before stays
     */
    public List<Reservation> copyMappings(Vcm src, long address, long length, Vcm dst) {
        checkVcm(src);
        checkVcm(dst);
        List<Reservation> out = new ArrayList<>();
        long last = address + length - 1;
        for (Reservation r : src.reservations()) { // checked first: a refusal changes nothing
            if (r.bindings() != null && Long.compareUnsigned(r.address() + r.length() - 1, address) >= 0
                && Long.compareUnsigned(r.address(), last) <= 0) {
                throw new IllegalStateException("cannot copy " + r + ": parts of it were unbacked or remapped (copy its"
                    + " mappings whole or not at all)");
            }
        }
        for (Reservation r : src.reservations()) {
            Reservation.Backing b = r.backing(); // one read: memory and offset of the same backing
            long rLast = r.address() + r.length() - 1;
            if (b == null || Long.compareUnsigned(rLast, address) < 0
                || Long.compareUnsigned(r.address(), last) > 0) {
                continue;
            }
            long from = Long.compareUnsigned(r.address(), address) >= 0 ? r.address() : address;
            long to = Long.compareUnsigned(rLast, last) <= 0 ? rLast : last;
            Runnable hook = cloneHook;
            if (hook != null) {
                hook.run();
            }
            Reservation c = dst.reserveAt(from, to - from + 1, r.attributes());
            try {
                c.back(b.memory(), b.offset() + (from - r.address()));
            } catch (RuntimeException e) {
                c.unreserve(); // not left reserved and unbacked
                throw e;
            }
            out.add(c);
        }
        return out;
    }

    /**
     * Opens an invalidation batch on the calling thread: until it is closed, this thread's unbacks, sub-range unbacks,
     * remaps and deactivations in this VCMM gather their IOTLB invalidations, issued merged when it commits; see
     * {@link InvalidationBatch}.
     *
     * @return the open batch; close it (try-with-resources) to commit
     * @throws IllegalStateException if a batch is open already on this thread, or the VCMM is closed
     */
    public InvalidationBatch batch() {
        checkOpen();
        return InvalidationBatch.open(this);
    }

    // ---------------------------------------------------------------------------------------------
    // associations

    /**
     * Associates {@code vcm} with {@code device} for the whole device address space.
     *
     * @param vcm the VCM
     * @param device the device
     * @return the new association, inactive
     */
    public Association assoc(Vcm vcm, Device device) {
        return assoc(vcm, device, AssociationMode.WHOLE);
    }

    /**
     * Associates {@code vcm} with {@code device}. For the first device of a page-table format the VCM builds a
     * table of that format from its current mappings.
     *
     * @param vcm the VCM
     * @param device the device
     * @param mode which of the device's tables the association programs
     * @return the new association, inactive
     * @throws IllegalArgumentException if the device kind does not fit the VCM kind, the association exists,
     *                                  or the format cannot express a reservation's attributes
     */
    public Association assoc(Vcm vcm, Device device, AssociationMode mode) {
        return assoc(vcm, device, mode, 0);
    }

    /**
     * Associates {@code vcm} with {@code device} under PASID {@code pasid}: once activated, the device reaches the VCM
     * through the DMA calls that name the PASID ({@link Device#read(int, long, byte[], int, int)}, ...), its whole
     * input address space, alongside the default association and the other PASIDs. A device has at most one
     * association with a VCM, and one active association per PASID.
     *
     * @param vcm    the VCM
     * @param device the device, which must translate (one-to-one devices have no PASIDs)
     * @param pasid  the PASID, 1 to {@link Association#MAX_PASID} (0 is the default association: use
     *               {@link #assoc(Vcm, Device, AssociationMode)})
     * @return the new association, inactive
     * @throws IllegalArgumentException if the PASID is out of range, the device is one-to-one, the device kind does not
     *                                  fit the VCM kind, the association exists, or the format cannot express a
     *                                  reservation's attributes; nothing is changed
     */
    public Association assoc(Vcm vcm, Device device, int pasid) {
        if (pasid < 1 || pasid > Association.MAX_PASID) {
            throw new IllegalArgumentException("pasid=" + pasid + " must be in [1, " + Association.MAX_PASID
                + "] (0 is the default association)");
        }
        checkDevice(device);
        if (device.format() == null) {
            throw new IllegalArgumentException("one-to-one device " + device.name() + " has no PASIDs");
        }
        return assoc(vcm, device, AssociationMode.WHOLE, pasid);
    }

    private Association assoc(Vcm vcm, Device device, AssociationMode mode, int pasid) {
        checkVcm(vcm);
        checkDevice(device);
        Objects.requireNonNull(mode, "mode");
        vcm.checkDevice(device, mode);
        device.checkReach(vcm, mode);
        graph.lock();
        try {
            Association a = new Association(vcm, device, mode, pasid);
            vcm.attach(a);
            device.attach(a);
            return a;
        } finally {
            graph.unlock();
        }
    }

    /** {@link Association#activate()}: the device programs its slots, under the graph lock. */
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
            a.device().program(a); // slots before the flag: a walk may start in between (see Vcm.invalidate)
            a.setActive(true);
        } finally {
            graph.unlock();
        }
    }

    /** {@link Device#setSplit}: under the graph lock, with no association of the device active. */
    void setSplit(Device d, Split split) {
        graph.lock();
        try {
            checkOpen();
            if (d.activeLow() != null || d.activeHigh() != null) {
                throw new VcmmBusyException("busy: device " + d.name() + " has an active association; deactivate it before"
                    + " changing its split to " + split);
            }
            d.applySplit(split);
        } finally {
            graph.unlock();
        }
    }

    /** {@link Association#setMode}: under the graph lock, on an inactive association. */
    void setMode(Association a, AssociationMode mode) {
        graph.lock();
        try {
            checkOpen();
            if (a.isRemoved()) {
                throw new IllegalStateException("association removed: " + a);
            }
            if (a.isActive()) {
                throw new VcmmBusyException("busy: " + a + " is active; deactivate it before changing its mode to " + mode);
            }
            a.vcm().checkDevice(a.device(), mode);
            a.device().checkReach(a.vcm(), mode);
            a.mode(mode);
        } finally {
            graph.unlock();
        }
    }

    /** {@link Association#deactivate()}: the device clears its slots and synchronizes, under the graph lock. */
    void deactivate(Association a) {
        deactivate(a, InvalidationBatch.current(this));
    }

    /** Deactivates {@code a}; with a {@code batch}, its IOTLB invalidation and sync wait for the batch's commit. */
    private void deactivate(Association a, InvalidationBatch batch) {
        graph.lock();
        try {
            if (a.isRemoved()) {
                throw new IllegalStateException("association removed: " + a);
            }
            Device d = a.device();
            boolean wasActive = a.isActive();
            d.unprogram(a);
            a.setActive(false);
            if (batch != null && wasActive) {
                batch.deactivated(a); // the batch drops the PASID's IOTLB entries and synchronizes at commit
            } else {
                d.deactivated(a); // after the slots are cleared: drop its PASID's IOTLB entries and synchronize
            }
        } finally {
            graph.unlock();
        }
    }

    /** Deactivates and removes {@code a} in one step under the graph lock (a client's release). */
    void release(Association a) {
        graph.lock();
        try {
            if (!a.isRemoved()) {
                deactivate(a, null); // at once, even inside a batch: the deassoc below needs the sync
                deassoc(a); // its own sweep is skipped: the graph lock is still held here
            }
        } finally {
            graph.unlock();
        }
        if (!graph.isHeldByCurrentThread()) {
            a.vcm().freeIfOrphanedAndEmpty(); // an orphan VCM may have lost its last association just now
        }
    }

    /** Removes an inactive association from its VCM and its device, under the graph lock. */
    void deassoc(Association a) {
        graph.lock();
        try {
            if (a.pendingBatch() != null && !a.isRemoved()) {
                throw new VcmmBusyException("busy: " + a + " was deactivated in a batch that has not committed; close the"
                    + " batch first (its device may still hold translations of the VCM's table until then)");
            }
            a.vcm().detach(a);
            a.device().detach(a);
        } finally {
            graph.unlock();
        }
        if (!graph.isHeldByCurrentThread()) {
            a.vcm().freeIfOrphanedAndEmpty();
        }
    }

    // ---------------------------------------------------------------------------------------------
    // lifecycle and checks

    /** {@return whether {@link #close()} was called} */
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
            hostFailure = null;
            // guests before their hosts (their tables are read and cleared through the host's stage 2)
            List<Vcm> order = new ArrayList<>(vcms);
            order.sort(java.util.Comparator.comparing(v -> v.host() == null));
            for (Vcm vcm : order) { // before the memory types: mappings of their pages go first
                RuntimeException e = vcm.closeAll();
                if (e != null && hostFailure == null) {
                    hostFailure = e;
                } else if (e != null) {
                    hostFailure.addSuppressed(e);
                }
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

    /** @throws IllegalStateException if this VCMM is closed */
    void checkOpen() {
        if (closed.get()) {
            throw new IllegalStateException("this Vcmm is closed");
        }
    }

    private void checkVcm(Vcm vcm) {
        Objects.requireNonNull(vcm, "vcm");
        checkOpen();
        vcm.checkOwner(this);
        vcm.checkUsable();
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
        bus.checkHolds(m);
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

        /**
         * Uses {@code mapper} for HOST VCMs instead of discovering one; for tests and unusual hosts.
         *
         * @param mapper the host mapper
         * @return this builder
         */
        public Builder hostMapper(HostMapper mapper) {
            this.hostMapper = Objects.requireNonNull(mapper, "mapper");
            return this;
        }

        /**
         * Adds a memory type (built when the VCMM is).
         *
         * @param type the memory type
         * @return this builder
         */
        public Builder memoryType(MemoryType.Builder type) {
            types.add(Objects.requireNonNull(type, "type"));
            return this;
        }

        /**
         * Names the memory type page tables come from; default the first added.
         *
         * @param name the name
         * @return this builder
         */
        public Builder pageTableMemory(String name) {
            this.pageTables = Objects.requireNonNull(name, "name");
            return this;
        }

        /**
         * Uses {@code backend} for every memory type instead of discovering one; for tests.
         *
         * @param backend the memory backend
         * @return this builder
         */
        public Builder backend(MemoryBackend backend) {
            this.backend = Objects.requireNonNull(backend, "backend");
            return this;
        }

        /**
         * Opens every memory type.
         *
         * @return the new VCMM, its memory types open
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
