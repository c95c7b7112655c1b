package dev.vcmm.jcstress;

import dev.vcmm.spi.AllocatorStats;
import dev.vcmm.spi.BlockAllocator;

/**
 * A tiny page allocator for the page-table tests: 4 KiB pages only, handed out last-freed-first, so a
 * table freed too early is the very next table allocated (the reuse the tests must never observe).
 * Counts its allocations, so a test can tell how many install races were lost. Synchronized: it is test
 * scaffolding, not a subject.
 *
 * <p><b>Thread-safety:</b> thread-safe (every method synchronized).
 */
final class LifoPageAllocator implements BlockAllocator {

    private final long base;
    private final long size;
    private final long[] free;
    private int top;
    private int allocations;

    LifoPageAllocator(long base, long size) {
        this.base = base;
        this.size = size;
        int pages = (int) (size >>> PAGE_SHIFT);
        this.free = new long[pages];
        for (int i = pages - 1; i >= 0; i--) {
            free[top++] = base + ((long) i << PAGE_SHIFT);
        }
    }

    @Override public long base() { return base; }
    @Override public long size() { return size; }
    @Override public int maxOrder() { return 0; }

    @Override
    public synchronized long alloc(int order) {
        if (order != 0 || top == 0) {
            return NONE;
        }
        allocations++;
        return free[--top];
    }

    @Override
    public boolean allocAt(long pa, int order) {
        throw new UnsupportedOperationException("allocAt");
    }

    @Override
    public synchronized void free(long pa, int order) {
        free[top++] = pa;
    }

    /** @return pages handed out and not given back */
    synchronized int usedPages() {
        return free.length - top;
    }

    /** @return pages handed out since creation */
    synchronized int allocations() {
        return allocations;
    }

    @Override
    public synchronized AllocatorStats stats() {
        long freeBytes = (long) top << PAGE_SHIFT;
        return new AllocatorStats(size, freeBytes, 0, size - freeBytes, new long[] {top}, top > 0 ? PAGE_SIZE : 0);
    }

    @Override public boolean isClosed() { return false; }
    @Override public void close() { }
}
