package dev.vcmm;

import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.FaultReason;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.spi.PhysicalMemory;

import java.nio.ByteBuffer;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The DMA engine of one {@link Device}: its IOTLB, fault handler, crashed state and counters, and the loop that
 * moves bytes leaf by leaf. {@link Device} delegates its DMA methods here, and {@link Vcmm} calls the static
 * hooks when mappings go away.
 *
 * <p><b>Thread-safety:</b> thread-safe. Any number of threads may DMA through one device at once; they share
 * the IOTLB (which locks itself for each lookup, insert and invalidation) and take no other lock, so the
 * copies themselves run in parallel. The crashed flag and the handler are volatile: a DMA in flight checks
 * the flag before every leaf it moves.
 */
final class DeviceDma {

    /** Walks retried after a handler's {@link FaultAction#RETRY} before an access fails. */
    static final int MAX_RETRIES = 8;

    private final Device device;
    /** {@code null} for one-to-one devices: they translate nothing, so there is nothing to cache. */
    private final Iotlb iotlb;
    private volatile FaultHandler handler;
    private volatile boolean crashed;
    private final AtomicLong faults = new AtomicLong();
    private final AtomicLong retries = new AtomicLong();
    private final AtomicLong failed = new AtomicLong();
    private final AtomicLong bytesRead = new AtomicLong();
    private final AtomicLong bytesWritten = new AtomicLong();
    private final AtomicLong crashes = new AtomicLong();

    DeviceDma(Device device, DeviceOptions options) {
        this.device = device;
        this.iotlb = device.format() == null ? null
            : Iotlb.forFormat(options.iotlbEntries(), options.iotlbWays(), device.format());
    }

    Iotlb iotlb() {
        return iotlb;
    }

    void hook(FaultHandler h) {
        handler = h;
    }

    boolean isCrashed() {
        return crashed;
    }

    // ---------------------------------------------------------------------------------------------
    // hooks called by Vcmm

    /**
     * After the mappings of {@code [address, address + length)} of {@code vcm} were removed from its tables:
     * invalidates the range in the IOTLB of every device that may hold entries for it, once per device (a
     * device has at most one association with a VCM). A device counts if its association is active or
     * programmed in one of its slots (activation programs the slot before it sets the flag, and a walk may
     * start in between).
     */
    static void invalidate(Vcm vcm, long address, long length) {
        for (Association a : vcm.associations) {
            Device d = a.device();
            Iotlb t = d.dma.iotlb;
            if (t != null && (a.isActive() || d.slot(Device.LOW) == a || d.slot(Device.HIGH) == a)) {
                t.invalidate(address, length);
            }
        }
    }

    /** After an association of this device was deactivated (its slots cleared): flushes the whole IOTLB. */
    void deactivated() {
        if (iotlb != null) {
            iotlb.flush();
        }
    }

    /** @throws IllegalStateException if the device is crashed; called by activation under the graph lock */
    void checkNotCrashed() {
        if (crashed) {
            throw new IllegalStateException("device " + device.name() + " crashed; reset() it before activating it again");
        }
    }

    // ---------------------------------------------------------------------------------------------
    // crash and reset

    /**
     * Marks the device crashed (a DMA in flight stops before its next leaf), deactivates every association
     * and flushes the IOTLB. Frees nothing. The flag goes first: an activation racing with the crash either
     * sees it and is refused, or finishes first and is deactivated by the loop below.
     */
    void crash() {
        crashed = true;
        crashes.incrementAndGet();
        for (Association a : device.associations) {
            try {
                a.deactivate();
            } catch (IllegalStateException removed) {
                // deassociated meanwhile: nothing is programmed for it
            }
        }
        deactivated();
    }

    void reset() {
        crashed = false;
    }

    // ---------------------------------------------------------------------------------------------
    // DMA

    void read(long address, byte[] dst, int off, int len) {
        Objects.requireNonNull(dst, "dst");
        Objects.checkFromIndexSize(off, len, dst.length);
        transfer(address, Access.READ, dst, off, null, len);
    }

    void read(long address, ByteBuffer dst) {
        Objects.requireNonNull(dst, "dst");
        if (dst.isReadOnly()) {
            throw new IllegalArgumentException("dst=" + dst + " is read-only");
        }
        transfer(address, Access.READ, null, 0, dst, dst.remaining());
    }

