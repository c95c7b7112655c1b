package dev.vcmm.testing;

import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemoryBackend;
import dev.vcmm.spi.MemorySpec;
import dev.vcmm.spi.PhysicalMemory;

import java.nio.ByteBuffer;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A {@link dev.vcmm.heap.HeapPhysicalMemory} with a pause point: armed with a physical address, the first access (a copy or a
 * word load) that reaches it stops there, in the accessing thread, until the test releases it. A copy that spans the
 * address moves the bytes before it, stops, then moves the rest: a DMA "stalls inside its copy". It needs no hook in
 * the code under test, so the same test runs against any version of it.
 *
 * <p><b>Thread-safety:</b> thread-safe; one stall at a time per memory.
 */
public final class StallingMemory implements PhysicalMemory {

    private final PhysicalMemory delegate;
    private final AtomicBoolean armed = new AtomicBoolean();
    private volatile long at = -1;
    private volatile CountDownLatch reached = new CountDownLatch(1);
    private volatile CountDownLatch release = new CountDownLatch(1);

    public StallingMemory(long base, long size) {
        this.delegate = dev.vcmm.heap.HeapPhysicalMemory.create(base, size);
    }

    /** A backend whose memories are stalling ones (and whose allocator is the simple buddy). */
    public static final class Backend implements MemoryBackend {
        private volatile StallingMemory last;

        @Override
        public String name() {
            return "stalling-test";
        }

        @Override
        public int priority() {
            return SimpleTestBackend.PRIORITY - 1;
        }

        @Override
        public PhysicalMemory openMemory(MemorySpec spec) {
            StallingMemory m = new StallingMemory(spec.base(), spec.size());
            last = m;
            return m;
        }

        @Override
        public BlockAllocator openAllocator(MemorySpec spec) {
            return new SimpleBuddyAllocator(spec);
        }

        /** @return the memory opened last */
        public StallingMemory memory() {
            return last;
        }
    }

    /** Arms the stall at {@code pa}: the next access reaching it stops until {@link #release()}. */
    public void arm(long pa) {
        reached = new CountDownLatch(1);
        release = new CountDownLatch(1);
        at = pa;
        armed.set(true);
    }

    /** @return whether an access reached the armed address within {@code millis} */
    public boolean awaitStalled(long millis) throws InterruptedException {
        return reached.await(millis, TimeUnit.MILLISECONDS);
    }

    /** Lets the stalled access (or the next one) go on; disarms. */
    public void release() {
        armed.set(false);
        release.countDown();
    }

    private boolean hits(long pa, long length) {
        long a = at;
        return armed.get() && Long.compareUnsigned(a - pa, length) < 0 && armed.compareAndSet(true, false);
    }

    private void stall() {
        reached.countDown();
        try {
            if (!release.await(30, TimeUnit.SECONDS)) {
                throw new AssertionError("stall at pa=0x" + Long.toHexString(at) + " never released");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        }
    }

    private void pause(long pa, long length) {
        if (hits(pa, length)) {
            stall();
        }
    }

    @Override public long base() { return delegate.base(); }
    @Override public long size() { return delegate.size(); }
    @Override public long lpLong(long pa) { pause(pa, 8); return delegate.lpLong(pa); }
    @Override public long laLong(long pa) { pause(pa, 8); return delegate.laLong(pa); }
    @Override public void spLong(long pa, long value) { delegate.spLong(pa, value); }
    @Override public void soLong(long pa, long value) { delegate.soLong(pa, value); }
    @Override public boolean casLong(long pa, long expected, long update) { return delegate.casLong(pa, expected, update); }
    @Override public int lpInt(long pa) { pause(pa, 4); return delegate.lpInt(pa); }
    @Override public int laInt(long pa) { pause(pa, 4); return delegate.laInt(pa); }
    @Override public void spInt(long pa, int value) { delegate.spInt(pa, value); }
    @Override public void soInt(long pa, int value) { delegate.soInt(pa, value); }
    @Override public boolean casInt(long pa, int expected, int update) { return delegate.casInt(pa, expected, update); }

    @Override
    public void copyIn(byte[] src, int srcOffset, long pa, int length) {
        if (hits(pa, length)) {
            int before = (int) (at - pa);
            delegate.copyIn(src, srcOffset, pa, before);
            stall();
            delegate.copyIn(src, srcOffset + before, pa + before, length - before);
        } else {
            delegate.copyIn(src, srcOffset, pa, length);
        }
    }

    @Override
    public void copyIn(ByteBuffer src, long pa) {
        pause(pa, src.remaining());
        delegate.copyIn(src, pa);
    }

    @Override
    public void copyOut(long pa, byte[] dst, int dstOffset, int length) {
        if (hits(pa, length)) {
            int before = (int) (at - pa);
            delegate.copyOut(pa, dst, dstOffset, before);
            stall();
            delegate.copyOut(pa + before, dst, dstOffset + before, length - before);
        } else {
            delegate.copyOut(pa, dst, dstOffset, length);
        }
    }

    @Override
    public void copyOut(long pa, ByteBuffer dst) {
        pause(pa, dst.remaining());
        delegate.copyOut(pa, dst);
    }

    @Override public void fill(long pa, long length, byte value) { delegate.fill(pa, length, value); }
    @Override public boolean isClosed() { return delegate.isClosed(); }
    private final AtomicBoolean refuseClose = new AtomicBoolean();

    /** The next {@link #close()} throws {@link IllegalStateException} (a view is held) and changes nothing. */
    public void refuseCloseOnce() {
        refuseClose.set(true);
    }

    @Override
    public void close() {
        if (refuseClose.compareAndSet(true, false)) {
            throw new IllegalStateException("busy: a view of the memory is held (test); close again");
        }
        delegate.close();
    }
}
