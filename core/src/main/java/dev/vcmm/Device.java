package dev.vcmm;

import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.FaultReason;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.spi.PhysicalMemory;

import java.nio.ByteBuffer;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A bus master: a device behind an IOMMU with a page-table format, a one-to-one device, or a CPU with its
 * MMU format. It has two translation-table slots, low and high (Arm's TTBR0 and TTBR1): activating an
 * association programs the VCM's table root into the slots its {@link AssociationMode} names, and the
 * device then translates through whatever is programmed, reading only physical memory, as hardware would.
 *
 * <p><b>Thread-safety:</b> thread-safe. {@link #translate} may run in any number of threads, concurrently
 * with backing and unbacking (it sees each page-table entry either before or after a change). The slots
 * change only under the {@link Vcmm}'s graph lock and are published with volatile writes. A translation, like a
 * DMA burst, runs inside the device's burst fence, so deactivating its association (and so closing its table)
 * waits until it is done; the walk goes through {@link dev.vcmm.pagetable.PageTable#walk}, so a table page
 * unlinked by an unback is not reused while the walk may read it. DMA
 * ({@link #read(long, byte[], int, int)}, {@link #write(long, byte[], int, int)} and their buffer forms) may run in
 * any number of threads at once, concurrently with unback, deactivate and {@link #crash()}; they share the IOTLB (which locks itself for each lookup, insert and
 * invalidation) and the burst fence (lock-free for bursts), and take no other lock, so the copies themselves run in
 * parallel. A walk racing with an invalidation never leaves a stale IOTLB entry: every invalidation bumps the
 * IOTLB's generation, and a fill is refused if the generation moved since the walk began.
 *
 * <p><b>DMA:</b> bytes move in bursts of at most {@link DeviceOptions#burstBytes()} (4 KiB by default), each
 * inside the device's burst fence: once an unback, deactivate, {@link #crash()} or {@link #reset()} returns, no
 * burst that used a translation it removed is still moving bytes. Each burst's translation comes from the
 * device's IOTLB (a hit walks nothing) or, on a miss, from the hardware walker over the VCMM's page-table memory,
 * and is checked for the access (READ for reads, WRITE for writes; device accesses are privileged, so a reservation's user bit neither
 * grants nor denies them) and for the secure attribute (a non-secure device reaching secure memory takes a
 * {@link FaultReason#SECURE} fault). A one-to-one device translates nothing and has no IOTLB, but still reaches
 * only the backed reservations of its active one-to-one VCM. The physical memory of a leaf is the memory type
 * that the device's bus (the VCMM's memory types, handed to the device when it is made) places at that address.
 * On a fault the {@linkplain #hook(FaultHandler) hooked} handler decides ({@link FaultAction#RETRY} walks again, at
 * most 8 times per burst); without one, or on {@link FaultAction#TERMINATE}, the access fails with a
 * {@link DeviceFaultException}. The DMA methods take {@code byte[]} and {@code ByteBuffer}: pass a
 * {@code MemorySegment} as {@code segment.asByteBuffer()}, or wrap a {@code ByteBuffer} with
 * {@code MemorySegment.ofBuffer}.
 *
 * <p><b>Isolation:</b> every path that removes a translation (an unback of its VCM, deactivate, crash, reset) first
 * removes it from the tables and the IOTLB and then synchronizes the burst fence, so when it returns no burst that
 * could have used the old translation is still moving bytes, and every later burst faults. The wait is bounded by one
 * burst in flight, never by a whole transfer. Consecutive bursts inside one leaf reuse the translation of the
 * previous burst while the IOTLB's generation (bumped by every invalidation) is unchanged, as a device's micro-TLB
 * does; such reuse counts no IOTLB lookup.
 *
 * <p><b>PASIDs:</b> besides the default association (PASID 0, in the low and high slots), the device has a PASID
 * table: an association made with {@link Vcmm#assoc(Vcm, Device, int)} is programmed for its PASID alone, any number
 * at once, and the DMA calls that take a PASID ({@link #read(int, long, byte[], int, int)},
 * {@link #write(int, long, byte[], int, int)}, {@link #translate(int, long, Access, boolean)}) translate through it.
 * IOTLB entries are tagged with their PASID: a lookup matches its own PASID only, and deactivating one association
 * invalidates the entries of its PASID and no other.
 */
public final class Device {

    static final int LOW = 0;
    static final int HIGH = 1;
    /** Walks retried after a handler's {@link FaultAction#RETRY} before an access fails. */
    static final int MAX_RETRIES = 8;

    private final Vcmm vcmm;
    /** Where physical addresses lead: the memory types, and which of them are secure. */
    private final Bus bus;
    private final String name;
    private final DeviceKind kind;
    private final PageTableFormat format;
    private final boolean secure;
    private final List<Association> associations = new CopyOnWriteArrayList<>();
    /** The associations whose tables are programmed, by slot; written under the graph lock, read by anyone. */
    private volatile Association low;
    private volatile Association high;
    /** The associations programmed for PASIDs 1 and up; changed under the graph lock, read by anyone. */
    private final PasidTable pasids = new PasidTable();
    /** {@code null} for one-to-one devices: they translate nothing, so there is nothing to cache. */
    private final Iotlb iotlb;
    /** Bursts and fenced translations enter it; invalidations synchronize it. */
    private final BurstFence fence = new BurstFence();
    /** The largest burst in bytes, a power of two; a burst never crosses a multiple of it. */
    private final int burstBytes;
    private volatile FaultHandler handler;
    /** Changed under the graph lock while no association is active; read by walks. */
    private volatile Split split = Split.TOP_BIT;
    private volatile boolean crashed;
    private final AtomicLong faults = new AtomicLong();
    /** Bytes of writes dropped on the null page of a sparse reservation. */
    private final AtomicLong droppedWrites = new AtomicLong();
    private final AtomicLong retries = new AtomicLong();
    private final AtomicLong failed = new AtomicLong();
    private final AtomicLong bytesRead = new AtomicLong();
    private final AtomicLong bytesWritten = new AtomicLong();
    private final AtomicLong crashes = new AtomicLong();

    /**
     * A test-only pause point between reading a slot and walking its table ({@code null}, the only value outside
     * tests, costs one load of a static field per walk).
     */
    static volatile Runnable slotReadHook;

    /**
     * A test-only pause point inside every burst, after its translation and checks and before its copy: a test
     * stops a DMA there to force an interleaving (e.g. unback while a burst holds a translation). {@code null}
     * (the only value outside tests) costs one load of a static field per burst.
     */
    @FunctionalInterface
    interface BurstHook {
        void inBurst(Device device, long va, long pa, int bytes, Access access);
    }

    static volatile BurstHook burstHook;

    Device(Vcmm vcmm, Bus bus, String name, DeviceKind kind, PageTableFormat format, boolean secure, DeviceOptions options) {
        this.vcmm = vcmm;
        this.bus = bus;
        this.name = name;
        this.kind = kind;
        this.format = format;
        this.secure = secure;
        this.iotlb = format == null ? null : Iotlb.forFormat(options.iotlbEntries(), options.iotlbWays(), format);
        this.burstBytes = options.burstBytes();
    }

    /** {@return the device's name, unique in its {@link Vcmm}} */
    public String name() {
        return name;
    }

    /** {@return how the device reaches memory} */
    public DeviceKind kind() {
        return kind;
    }

    /** {@return the page-table format of its IOMMU or MMU; {@code null} for a one-to-one device} */
    public PageTableFormat format() {
        return format;
    }

    /** {@return whether the device may reach secure memory} */
    public boolean isSecure() {
        return secure;
    }

    /** {@return the VCMM this device belongs to} */
    public Vcmm vcmm() {
        return vcmm;
    }

    /** {@return the device's associations, active or not (a snapshot)} */
    public List<Association> associations() {
        return List.copyOf(associations);
    }

    /** {@return the association programmed in the low slot, or {@code null}} */
    public Association activeLow() {
        return slot(LOW);
    }

    /** {@return the association programmed in the high slot, or {@code null}} */
    public Association activeHigh() {
        return slot(HIGH);
    }

    Association slot(int i) {
        return i == LOW ? low : high;
    }

    /** @return whether {@code a} is programmed in one of the slots, or for its PASID */
    boolean isProgrammed(Association a) {
        return a.pasid() != 0 ? pasids.holds(a) : low == a || high == a;
    }

    /**
     * {@return the association programmed for {@code pasid}, or {@code null}; for PASID 0, the one in the low slot}
     *
     * @param pasid the PASID
     */
    public Association activeFor(int pasid) {
        return pasid == 0 ? low : pasids.get(pasid);
    }

    /** @return the slot an address goes through, as the device's {@link Split} says; {@link Split#NONE} for neither */
    int slotFor(long address) {
        return format == null ? LOW : split.slot(format, address);
    }

    /** {@return where its input addresses divide between the low and the high table} */
    public Split split() {
        return split;
    }

    /**
     * Sets where its input addresses divide between the low and the high table (the RFC's {@code VCM_SPLIT}: Armv7
     * TTBCR.N, Arm64 TCR.T0SZ/T1SZ). Refused while an association of the device is active (the register belongs to
     * the translation context) and when an association's VCM would no longer lie in the half its mode programs.
     *
     * @param split the split
     * @throws VcmmBusyException        if an association of the device is active; nothing changed
     * @throws IllegalArgumentException if the device is one-to-one, or an association would not fit; nothing changed
     */
    public void setSplit(Split split) {
        vcmm.setSplit(this, Objects.requireNonNull(split, "split"));
    }

    /** Checks every association under {@code s}, then takes it; called under the graph lock with none active. */
    void applySplit(Split s) {
        if (format == null) {
            throw new IllegalArgumentException("one-to-one device " + name + " has no tables to split");
        }
        Split before = split;
        split = s;
        try {
            for (Association a : associations) {
                checkReach(a.vcm(), a.mode());
            }
        } catch (RuntimeException e) {
            split = before;
            throw e;
        }
    }

    /**
     * Translates a device address through the tables programmed into this device, with no permission check.
     *
     * @param address the device address
     * @return the translation, or the fault the device would take
     */
    public WalkResult translate(long address) {
        return translate(address, null, false);
    }

    /**
     * Translates a device address for an access, checking permissions and the secure attribute.
     *
     * @param address  the device (input) address
     * @param access   the kind of access
     * @param fromUser whether the access is unprivileged
     * @return the translation, or the fault the device would take
     */
    public WalkResult translate(long address, Access access, boolean fromUser) {
        return translate(0, address, access, fromUser);
    }

    /**
     * Translates a device address of address space {@code pasid} for an access, as {@link #translate(long, Access,
     * boolean)} does for PASID 0.
     *
     * @param pasid    the PASID (0: the default association)
     * @param address  the device (input) address
     * @param access   the kind of access, or {@code null} for no permission check
     * @param fromUser whether the access is unprivileged
     * @return the translation, or the fault the device would take (no association active for the PASID: a
     *         {@link FaultReason#TRANSLATION} fault)
     * @throws IllegalArgumentException if {@code pasid} is outside {@code [0, Association.MAX_PASID]}
     */
    public WalkResult translate(int pasid, long address, Access access, boolean fromUser) {
        checkPasid(pasid);
        BurstFence f = fence;
        int at = f.enter(); // a translation request is fenced like a burst: deactivate waits for it
        try {
            return walk(pasid, address, access, fromUser);
        } finally {
            f.leave(at);
        }
    }

    /**
     * The walk itself: reads the slot and asks the slot's VCM to translate (its table of this format, or its one-to-one
     * reservations). The caller is inside this device's fence, so the association it reads cannot be deactivated, and
     * its table cannot be closed (deassoc needs a deactivated association), until the caller leaves.
     */
    private WalkResult walk(int pasid, long address, Access access, boolean fromUser) {
        int slot = pasid == 0 ? slotFor(address) : 0;
        Association a = pasid != 0 ? pasids.get(pasid) : slot == Split.NONE ? null : slot(slot);
        if (a == null) {
            return new WalkResult.PageFault(address, 0, FaultReason.TRANSLATION, "device " + name + " has no active table for this address"
                + (pasid != 0 ? " in pasid " + pasid : ""));
        }
        Runnable hook = slotReadHook;
        if (hook != null) {
            hook.run();
        }
        WalkResult r = a.vcm().walk(format, address, access, fromUser);
        if (r instanceof WalkResult.Translation t && !secure && bus.isSecure(t.pa())) {
            return new WalkResult.PageFault(address, t.level(), FaultReason.SECURE,
                String.format("device %s is not secure and 0x%x is secure memory", name, t.pa()));
        }
        return r;
    }

    /**
     * Reads {@code len} bytes at device address {@code address} into {@code dst[off, off + len)}.
     *
     * @param address the device address
     * @param dst the destination
     * @param off the first index in the array
     * @param len the number of bytes
     * @throws DeviceFaultException      if an access faults and is not retried; the bytes before it were read
     * @throws IllegalStateException     if the device is or becomes crashed
     * @throws IndexOutOfBoundsException if the range is outside {@code dst}
     */
    public void read(long address, byte[] dst, int off, int len) {
        Objects.requireNonNull(dst, "dst");
        Objects.checkFromIndexSize(off, len, dst.length);
        transfer(0, address, Access.READ, dst, off, null, len);
    }

    /**
     * Reads {@code len} bytes at device address {@code address} of address space {@code pasid} into
     * {@code dst[off, off + len)}: as {@link #read(long, byte[], int, int)}, through the association programmed for
     * the PASID (PASID 0: the default one).
     *
     * @param pasid   the PASID
     * @param address the device address
     * @param dst     the destination
     * @param off     the first index in the array
     * @param len     the number of bytes
     * @throws DeviceFaultException      if an access faults and is not retried; the bytes before it were read
     * @throws IllegalStateException     if the device is or becomes crashed
     * @throws IndexOutOfBoundsException if the range is outside {@code dst}
     * @throws IllegalArgumentException  if {@code pasid} is outside {@code [0, Association.MAX_PASID]}
     */
    public void read(int pasid, long address, byte[] dst, int off, int len) {
        checkPasid(pasid);
        Objects.requireNonNull(dst, "dst");
        Objects.checkFromIndexSize(off, len, dst.length);
        transfer(pasid, address, Access.READ, dst, off, null, len);
    }

    /**
     * Reads {@code dst.remaining()} bytes at {@code address} into {@code dst}, advancing its position by the bytes
     * read (all of them, unless it throws as {@link #read(long, byte[], int, int)} does).
     *
     * @param address the device address
     * @param dst the destination
     * @throws IllegalArgumentException if {@code dst} is read-only
     */
    public void read(long address, ByteBuffer dst) {
        Objects.requireNonNull(dst, "dst");
        if (dst.isReadOnly()) {
            throw new IllegalArgumentException("dst=" + dst + " is read-only");
        }
        transfer(0, address, Access.READ, null, 0, dst, dst.remaining());
    }

    /**
     * Writes {@code src[off, off + len)} to device address {@code address}.
     *
     * @param address the device address
     * @param src the source
     * @param off the first index in the array
     * @param len the number of bytes
     * @throws DeviceFaultException      if an access faults and is not retried; the bytes before it were written
     * @throws IllegalStateException     if the device is or becomes crashed
     * @throws IndexOutOfBoundsException if the range is outside {@code src}
     */
    public void write(long address, byte[] src, int off, int len) {
        Objects.requireNonNull(src, "src");
        Objects.checkFromIndexSize(off, len, src.length);
        transfer(0, address, Access.WRITE, src, off, null, len);
    }

    /**
     * Writes {@code src[off, off + len)} to device address {@code address} of address space {@code pasid}: as
     * {@link #write(long, byte[], int, int)}, through the association programmed for the PASID.
     *
     * @param pasid   the PASID
     * @param address the device address
     * @param src     the source
     * @param off     the first index in the array
     * @param len     the number of bytes
     * @throws DeviceFaultException      if an access faults and is not retried; the bytes before it were written
     * @throws IllegalStateException     if the device is or becomes crashed
     * @throws IndexOutOfBoundsException if the range is outside {@code src}
     * @throws IllegalArgumentException  if {@code pasid} is outside {@code [0, Association.MAX_PASID]}
     */
    public void write(int pasid, long address, byte[] src, int off, int len) {
        checkPasid(pasid);
        Objects.requireNonNull(src, "src");
        Objects.checkFromIndexSize(off, len, src.length);
        transfer(pasid, address, Access.WRITE, src, off, null, len);
    }

    /**
     * Writes {@code src}'s remaining bytes to {@code address}, advancing its position by the bytes written.
     *
     * @param address the device address
     * @param src the source
     */
    public void write(long address, ByteBuffer src) {
        Objects.requireNonNull(src, "src");
        transfer(0, address, Access.WRITE, null, 0, src, src.remaining());
    }

    /**
     * Installs {@code handler} as the device's fault handler; {@code null} removes it.
     *
     * @param handler the fault handler, or {@code null} to remove it
     */
    public void hook(FaultHandler handler) {
        this.handler = handler;
    }

    /** Removes {@code h} if it is the handler now (a {@link PageRequests} closing); another handler stays. */
    void unhook(FaultHandler h) {
        if (handler == h) {
            handler = null;
        }
    }

    /**
     * Crashes the device: marks it crashed (DMA, including DMA in flight in other threads before its next leaf,
     * fails with an {@link IllegalStateException} saying so), deactivates every association, flushes the IOTLB,
     * and frees no physical memory. Activation is refused until {@link #reset()}. Idempotent.
     */
    public void crash() {
        // the flag goes first: an activation racing with the crash either sees it and is refused, or finishes first
        // and is deactivated by the loop below; a burst either saw the flag (and moved nothing) or is waited for
        crashed = true;
        crashes.incrementAndGet();
        for (Association a : associations) {
            try {
                a.deactivate();
            } catch (IllegalStateException removed) {
                // deassociated meanwhile: nothing is programmed for it
            }
        }
        if (iotlb != null) {
            iotlb.flush();
        }
        synchronizeBursts();
    }

    /**
     * Clears the crashed state; the associations stay inactive until activated again, and the memory they map is
     * as the crash left it. A no-op on a device that is not crashed.
     */
    public void reset() {
        if (iotlb != null) {
            iotlb.flush();
        }
        synchronizeBursts();
        crashed = false;
    }

    /** {@return whether the device is crashed (since {@link #crash()}, until {@link #reset()})} */
    public boolean isCrashed() {
        return crashed;
    }

    /**
     * {@return a snapshot of the device's IOTLB, its geometry and counters ({@link IotlbStats#NONE} for a one-to-one
     *         device, which has none); the IOTLB itself is the device's alone}
     */
    public IotlbStats iotlb() {
        return iotlb == null ? IotlbStats.NONE : iotlb.stats();
    }

    /**
     * Drops every translation the IOTLB caches (an invalidate-all, as a driver may issue at any time): the next burst
     * of each leaf walks the tables again. Removes no mapping, so it waits for nothing; a no-op for a one-to-one device.
     */
    public void flushIotlb() {
        if (iotlb != null) {
            iotlb.flush();
        }
    }

    /** {@return a snapshot of the DMA, fault and IOTLB counters} */
    public DeviceStats stats() {
        return new DeviceStats(name, iotlb == null ? IotlbStats.NONE : iotlb.stats(), faults.get(), retries.get(),
            failed.get(), bytesRead.get(), bytesWritten.get(), crashes.get(), crashed, fence.syncs(), fence.waits());
    }

    // ---------------------------------------------------------------------------------------------
    // the graph's side: associations, slots, invalidation (called by the Vcmm and the Vcm)

    /** Records a new association of this device (its VCM recorded it first). */
    void attach(Association a) {
        associations.add(a);
    }

    /** Forgets a removed association. */
    void detach(Association a) {
        associations.remove(a);
    }

    /**
     * Programs {@code a}'s VCM into the slots its mode names; called under the graph lock.
     *
     * @throws IllegalStateException if the device is crashed
     * @throws VcmmBusyException     if another association is programmed in one of the slots; nothing changed
     */
    void program(Association a) {
        if (crashed) {
            throw new IllegalStateException("device " + name + " crashed; reset() it before activating it again");
        }
        if (a.pasid() != 0) {
            Association current = pasids.get(a.pasid());
            if (current != null) {
                throw new VcmmBusyException("busy: device " + name + " has " + current + " active for pasid " + a.pasid());
            }
            pasids.put(a);
            return;
        }
        for (int slot : a.slots()) {
            Association current = slot(slot);
            if (current != null) {
                throw new VcmmBusyException("busy: device " + name + " has " + current + " active in its "
                    + (slot == LOW ? "low" : "high") + " slot");
            }
        }
        for (int slot : a.slots()) {
            setSlot(slot, a);
        }
    }

    /** Clears the slots {@code a} is programmed in; called under the graph lock, before {@link #deactivated()}. */
    void unprogram(Association a) {
        if (a.pasid() != 0) {
            pasids.remove(a);
            return;
        }
        for (int slot : a.slots()) {
            if (slot(slot) == a) {
                setSlot(slot, null);
            }
        }
    }

    private void setSlot(int i, Association a) {
        if (i == LOW) {
            low = a;
        } else {
            high = a;
        }
    }

    /** Drops the IOTLB's entries of {@code pasid} for {@code [address, address + length)} (one-to-one devices have none). */
    void invalidateIotlb(int pasid, long address, long length) {
        if (iotlb != null) {
            iotlb.invalidate(pasid, address, length);
        }
    }

    /** Drops every IOTLB entry of {@code pasid} (one-to-one devices have none). */
    void invalidateIotlbPasid(int pasid) {
        if (iotlb != null) {
            iotlb.invalidatePasid(pasid);
        }
    }

    /**
     * After {@code a} was deactivated (its slots or PASID entry cleared): drops the IOTLB entries of its PASID (the
     * other PASIDs' stay) and waits for bursts in flight, so none still uses the association's tables when this
     * returns.
     */
    void deactivated(Association a) {
        invalidateIotlbPasid(a.pasid());
        synchronizeBursts();
    }

    /** Waits until every burst that entered before this call has left; counts a wait that found one in flight. */
    void synchronizeBursts() {
        fence.synchronize(); // counts itself
    }

    /**
     * @throws IllegalArgumentException if this device's format cannot translate every address of {@code vcm}, or the
     *                                  VCM does not lie in the half (low or high table) {@code mode} programs
     */
    void checkReach(Vcm vcm, AssociationMode mode) {
        PageTableFormat f = format;
        if (f == null) {
            return;
        }
        long first = vcm.start();
        long last = first + vcm.length() - 1;
        if (!f.isValidVa(first) || !f.isValidVa(last) || (first < 0) != (last < 0)) {
            throw new IllegalArgumentException(String.format("%s [0x%x, 0x%x] is outside the %d-bit input address space of"
                + " device %s (%s): no address of it could be mapped", vcm, first, last, f.vaBits(), name, f.name()));
        }
        int want = switch (mode) {
            case WHOLE -> -1;
            case USE_LOW -> LOW;
            case USE_HIGH -> HIGH;
        };
        if (want >= 0 && (slotFor(first) != want || slotFor(last) != want)) {
            throw new IllegalArgumentException(String.format("%s [0x%x, 0x%x] does not lie in the %s half of device %s's"
                + " address space (%s), which %s programs", vcm, first, last, want == LOW ? "low" : "high", name, split, mode));
        }
    }

    private static void checkPasid(int pasid) {
        if (pasid < 0 || pasid > Association.MAX_PASID) {
            throw new IllegalArgumentException("pasid=" + pasid + " must be in [0, " + Association.MAX_PASID + "]");
        }
    }

    void checkOwner(Vcmm owner) {
        if (vcmm != Objects.requireNonNull(owner)) {
            throw new IllegalArgumentException("foreign handle: " + this + " belongs to another Vcmm");
        }
    }

    // ---------------------------------------------------------------------------------------------
    // the DMA engine

    /**
     * Moves {@code len} bytes between {@code array} (or {@code buffer}) and the memory {@code address} reaches, in
     * bursts: each burst enters the device's {@link BurstFence}, translates, checks, copies and leaves, so an
     * invalidation that synchronizes the fence waits for it. A burst never crosses a multiple of the burst size
     * (AXI's 4 KiB rule), so it lies inside one leaf. Faults are handled outside any burst: a handler may unback,
     * deactivate or crash (which synchronize the fence) without waiting for its own DMA.
     */
    private void transfer(int pasid, long address, Access access, byte[] array, int off, ByteBuffer buffer, int len) {
        final BurstFence f = fence;
        final Iotlb tlb = iotlb;
        final long burstMask = burstBytes - 1;
        // the translation the previous burst used, reused while the IOTLB's generation says nothing was invalidated
        Iotlb.Entry e = null;
        long eGeneration = 0;
        MemoryType type = null;
        int done = 0;
        int attempt = 0;
        try {
            while (done < len) {
                long va = address + done;
                int n = (int) Math.min(len - done, burstBytes - (va & burstMask));
                DeviceFault fault = null;
                int sparse;
                int at = f.enter();
                try {
                    checkRunning(va, access, done, len);
                    if (e == null || !e.covers(va) || tlb == null || tlb.generation() != eGeneration) {
                        e = null;
                        long generation = tlb == null ? 0 : tlb.generation(); // before the walk reads slots and tables
                        Iotlb.Entry hit = tlb == null ? null : tlb.lookup(pasid, va);
                        if (hit != null && hit.attributes().allows(access, false)) {
                            e = hit;
                        } else { // a miss, or a hit that does not allow it: walk (a write may make a clean entry dirty)
                            WalkResult r = walk(pasid, va, access, false);
                            if (r instanceof WalkResult.Translation t) {
                                e = Iotlb.Entry.of(t);
                                if (tlb != null) {
                                    tlb.insert(pasid, e, generation);
                                }
                            } else if (access == Access.WRITE && ((WalkResult.PageFault) r).reason() == FaultReason.PERMISSION
                                && (sparse = sparseWrite(pasid, va)) != SPARSE_NONE && (sparse == SPARSE_DROP || attempt++ < MAX_RETRIES)) {
                                if (sparse == SPARSE_DROP) { // an unbound page of a sparse reservation: the write is dropped
                                    droppedWrites.addAndGet(n);
                                    done += n;
                                    attempt = 0;
                                }
                                continue; // the next burst, or walk again (bound since the walk); the finally leaves the fence
                            } else {
                                WalkResult.PageFault pf = (WalkResult.PageFault) r;
                                fault = new DeviceFault(this, va, access, pf.reason(), pf.level(), pf.detail(), pf.stage(),
                                    pf.stage1Level(), pf.ipa());
                            }
                        }
                        eGeneration = generation;
                        if (e != null) {
                            type = bus.at(e.pa(va));
                        }
                    }
                    if (fault == null) {
                        long pa = e.pa(va);
                        if (type == null || pa - type.base() > type.size() - n) {
                            e = null;
                            DeviceFault outside = new DeviceFault(this, va, access, FaultReason.ADDRESS_SIZE, 0,
                                String.format("pa=0x%x+%d is outside every memory type", pa, n));
                            DeviceFaultEvent event = new DeviceFaultEvent();
                            DeviceFaultEvent.end(event, outside, pasid, event.isEnabled() ? vcmName(pasid, va) : null,
                                DeviceFaultEvent.NO_MEMORY);
                            throw fail(outside, "no memory there");
                        }
                        BurstHook hook = burstHook;
                        if (hook != null) {
                            hook.inBurst(this, va, pa, n, access);
                        }
                        copy(type.memory(), pa, access, array, off + done, buffer, n);
                        done += n;
                        attempt = 0;
                        continue;
                    }
                } finally {
                    f.leave(at);
                }
                // outside the burst: the handler may unback, deactivate or crash, which wait for bursts in flight
                e = null;
                handle(fault, pasid, attempt++);
            }
        } finally {
            (access == Access.READ ? bytesRead : bytesWritten).addAndGet(done);
        }
    }

    private static final int SPARSE_NONE = 0;
    private static final int SPARSE_DROP = 1;
    private static final int SPARSE_RETRY = 2;

    /**
     * After a write's permission fault at {@code va}: {@link #SPARSE_DROP} if the page maps the null page of sparse
     * reservations (the write is dropped, see {@link Vcm#reserveSparse}), {@link #SPARSE_RETRY} if it is writable now
     * (bound since the faulting walk), else {@link #SPARSE_NONE} (a real permission fault).
     */
    private int sparseWrite(int pasid, long va) {
        WalkResult r = walk(pasid, va, Access.READ, false);
        if (!(r instanceof WalkResult.Translation t)) {
            return SPARSE_NONE;
        }
        if (bus.nullPage().holds(t.pa())) {
            return SPARSE_DROP;
        }
        return t.attributes().allows(Access.WRITE, false) ? SPARSE_RETRY : SPARSE_NONE;
    }

    /**
     * {@return the bytes of writes this device dropped because they hit an unbound page of a sparse reservation (see
     * {@link Vcm#reserveSparse}); they are also counted as written}
     */
    public long droppedWriteBytes() {
        return droppedWrites.get();
    }

    private static void copy(PhysicalMemory memory, long pa, Access access, byte[] array, int at, ByteBuffer buffer, int n) {
        if (array != null) {
            if (access == Access.READ) {
                memory.copyOut(pa, array, at, n);
            } else {
                memory.copyIn(array, at, pa, n);
            }
            return;
        }
        // the memory copies a buffer's remaining bytes: narrow the limit to n, and restore it whatever happens
        int limit = buffer.limit();
        buffer.limit(buffer.position() + n);
        try {
            if (access == Access.READ) {
                memory.copyOut(pa, buffer);
            } else {
                memory.copyIn(buffer, pa);
            }
        } finally {
            buffer.limit(limit);
        }
    }

    /**
     * Counts a fault and asks the handler; returns if the access is to be retried.
     *
     * @throws DeviceFaultException if there is no handler, it terminates, or the retries are used up
     */
    private void handle(DeviceFault fault, int pasid, int attempt) {
        faults.incrementAndGet();
        DeviceFaultEvent event = new DeviceFaultEvent(); // the fault path only; see DeviceFaultEvent for its cost
        String vcm = event.isEnabled() ? vcmName(pasid, fault.address()) : null; // before the handler changes it
        event.begin();
        String outcome = DeviceFaultEvent.HANDLER_THREW;
        try {
            FaultHandler h = handler;
            if (h == null) {
                outcome = DeviceFaultEvent.NO_HANDLER;
                throw fail(fault, "no fault handler");
            }
            if (attempt >= MAX_RETRIES) {
                outcome = DeviceFaultEvent.RETRIES_EXHAUSTED;
                throw fail(fault, "still faulting after " + MAX_RETRIES + " retries");
            }
            FaultAction action;
            try {
                action = Objects.requireNonNull(h.onFault(fault), "the fault handler returned null");
            } catch (DeviceFaultException e) {
                failed.incrementAndGet(); // the handler failed the access itself, with its reason (e.g. page requests)
                throw e;
            }
            if (action == FaultAction.TERMINATE) {
                outcome = DeviceFaultEvent.TERMINATE;
                throw fail(fault, "terminated by the fault handler");
            }
            outcome = DeviceFaultEvent.RETRY;
            retries.incrementAndGet();
        } finally {
            DeviceFaultEvent.end(event, fault, pasid, vcm, outcome);
        }
    }

    /** {@return the name of the VCM whose association translates {@code address} of {@code pasid} now, or null} */
    private String vcmName(int pasid, long address) {
        int slot = pasid == 0 ? slotFor(address) : 0;
        Association a = pasid != 0 ? pasids.get(pasid) : slot == Split.NONE ? null : slot(slot);
        return a == null ? null : a.vcm().name();
    }

    private DeviceFaultException fail(DeviceFault fault, String why) {
        failed.incrementAndGet();
        return new DeviceFaultException(fault, why);
    }

    private void checkRunning(long va, Access access, int done, int len) {
        if (crashed) {
            throw new IllegalStateException(String.format("device %s crashed: DMA %s at 0x%x stopped after %d of %d bytes",
                name, access, va, done, len));
        }
    }

    @Override
    public String toString() {
        return "Device{" + name + ", " + kind + (format != null ? " " + format.name() : "") + (secure ? ", secure" : "") + '}';
    }
}