    void write(long address, byte[] src, int off, int len) {
        Objects.requireNonNull(src, "src");
        Objects.checkFromIndexSize(off, len, src.length);
        transfer(address, Access.WRITE, src, off, null, len);
    }

    void write(long address, ByteBuffer src) {
        Objects.requireNonNull(src, "src");
        transfer(address, Access.WRITE, null, 0, src, src.remaining());
    }

    /** Moves {@code len} bytes between {@code array} (or {@code buffer}) and the memory {@code address} reaches. */
    private void transfer(long address, Access access, byte[] array, int off, ByteBuffer buffer, int len) {
        final Vcmm vcmm = device.vcmm();
        int done = 0;
        try {
            while (done < len) {
                long va = address + done;
                Iotlb.Entry e = resolve(va, access, done, len);
                long pa = e.pa(va);
                int n = (int) Math.min(len - done, e.remaining(va));
                MemoryType type = vcmm.memoryTypeAt(pa);
                if (type == null || pa - type.base() > type.size() - n) {
                    throw fail(new DeviceFault(device, va, access, FaultReason.ADDRESS_SIZE, e.level(),
                        String.format("pa=0x%x+%d is outside every memory type", pa, n)), "no memory there");
                }
                checkRunning(va, access, done, len);
                copy(type.memory(), pa, access, array, off + done, buffer, n);
                done += n;
            }
        } finally {
            (access == Access.READ ? bytesRead : bytesWritten).addAndGet(done);
        }
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
     * @return a translation of {@code va} that allows {@code access}: from the IOTLB, else from a walk (cached
     *         if no invalidation raced with it), else after a handler's retries
     * @throws DeviceFaultException  if it faults and is not retried
     * @throws IllegalStateException if the device crashed
     */
    private Iotlb.Entry resolve(long va, Access access, int done, int len) {
        final Iotlb tlb = iotlb;
        for (int attempt = 0; ; attempt++) {
            checkRunning(va, access, done, len);
            DeviceFault fault;
            Iotlb.Entry e = tlb == null ? null : tlb.lookup(va);
            if (e != null) {
                if (e.attributes().allows(access, false)) {
                    return e;
                }
                fault = new DeviceFault(device, va, access, FaultReason.PERMISSION, e.level(),
                    access + " from privileged not allowed by " + e.attributes() + " (IOTLB hit)");
            } else {
                long generation = tlb == null ? 0 : tlb.generation(); // before the walk reads the slots and tables
                WalkResult r = device.translate(va, access, false);
                if (r instanceof WalkResult.Translation t) {
                    e = Iotlb.Entry.of(t);
                    if (tlb != null) {
                        tlb.insert(e, generation);
                    }
                    return e;
                }
                WalkResult.PageFault f = (WalkResult.PageFault) r;
                fault = new DeviceFault(device, va, access, f.reason(), f.level(), f.detail());
            }
            faults.incrementAndGet();
            FaultHandler h = handler;
            if (h == null) {
                throw fail(fault, "no fault handler");
            }
            if (attempt >= MAX_RETRIES) {
                throw fail(fault, "still faulting after " + MAX_RETRIES + " retries");
            }
            FaultAction action = Objects.requireNonNull(h.onFault(fault), "the fault handler returned null");
            if (action == FaultAction.TERMINATE) {
                throw fail(fault, "terminated by the fault handler");
            }
            retries.incrementAndGet();
        }
    }

    private DeviceFaultException fail(DeviceFault fault, String why) {
        failed.incrementAndGet();
        return new DeviceFaultException(fault, why);
    }

    private void checkRunning(long va, Access access, int done, int len) {
        if (crashed) {
            throw new IllegalStateException(String.format("device %s crashed: DMA %s at 0x%x stopped after %d of %d bytes",
                device.name(), access, va, done, len));
        }
    }

    DeviceStats stats() {
        return new DeviceStats(device.name(), iotlb == null ? Iotlb.Stats.NONE : iotlb.stats(), faults.get(), retries.get(),
            failed.get(), bytesRead.get(), bytesWritten.get(), crashes.get(), crashed);
    }
}
