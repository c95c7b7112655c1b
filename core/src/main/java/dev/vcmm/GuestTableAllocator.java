package dev.vcmm;

import dev.vcmm.spi.AllocatorStats;
import dev.vcmm.spi.BlockAllocator;

import java.util.BitSet;

/**
 * The allocator of a guest's page-table pages: naturally aligned blocks of intermediate physical addresses (IPA)
 * inside the guest's table pool (a reservation of its host VCM), so the guest's stage-1 tables live in the guest's
 * own memory. First fit over a bitmap of 4 KiB pages; tables are few and allocated on slow paths.
 *
 * <p><b>Thread-safety:</b> thread-safe: every method is synchronized.
 */
final class GuestTableAllocator implements BlockAllocator {

    private final long base;
    private final long size;
    private final int maxOrder;
    private final BitSet used;
    private final java.util.Map<Long, Integer> live = new java.util.HashMap<>();
    private boolean closed;

    GuestTableAllocator(long base, long size) {
        this.base = base;
        this.size = size;
        this.used = new BitSet((int) (size >>> 12));
        this.maxOrder = Math.min(10, 63 - Long.numberOfLeadingZeros(size >>> 12));
    }

    @Override
    public long base() {
        return base;
    }

    @Override
    public long size() {
        return size;
    }

    @Override
    public int maxOrder() {
        return maxOrder;
    }

    @Override
    public synchronized long alloc(int order) {
        if (closed || order < 0 || order > maxOrder) {
            return NONE;
        }
        long block = BlockAllocator.orderSize(order);
        int pages = 1 << order;
        for (long pa = (base + block - 1) & -block; pa + block <= base + size; pa += block) {
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
        long block = BlockAllocator.orderSize(order);
        if (closed || order < 0 || order > maxOrder || (pa & (block - 1)) != 0 || pa < base || pa - base > size - block) {
            return false;
        }
        int p = (int) ((pa - base) >>> 12);
        int next = used.nextSetBit(p);
        if (next >= 0 && next < p + (1 << order)) {
            return false;
        }
        used.set(p, p + (1 << order));
        live.put(pa, order);
        return true;
    }

    @Override
    public synchronized void free(long pa, int order) {
        Integer o = live.get(pa);
        if (o == null || o != order) {
            throw new IllegalStateException(String.format("pa=0x%x order=%d was not allocated here with that order", pa, order));
        }
        live.remove(pa);
        int p = (int) ((pa - base) >>> 12);
        used.clear(p, p + (1 << order));
    }

    @Override
    public synchronized AllocatorStats stats() {
        long allocated = (long) used.cardinality() << 12;
        long[] free = new long[maxOrder + 1];
        free[0] = (size >>> 12) - used.cardinality();
        return new AllocatorStats(size, size - allocated, 0, allocated, free, free[0] > 0 ? 4096 : 0);
    }

    @Override
    public synchronized boolean isClosed() {
        return closed;
    }

    @Override
    public synchronized void close() {
        closed = true;
    }
}
