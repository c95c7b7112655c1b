package dev.vcmm;

import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.FaultReason;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.spi.PhysicalMemory;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The DMA engine of one {@link Device}: its IOTLB, burst fence, fault handler, crashed state and counters, and the
 * loop that moves bytes burst by burst. {@link Device} delegates its DMA methods here, and {@link Vcmm} calls the
 * static hooks when mappings go away.
 *
 * <p><b>Thread-safety:</b> thread-safe. Any number of threads may DMA through one device at once; they share
 * the IOTLB (which locks itself for each lookup, insert and invalidation) and the {@link BurstFence} (lock-free for
 * bursts), and take no other lock, so the copies themselves run in parallel. The crashed flag and the handler are
 * volatile: a DMA in flight checks the flag at the start of every burst.
 *
 * <p><b>Isolation:</b> a DMA moves in bursts of at most {@link DeviceOptions#burstBytes()} (a bus transaction),
 * none crossing a multiple of that size. Each burst enters the device's fence, translates (IOTLB, else a walk),
 * checks, copies and leaves. Every path that removes a translation (unback, deactivate, crash, reset) first
 * removes it from the tables and the IOTLB and then {@linkplain BurstFence#synchronize() synchronizes} the fence,
 * so when it returns no burst that could have used the old translation is still moving bytes, and every later
 * burst faults. The wait is bounded by one burst in flight, never by a whole transfer. Consecutive bursts inside
 * one leaf reuse the translation of the previous burst while the IOTLB's generation (bumped by every
 * invalidation) is unchanged, as a device's micro-TLB does; such reuse counts no IOTLB lookup.
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
    private final AtomicLong syncs = new AtomicLong();
    private final AtomicLong syncWaits = new AtomicLong();
    /** Bursts enter it; invalidations synchronize it. */
    private final BurstFence fence = new BurstFence();
    /** The largest burst in bytes, a power of two; a burst never crosses a multiple of it. */
    private final int burstBytes;

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

    DeviceDma(Device device, DeviceOptions options) {
        this.device = device;
        this.iotlb = device.format() == null ? null
            : Iotlb.forFormat(options.iotlbEntries(), options.iotlbWays(), device.format());
        this.burstBytes = options.burstBytes();
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
     * device has at most one association with a VCM), then waits until no burst of those devices that may have
     * used a removed translation is in flight (the invalidation's sync). A device counts if its association is
     * active or programmed in one of its slots (activation programs the slot before it sets the flag, and a walk
     * may start in between). One-to-one devices have no IOTLB but are synchronized too: their bursts read the
     * reservation's backing.
     */
    static void invalidate(Vcm vcm, long address, long length) {
        List<DeviceDma> sync = null;
        for (Association a : vcm.associations) {
            Device d = a.device();
            if (a.isActive() || d.slot(Device.LOW) == a || d.slot(Device.HIGH) == a) {
                Iotlb t = d.dma.iotlb;
                if (t != null) {
                    t.invalidate(address, length);
                }
                if (sync == null) {
                    sync = new ArrayList<>(2);
                }
                sync.add(d.dma);
            }
        }
        if (sync != null) {
            for (DeviceDma dma : sync) {
                dma.synchronize(); // after every IOTLB is invalidated: the waits overlap
            }
        }
    }

    /**
     * After an association of this device was deactivated (its slots cleared): flushes the whole IOTLB and waits
     * for bursts in flight, so none still uses the association's tables when this returns.
     */
    void deactivated() {
        if (iotlb != null) {
            iotlb.flush();
        }
        synchronize();
    }

    /** Waits until every burst that entered before this call has left; counts a wait that found one in flight. */
    void synchronize() {
        syncs.incrementAndGet();
        if (fence.synchronize()) {
            syncWaits.incrementAndGet();
        }
    }

    /** @return the fence bursts and fenced translations enter */
    BurstFence fence() {
        return fence;
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
     * Marks the device crashed (a DMA in flight stops before its next burst), deactivates every association,
     * flushes the IOTLB and waits for the bursts in flight. Frees nothing. The flag goes first: an activation
     * racing with the crash either sees it and is refused, or finishes first and is deactivated by the loop below;
     * a burst either saw the flag (and moved nothing) or is waited for.
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

    /** Clears the crashed state after flushing the IOTLB and waiting for bursts in flight: the device restarts clean. */
    void reset() {
        if (iotlb != null) {
            iotlb.flush();
        }
        synchronize();
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

    /**
     * Moves {@code len} bytes between {@code array} (or {@code buffer}) and the memory {@code address} reaches, in
     * bursts: each burst enters the device's {@link BurstFence}, translates, checks, copies and leaves, so an
     * invalidation that synchronizes the fence waits for it. A burst never crosses a multiple of the burst size
     * (AXI's 4 KiB rule), so it lies inside one leaf. Faults are handled outside any burst: a handler may unback,
     * deactivate or crash (which synchronize the fence) without waiting for its own DMA.
     */
    private void transfer(long address, Access access, byte[] array, int off, ByteBuffer buffer, int len) {
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
                int at = f.enter();
                try {
                    checkRunning(va, access, done, len);
                    if (e == null || !e.covers(va) || tlb == null || tlb.generation() != eGeneration) {
                        e = null;
                        long generation = tlb == null ? 0 : tlb.generation(); // before the walk reads slots and tables
                        Iotlb.Entry hit = tlb == null ? null : tlb.lookup(va);
                        if (hit != null) {
                            if (hit.attributes().allows(access, false)) {
                                e = hit;
                            } else {
                                fault = new DeviceFault(device, va, access, FaultReason.PERMISSION, hit.level(),
                                    access + " from privileged not allowed by " + hit.attributes() + " (IOTLB hit)");
                            }
                        } else {
                            WalkResult r = device.walk(va, access);
                            if (r instanceof WalkResult.Translation t) {
                                e = Iotlb.Entry.of(t);
                                if (tlb != null) {
                                    tlb.insert(e, generation);
                                }
                            } else {
                                WalkResult.PageFault pf = (WalkResult.PageFault) r;
                                fault = new DeviceFault(device, va, access, pf.reason(), pf.level(), pf.detail());
                            }
                        }
                        eGeneration = generation;
                        if (e != null) {
                            type = device.vcmm().memoryTypeAt(e.pa(va));
                        }
                    }
                    if (fault == null) {
                        long pa = e.pa(va);
                        if (type == null || pa - type.base() > type.size() - n) {
                            e = null;
                            throw fail(new DeviceFault(device, va, access, FaultReason.ADDRESS_SIZE, 0,
                                String.format("pa=0x%x+%d is outside every memory type", pa, n)), "no memory there");
                        }
                        BurstHook hook = burstHook;
                        if (hook != null) {
                            hook.inBurst(device, va, pa, n, access);
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
                handle(fault, attempt++);
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
     * Counts a fault and asks the handler; returns if the access is to be retried.
     *
     * @throws DeviceFaultException if there is no handler, it terminates, or the retries are used up
     */
    private void handle(DeviceFault fault, int attempt) {
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
            failed.get(), bytesRead.get(), bytesWritten.get(), crashes.get(), crashed, syncs.get(), syncWaits.get());
    }
}
