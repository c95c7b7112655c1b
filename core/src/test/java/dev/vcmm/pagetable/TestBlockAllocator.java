package dev.vcmm.pagetable;

import dev.vcmm.spi.AllocatorStats;
import dev.vcmm.spi.BlockAllocator;

import java.util.BitSet;
import java.util.HashMap;
import java.util.Map;

/**
 * An obviously correct, slow allocator for page-table tests in core: a bitmap of 4 KiB pages, first fit of
 * naturally aligned runs. Synchronized.
 */
final class TestBlockAllocator implements BlockAllocator {
    private final long base;
    private final long size;
    private final BitSet used;
    private final Map<Long, Integer> live = new HashMap<>();
    private boolean closed;

    TestBlockAllocator(long base, long size) {
        this.base = base;
        this.size = size;
        this.used = new BitSet((int) (size >>> 12));
    }

    @Override public long base() { return base; }
    @Override public long size() { return size; }
    @Override public int maxOrder() { return 10; }

    @Override
    public synchronized long alloc(int order) {
        int pages = 1 << order;
        long firstAligned = ((base + BlockAllocator.orderSize(order) - 1) & -BlockAllocator.orderSize(order));
        for (long pa = firstAligned; pa + BlockAllocator.orderSize(order) <= base + size; pa += BlockAllocator.orderSize(order)) {
            int p = (int) ((pa - base) >>> 12);
            int next = used.nextSetBit(p);
            if (next < 0 || next >= p + pages) {
                used.set(p, p + pages);
                live.put(pa, order);
                return pa;
            }
        }
        return NONE;
    }

    @Override
    public synchronized boolean allocAt(long pa, int order) {
        throw new UnsupportedOperationException();
    }

    @Override
    public synchronized void free(long pa, int order) {
        Integer o = live.remove(pa);
        if (o == null || o != order) {
            throw new IllegalStateException("bad free 0x" + Long.toHexString(pa) + " order " + order + " (live: " + o + ")");
        }
        int p = (int) ((pa - base) >>> 12);
        used.clear(p, p + (1 << order));
    }

    synchronized long usedBytes() {
        return (long) used.cardinality() << 12;
    }

    @Override
    public synchronized AllocatorStats stats() {
        return new AllocatorStats(size, size - usedBytes(), 0, usedBytes(), new long[1], 0);
    }

    @Override public synchronized boolean isClosed() { return closed; }
    @Override public synchronized void close() { closed = true; }
}
