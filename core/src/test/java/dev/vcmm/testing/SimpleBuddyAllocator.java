package dev.vcmm.testing;

import dev.vcmm.spi.AllocatorStats;
import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemorySpec;

import static dev.vcmm.spi.BlockAllocator.orderSize;

import java.util.HashMap;
import java.util.Map;
import java.util.TreeSet;

/**
 * A textbook buddy allocator: a reference model, obviously correct before fast. Free blocks of each
 * order sit in a {@link TreeSet} (so {@link #alloc(int)} returns the lowest free address, which makes
 * tests deterministic); allocated blocks are remembered with their order, so a double free, a free with
 * the wrong order or a free of a block never handed out is detected. Frees coalesce eagerly.
 *
 * <p><b>Thread-safety:</b> thread-safe; every method is {@code synchronized}. No thread caches:
 * {@link AllocatorStats#cachedBytes()} is always 0.
 *
 * <p>The pool {@code [base, base + size)} need not be aligned to the largest block: it is cut into the
 * largest naturally aligned blocks that fit (up to {@link #maxOrder()}), and a block only coalesces with
 * a buddy whose parent lies inside the pool.
 */
public final class SimpleBuddyAllocator implements BlockAllocator {

    private final long base;
    private final long size;
    private final int maxOrder;
    private final TreeSet<Long>[] free;
    private final Map<Long, Integer> allocated = new HashMap<>();
    private long freeBytes;
    private boolean closed;

    /** Creates an allocator for {@code spec}'s range and order bound, lowered to the largest block that fits. */
    public SimpleBuddyAllocator(MemorySpec spec) {
        this(spec.base(), spec.size(), spec.maxOrder());
    }

    /** Creates an allocator over {@code [base, base + size)} handing out blocks up to {@code maxOrder}. */
    @SuppressWarnings({"unchecked", "rawtypes"})
    public SimpleBuddyAllocator(long base, long size, int maxOrder) {
        if (base < 0 || (base & (PAGE_SIZE - 1)) != 0 || size <= 0 || (size & (PAGE_SIZE - 1)) != 0) {
            throw new IllegalArgumentException("base=0x" + Long.toHexString(base) + " size=" + size
                + " must be non-negative multiples of 4096, size positive");
        }
        this.base = base;
        this.size = size;
        this.maxOrder = Math.min(maxOrder, 63 - Long.numberOfLeadingZeros(size) - PAGE_SHIFT);
        this.free = new TreeSet[this.maxOrder + 1];
        for (int k = 0; k <= this.maxOrder; k++) {
            free[k] = new TreeSet<>();
        }
        long cur = base;
        long end = base + size;
        while (cur < end) {
            int k = this.maxOrder;
            while (k > 0 && ((cur & (orderSize(k) - 1)) != 0 || cur + orderSize(k) > end)) {
                k--;
            }
            free[k].add(cur);
            cur += orderSize(k);
        }
        freeBytes = size;
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
        checkOpen();
        checkOrder(order);
        int k = order;
        while (k <= maxOrder && free[k].isEmpty()) {
            k++;
        }
        if (k > maxOrder) {
            return NONE;
        }
        long pa = free[k].pollFirst();
        while (k > order) { // split, keeping the lower half
            k--;
            free[k].add(pa + orderSize(k));
        }
        allocated.put(pa, order);
        freeBytes -= orderSize(order);
        return pa;
    }

    @Override
    public synchronized boolean allocAt(long pa, int order) {
        checkOpen();
        checkBlock(pa, order);
        for (int k = order; k <= maxOrder; k++) {
            long container = pa & -orderSize(k);
            if (container < base || container + orderSize(k) > base + size) {
                return false; // no free block of this order or larger can contain pa
            }
            if (free[k].remove(container)) {
                while (k > order) { // split towards pa, freeing the other halves
                    k--;
                    long half = orderSize(k);
                    if ((pa & half) != 0) {
                        free[k].add(container);
                        container += half;
                    } else {
                        free[k].add(container + half);
                    }
                }
                allocated.put(pa, order);
                freeBytes -= orderSize(order);
                return true;
            }
        }
        return false;
    }

    @Override
    public synchronized void free(long pa, int order) {
        checkOpen();
        checkBlock(pa, order);
        Integer had = allocated.get(pa);
        if (had == null) {
            throw new IllegalStateException("pa=0x" + Long.toHexString(pa) + " order=" + order
                + " is not allocated (double free or never allocated)");
        }
        if (had != order) {
            throw new IllegalStateException("pa=0x" + Long.toHexString(pa) + " was allocated with order=" + had
                + ", freed with order=" + order);
        }
        allocated.remove(pa);
        freeBytes += orderSize(order);
        int k = order;
        long block = pa;
        while (k < maxOrder) {
            long parent = block & -orderSize(k + 1);
            if (parent < base || parent + orderSize(k + 1) > base + size) {
                break;
            }
            long buddy = block ^ orderSize(k);
            if (!free[k].remove(buddy)) {
                break;
            }
            block = parent;
            k++;
        }
        free[k].add(block);
    }

    @Override
    public synchronized AllocatorStats stats() {
        long[] counts = new long[maxOrder + 1];
        long largest = 0;
        for (int k = 0; k <= maxOrder; k++) {
            counts[k] = free[k].size();
            if (counts[k] > 0) {
                largest = orderSize(k);
            }
        }
        return new AllocatorStats(size, freeBytes, 0, size - freeBytes, counts, largest);
    }

    /** @return the number of blocks currently handed out. */
    public synchronized int allocatedBlocks() {
        return allocated.size();
    }

    @Override
    public synchronized boolean isClosed() {
        return closed;
    }

    @Override
    public synchronized void close() {
        closed = true;
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("allocator [0x" + Long.toHexString(base) + ", +" + size + ") is already closed");
        }
    }

    private void checkOrder(int order) {
        if (order < 0 || order > maxOrder) {
            throw new IllegalArgumentException("order=" + order + " must be in [0, maxOrder=" + maxOrder + "]");
        }
    }

    private void checkBlock(long pa, int order) {
        checkOrder(order);
        if (pa < base || pa > base + size - orderSize(order) || (pa & (orderSize(order) - 1)) != 0) {
            throw new IllegalArgumentException("pa=0x" + Long.toHexString(pa) + " order=" + order
                + " is outside the pool or not aligned to the order");
        }
    }
}
