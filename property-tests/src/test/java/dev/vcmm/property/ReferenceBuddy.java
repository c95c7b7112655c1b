package dev.vcmm.property;

import dev.vcmm.spi.AllocatorStats;
import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemorySpec;

import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.Map;

/**
 * A deliberately simple reference {@link BlockAllocator}: one lock, a page bitmap, first fit by address.
 *
 * <p><b>Thread-safety:</b> every method is {@code synchronized}; it is correct because it is
 * obviously sequential, not because it is clever. It exists to validate the property and stress
 * harnesses (a harness that fails on this allocator is wrong) and as a second subject of them.
 *
 * <p>It is written differently from the test model on purpose: the model keeps a sorted set of
 * maximal free buddy blocks and splits/merges them; this keeps one bit per 4 KiB page (set = in use
 * or parked in a thread cache) and derives the buddy decomposition only in {@link #stats()}, as the
 * maximal naturally aligned all-free blocks of order at most {@link #maxOrder()} inside the pool.
 *
 * <p>With {@code threadCacheCapacity > 0}, blocks of order at most {@link #CACHED_ORDERS} freed by a
 * thread are parked in that thread's cache (up to the capacity per order) and count as
 * {@code cachedBytes}; {@link #alloc(int)} serves the calling thread from its cache first and
 * {@link #releaseThreadCache()} returns the calling thread's blocks to the shared pool.
 */
public final class ReferenceBuddy implements BlockAllocator {

    /** Orders {@code 0..CACHED_ORDERS} are cached per thread when caching is on. */
    public static final int CACHED_ORDERS = 3;

    private final long base;
    private final long size;
    private final long end;
    private final int maxOrder;
    private final int cacheCapacity;
    private final long[] used;
    private final Map<Long, Integer> live = new HashMap<>();
    private final Map<Thread, ArrayDeque<Long>[]> caches = new HashMap<>();
    private boolean closed;

    private ReferenceBuddy(MemorySpec spec) {
        this.base = spec.base();
        this.size = spec.size();
        this.end = base + size;
        int m = spec.maxOrder();
        while (m > 0 && !fitsSomewhere(m)) {
            m--;
        }
        this.maxOrder = m;
        this.cacheCapacity = spec.threadCacheCapacity();
        this.used = new long[(int) ((size >>> PAGE_SHIFT) + 63) >>> 6];
    }

    /** Creates an allocator for {@code spec}, lowering its max order to the largest block that fits. */
    public static ReferenceBuddy create(MemorySpec spec) {
        return new ReferenceBuddy(spec);
    }

    private boolean fitsSomewhere(int order) {
        long s = BlockAllocator.orderSize(order);
        long first = (base + s - 1) & -s;
        return first + s <= end;
    }

    @Override public synchronized long base() { return base; }
    @Override public synchronized long size() { return size; }
    @Override public synchronized int maxOrder() { return maxOrder; }
    @Override public synchronized boolean isClosed() { return closed; }

    @Override
    public synchronized long alloc(int order) {
        ensureOpen();
        checkOrder(order);
        ArrayDeque<Long> cache = cacheOf(Thread.currentThread(), order, false);
        if (cache != null && !cache.isEmpty()) {
            long pa = cache.pop();
            live.put(pa, order);
            return pa;
        }
        long s = BlockAllocator.orderSize(order);
        for (long pa = (base + s - 1) & -s; pa + s <= end; pa += s) {
            if (allFree(pa, s)) {
                mark(pa, s, true);
                live.put(pa, order);
                return pa;
            }
        }
        return NONE;
    }

    @Override
    public synchronized boolean allocAt(long pa, int order) {
        ensureOpen();
        checkBlock(pa, order);
        long s = BlockAllocator.orderSize(order);
        if (!allFree(pa, s)) {
            return false;
        }
        mark(pa, s, true);
        live.put(pa, order);
        return true;
    }

    @Override
    public synchronized void free(long pa, int order) {
        ensureOpen();
        checkBlock(pa, order);
        Integer o = live.get(pa);
        if (o == null || o != order) {
            throw new IllegalStateException("pa=0x" + Long.toHexString(pa) + " order=" + order + " is not allocated with that order"
                + (o == null ? "" : " (allocated with order=" + o + ")"));
        }
        live.remove(pa);
        ArrayDeque<Long> cache = cacheOf(Thread.currentThread(), order, true);
        if (cache != null && cache.size() < cacheCapacity) {
            cache.push(pa);
        } else {
            mark(pa, BlockAllocator.orderSize(order), false);
        }
    }

