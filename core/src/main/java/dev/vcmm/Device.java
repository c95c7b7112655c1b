package dev.vcmm;

import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.FaultReason;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.PageTable;
import dev.vcmm.pagetable.WalkResult;

import java.nio.ByteBuffer;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CopyOnWriteArrayList;

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
 * any number of threads at once, concurrently with unback, deactivate and {@link #crash()}; see {@link Iotlb} for
 * how a racing walk is kept out of the IOTLB.
 *
 * <p><b>DMA:</b> bytes move in bursts of at most {@link DeviceOptions#burstBytes()} (4 KiB by default), each
 * inside the device's burst fence: once an unback, deactivate, {@link #crash()} or {@link #reset()} returns, no
 * burst that used a translation it removed is still moving bytes. Each burst's translation comes from the
 * device's {@link Iotlb} (a hit walks nothing) or, on a miss, from the hardware walker over the VCMM's page-table memory, and is checked for the
 * access (READ for reads, WRITE for writes; device accesses are privileged, so a reservation's user bit neither
 * grants nor denies them) and for the secure attribute (a non-secure device reaching secure memory takes a
 * {@link FaultReason#SECURE} fault). A one-to-one device translates nothing and has no IOTLB, but still reaches
 * only the backed reservations of its active one-to-one VCM. The physical memory of a leaf is
 * {@code vcmm().memoryTypeAt(pa).memory()}. On a fault the {@linkplain #hook(FaultHandler) hooked} handler decides
 * ({@link FaultAction#RETRY} walks again, at most 8 times per burst); without one, or
 * on {@link FaultAction#TERMINATE}, the access fails with a {@link DeviceFaultException}. The core has no
 * {@code java.lang.foreign}: pass a {@code MemorySegment} as {@code segment.asByteBuffer()}, or wrap a
 * {@code ByteBuffer} with {@code MemorySegment.ofBuffer}.
 */
public final class Device {

    static final int LOW = 0;
    static final int HIGH = 1;

    private final Vcmm vcmm;
    private final String name;
    private final DeviceKind kind;
    private final PageTableFormat format;
    private final boolean secure;
    final List<Association> associations = new CopyOnWriteArrayList<>();
    /** The associations whose tables are programmed, by slot; written under the graph lock, read by anyone. */
    private volatile Association low;
    private volatile Association high;
    /** The IOTLB, fault handler, crashed state and DMA loop. */
    final DeviceDma dma;

    Device(Vcmm vcmm, String name, DeviceKind kind, PageTableFormat format, boolean secure) {
        this(vcmm, name, kind, format, secure, DeviceOptions.DEFAULT);
    }

    Device(Vcmm vcmm, String name, DeviceKind kind, PageTableFormat format, boolean secure, DeviceOptions options) {
        this.vcmm = vcmm;
        this.name = name;
        this.kind = kind;
        this.format = format;
        this.secure = secure;
        this.dma = new DeviceDma(this, options);
    }

    /** @return the device's name, unique in its {@link Vcmm} */
    public String name() {
        return name;
    }

    /** @return how the device reaches memory */
    public DeviceKind kind() {
        return kind;
    }

    /** @return the page-table format of its IOMMU or MMU; {@code null} for a one-to-one device */
    public PageTableFormat format() {
        return format;
    }

    /** @return whether the device may reach secure memory */
    public boolean isSecure() {
        return secure;
    }

    /** @return the VCMM this device belongs to */
    public Vcmm vcmm() {
        return vcmm;
    }

    /** @return the device's associations, active or not (a snapshot) */
    public List<Association> associations() {
        return List.copyOf(associations);
    }

    /** @return the association programmed in the low slot, or {@code null} */
    public Association activeLow() {
        return slot(LOW);
    }

    /** @return the association programmed in the high slot, or {@code null} */
    public Association activeHigh() {
        return slot(HIGH);
    }

    Association slot(int i) {
        return i == LOW ? low : high;
    }

    void program(int i, Association a) {
        if (i == LOW) {
            low = a;
        } else {
            high = a;
        }
    }

    /** @return the slot an address goes through: the top bit of the format's input address selects high */
    int slotFor(long address) {
        if (format == null) {
            return LOW;
        }
        boolean high = format.isValidVa(-1L) ? address < 0 : ((address >>> (format.vaBits() - 1)) & 1) != 0;
        return high ? HIGH : LOW;
    }

    /**
     * Translates a device address through the tables programmed into this device, with no permission check.
     *
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
        BurstFence f = dma.fence();
        int at = f.enter(); // a translation request is fenced like a burst: deactivate waits for it
        try {
            return walk(address, access, fromUser);
        } finally {
            f.leave(at);
        }
    }

    /** A DMA burst's translation of {@code address}: privileged, the caller is inside a burst of this device. */
    WalkResult walk(long address, Access access) {
        return walk(address, access, false);
    }

    /**
     * The walk itself: reads the slot, the VCM's table of this format, and walks it. The caller is inside this
     * device's fence, so the association it reads cannot be deactivated, and its table cannot be closed (deassoc
     * needs a deactivated association), until the caller leaves.
     */
    private WalkResult walk(long address, Access access, boolean fromUser) {
        Association a = slot(slotFor(address));
        if (a == null) {
            return new WalkResult.PageFault(address, 0, FaultReason.TRANSLATION, "device " + name + " has no active table for this address");
        }
        Runnable hook = slotReadHook;
        if (hook != null) {
            hook.run();
        }
        WalkResult r;
        if (kind == DeviceKind.ONE_TO_ONE) {
            r = a.vcm().translateOneToOne(address, access, fromUser);
        } else {
            PageTable table = a.vcm().table(format);
            if (table == null) {
                return new WalkResult.PageFault(address, 0, FaultReason.TRANSLATION, "no table of " + format.name() + " in " + a.vcm());
            }
            r = table.walk(address, access, fromUser); // a closed table faults; a retired one is not reused while we walk
        }
        if (r instanceof WalkResult.Translation t && !secure && vcmm.isSecurePhysical(t.pa())) {
            return new WalkResult.PageFault(address, t.level(), FaultReason.SECURE,
                String.format("device %s is not secure and 0x%x is secure memory", name, t.pa()));
        }
        return r;
    }

    /**
     * A test-only pause point between reading a slot and walking its table ({@code null}, the only value outside
     * tests, costs one load of a static field per walk).
     */
    static volatile Runnable slotReadHook;

    // ---------------------------------------------------------------------------------------------
    // DMA (the logic lives in DeviceDma)

    /**
     * Reads {@code len} bytes at device address {@code address} into {@code dst[off, off + len)}.
     *
     * @throws DeviceFaultException      if an access faults and is not retried; the bytes before it were read
     * @throws IllegalStateException     if the device is or becomes crashed
     * @throws IndexOutOfBoundsException if the range is outside {@code dst}
     */
    public void read(long address, byte[] dst, int off, int len) {
        dma.read(address, dst, off, len);
    }

    /**
     * Reads {@code dst.remaining()} bytes at {@code address} into {@code dst}, advancing its position by the bytes
     * read (all of them, unless it throws as {@link #read(long, byte[], int, int)} does).
     *
     * @throws IllegalArgumentException if {@code dst} is read-only
     */
    public void read(long address, ByteBuffer dst) {
        dma.read(address, dst);
    }

    /**
     * Writes {@code src[off, off + len)} to device address {@code address}.
     *
     * @throws DeviceFaultException      if an access faults and is not retried; the bytes before it were written
     * @throws IllegalStateException     if the device is or becomes crashed
     * @throws IndexOutOfBoundsException if the range is outside {@code src}
     */
    public void write(long address, byte[] src, int off, int len) {
        dma.write(address, src, off, len);
    }

    /** Writes {@code src}'s remaining bytes to {@code address}, advancing its position by the bytes written. */
    public void write(long address, ByteBuffer src) {
        dma.write(address, src);
    }

    /** Installs {@code handler} as the device's fault handler; {@code null} removes it. */
    public void hook(FaultHandler handler) {
        dma.hook(handler);
    }

    /**
     * Crashes the device: marks it crashed (DMA, including DMA in flight in other threads before its next leaf,
     * fails with an {@link IllegalStateException} saying so), deactivates every association, flushes the IOTLB,
     * and frees no physical memory. Activation is refused until {@link #reset()}. Idempotent.
     */
    public void crash() {
        dma.crash();
    }

    /**
     * Clears the crashed state; the associations stay inactive until activated again, and the memory they map is
     * as the crash left it. A no-op on a device that is not crashed.
     */
    public void reset() {
        dma.reset();
    }

    /** @return whether the device is crashed (since {@link #crash()}, until {@link #reset()}) */
    public boolean isCrashed() {
        return dma.isCrashed();
    }

    /** @return the device's IOTLB, or {@code null} for a one-to-one device */
    public Iotlb iotlb() {
        return dma.iotlb();
    }

    /** @return a snapshot of the DMA, fault and IOTLB counters */
    public DeviceStats stats() {
        return dma.stats();
    }

    @Override
    public String toString() {
        return "Device{" + name + ", " + kind + (format != null ? " " + format.name() : "") + (secure ? ", secure" : "") + '}';
    }

    void checkOwner(Vcmm owner) {
        if (vcmm != Objects.requireNonNull(owner)) {
            throw new IllegalArgumentException("foreign handle: " + this + " belongs to another Vcmm");
        }
    }
}