    /** Returns every block in the calling thread's cache to the shared pool. */
    public synchronized void releaseThreadCache() {
        ensureOpen();
        ArrayDeque<Long>[] mine = caches.remove(Thread.currentThread());
        if (mine == null) {
            return;
        }
        for (int k = 0; k < mine.length; k++) {
            for (long pa : mine[k]) {
                mark(pa, BlockAllocator.orderSize(k), false);
            }
        }
    }

    @Override
    public synchronized AllocatorStats stats() {
        ensureOpen();
        long[] byOrder = new long[maxOrder + 1];
        for (long pa = base; pa < end; ) {
            int k = maxOrder;
            while (((pa & (BlockAllocator.orderSize(k) - 1)) != 0) || pa + BlockAllocator.orderSize(k) > end) {
                k--;
            }
            countFree(pa, k, byOrder);
            pa += BlockAllocator.orderSize(k);
        }
        long free = 0;
        long largest = 0;
        for (int k = 0; k <= maxOrder; k++) {
            free += byOrder[k] * BlockAllocator.orderSize(k);
            if (byOrder[k] != 0) {
                largest = BlockAllocator.orderSize(k);
            }
        }
        long cached = 0;
        for (ArrayDeque<Long>[] c : caches.values()) {
            for (int k = 0; k < c.length; k++) {
                cached += c[k].size() * BlockAllocator.orderSize(k);
            }
        }
        return new AllocatorStats(size, free, cached, size - free - cached, byOrder, largest);
    }

    @Override
    public synchronized void close() {
        closed = true;
        caches.clear();
        live.clear();
    }

    private void countFree(long pa, int k, long[] byOrder) {
        long s = BlockAllocator.orderSize(k);
        if (allFree(pa, s)) {
            byOrder[k]++;
        } else if (k > 0) {
            countFree(pa, k - 1, byOrder);
            countFree(pa + s / 2, k - 1, byOrder);
        }
    }

    @SuppressWarnings("unchecked")
    private ArrayDeque<Long> cacheOf(Thread t, int order, boolean create) {
        if (cacheCapacity == 0 || order > CACHED_ORDERS) {
            return null;
        }
        ArrayDeque<Long>[] c = caches.get(t);
        if (c == null) {
            if (!create) {
                return null;
            }
            c = new ArrayDeque[CACHED_ORDERS + 1];
            for (int k = 0; k < c.length; k++) {
                c[k] = new ArrayDeque<>();
            }
            caches.put(t, c);
        }
        return c[order];
    }

    private boolean allFree(long pa, long s) {
        long first = (pa - base) >>> PAGE_SHIFT;
        long n = s >>> PAGE_SHIFT;
        for (long p = first; p < first + n; p++) {
            if ((p & 63) == 0 && p + 64 <= first + n) {
                if (used[(int) (p >>> 6)] != 0) {
                    return false;
                }
                p += 63;
            } else if ((used[(int) (p >>> 6)] & (1L << p)) != 0) {
                return false;
            }
        }
        return true;
    }

    private void mark(long pa, long s, boolean inUse) {
        long first = (pa - base) >>> PAGE_SHIFT;
        long n = s >>> PAGE_SHIFT;
        for (long p = first; p < first + n; p++) {
            if (inUse) {
                used[(int) (p >>> 6)] |= 1L << p;
            } else {
                used[(int) (p >>> 6)] &= ~(1L << p);
            }
        }
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("allocator already closed");
        }
    }

    private void checkOrder(int order) {
        if (order < 0 || order > maxOrder) {
            throw new IllegalArgumentException("order=" + order + " must be in [0, " + maxOrder + "]");
        }
    }

    private void checkBlock(long pa, int order) {
        checkOrder(order);
        long s = BlockAllocator.orderSize(order);
        if (pa < base || pa >= end || (pa & (s - 1)) != 0 || pa + s > end) {
            throw new IllegalArgumentException("pa=0x" + Long.toHexString(pa) + " order=" + order
                + " is outside [0x" + Long.toHexString(base) + ", 0x" + Long.toHexString(end) + ") or not aligned");
        }
    }
}
