package dev.vcmm.bench;

import dev.vcmm.spi.AllocatorStats;
import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemorySpec;

import java.util.Arrays;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A textbook binary buddy allocator behind one lock: the baseline that {@code LockFreeBuddyAllocator}
 * has to beat.
 *
 * <p><b>Thread-safety:</b> thread-safe; every operation that reads or changes the free lists holds the
 * allocator's single (non-fair) {@link ReentrantLock}, so operations are linearizable and blocking. The
 * argument checks
 * ({@link IllegalArgumentException}) run before the lock is taken. A {@link #alloc(int)} that returns
 * {@link #NONE} means that, at the instant it held the lock, no block of that order or larger was free.
 *
 * <p><b>Metadata</b>, all indexed by page ({@code (pa - base) >>> 12}), about 9 bytes per 4 KiB page:
 * <pre>
 *   byte[] state   0 = page does not start a block we track
 *                  k + 1      (1..64)   = page starts a FREE block of order k
 *                  ~k         (-1..-64) = page starts an ALLOCATED block of order k
 *   int[]  next    intrusive doubly-linked free list per order, -1 terminated
 *   int[]  prev
 *   int[]  head    per order, first free block's page index or -1
 *   long[] count   per order, number of free blocks (for stats)
 * </pre>
 * Alloc takes the head of the smallest non-empty list of order {@code >= k} and splits it, pushing the
 * upper halves; free checks the state byte (double free, wrong order), then merges with the buddy
 * ({@code pfn ^ (1 << k)}) while the buddy starts a free block of the same order: every step is O(1),
 * an operation is O(maxOrder). No allocation and no boxing after construction.
 *
 * <p><b>Why a ReentrantLock and not {@code synchronized}:</b> measured with {@code BuddyBenchmark} on two
 * threads (2 cores, JDK 25), a {@code synchronized} version settled after a few iterations into a convoy
 * of about 800 ns per alloc+free in {@code allocFree4k} (threads parking on the inflated monitor at every
 * hand-off), where the ReentrantLock stays at 55..80 ns; on one thread the ReentrantLock is also faster
 * (26 vs 32 ns). The baseline is the better of the two.
 */
public final class LockedBuddyAllocator implements BlockAllocator {

    private static final int NIL = -1;

    private final long base;
    private final long size;
    private final long basePfn;
    private final long endPfn;
    private final int pages;
    private final int maxOrder;

    /** Non-fair: a released lock goes to whoever CASes first, the fast choice for short critical sections. */
    private final ReentrantLock lock = new ReentrantLock();

    // guarded by lock
    private final byte[] state;
    private final int[] next;
    private final int[] prev;
    private final int[] head;
    private final long[] count;
    private volatile boolean closed;

    /**
     * Creates an allocator over {@code [base, base + size)} handing out blocks up to {@code maxOrder},
     * lowered to fit the pool; the whole range starts free.
     *
     * @throws IllegalArgumentException if base or size is not a multiple of 4 KiB, the pool has more than
     *                                  2^30 pages, or maxOrder is outside [0, 24]
     */
    public LockedBuddyAllocator(long base, long size, int maxOrder) {
        if (base < 0 || (base & (PAGE_SIZE - 1)) != 0) {
            throw new IllegalArgumentException("base=0x" + Long.toHexString(base) + " must be a non-negative multiple of 4096");
        }
        if (size <= 0 || (size & (PAGE_SIZE - 1)) != 0) {
            throw new IllegalArgumentException("size=" + size + " must be a positive multiple of 4096");
        }
        if ((size >>> PAGE_SHIFT) > (1L << 30)) {
            throw new IllegalArgumentException("size=" + size + " exceeds 2^30 pages");
        }
        if (maxOrder < 0 || maxOrder > MemorySpec.MAX_MAX_ORDER) {
            throw new IllegalArgumentException("maxOrder=" + maxOrder + " must be in [0, " + MemorySpec.MAX_MAX_ORDER + "]");
        }
        this.base = base;
        this.size = size;
        this.basePfn = base >>> PAGE_SHIFT;
        this.pages = (int) (size >>> PAGE_SHIFT);
        this.endPfn = basePfn + pages;
        this.maxOrder = Math.min(maxOrder, 31 - Integer.numberOfLeadingZeros(pages));
        this.state = new byte[pages];
        this.next = new int[pages];
        this.prev = new int[pages];
        this.head = new int[this.maxOrder + 1];
        this.count = new long[this.maxOrder + 1];
        Arrays.fill(head, NIL);
        // carve the range into maximal naturally aligned blocks; append so the lowest address is taken first
        final int[] tail = new int[this.maxOrder + 1];
        Arrays.fill(tail, NIL);
        long pfn = basePfn;
        while (pfn < endPfn) {
            int k = Math.min(this.maxOrder, Long.numberOfTrailingZeros(pfn));
            while (pfn + (1L << k) > endPfn) {
                k--;
            }
            final int page = (int) (pfn - basePfn);
            if (tail[k] == NIL) {
                pushHead(page, k);
            } else {
                next[tail[k]] = page;
                prev[page] = tail[k];
                next[page] = NIL;
                state[page] = (byte) (k + 1);
                count[k]++;
            }
            tail[k] = page;
            pfn += 1L << k;
        }
    }

    /** Creates an allocator for {@code spec}'s range and order bound (it has no thread caches to size). */
    public static LockedBuddyAllocator create(MemorySpec spec) {
        return new LockedBuddyAllocator(spec.base(), spec.size(), spec.maxOrder());
    }

    /**
     * Creates the cached locked baseline: this allocator behind per-thread caches of {@code capacity} blocks
     * for each order up to 3 (32 KiB), refilled and flushed half a cache at a time under one lock
     * acquisition, as tcmalloc's and jemalloc's thread caches sit in front of a locked central heap. The
     * like-for-like baseline of a cached {@code LockFreeBuddyAllocator}.
     */
    public static Cached cached(MemorySpec spec, int capacity) {
        return new Cached(create(spec), capacity);
    }

    /**
     * Per-thread caches in front of a {@link LockedBuddyAllocator}.
     *
     * <p><b>Thread-safety:</b> thread-safe; each thread's cache is its own (no stealing: blocks cached by an
     * idle thread stay there until it calls {@link #releaseThreadCache()}), everything else is the locked
     * allocator's. Cached blocks stay marked allocated inside, so a double free of a cached block is not
     * detected, and {@link #stats()} counts them as allocated: a benchmark baseline, not a product.
     */
    public static final class Cached implements BlockAllocator {

        static final int CACHED_ORDERS = 4;

        private final LockedBuddyAllocator inner;
        private final int capacity;
        private final ThreadLocal<long[][]> stacks;
        private final ThreadLocal<int[]> counts;

        Cached(LockedBuddyAllocator inner, int capacity) {
            this.inner = inner;
            this.capacity = capacity;
            this.stacks = ThreadLocal.withInitial(() -> new long[CACHED_ORDERS][capacity]);
            this.counts = ThreadLocal.withInitial(() -> new int[CACHED_ORDERS]);
        }

        @Override
        public long alloc(int order) {
            if (order >= CACHED_ORDERS || order > inner.maxOrder) {
                return inner.alloc(order);
            }
            final int[] n = counts.get();
            final long[] stack = stacks.get()[order];
            if (n[order] == 0) {
                inner.lock.lock(); // one acquisition for the whole batch; the inner calls re-enter it
                try {
                    for (int i = 0, batch = Math.max(1, capacity >>> 1); i < batch; i++) {
                        long pa = inner.alloc(order);
                        if (pa == NONE) {
                            break;
                        }
                        stack[n[order]++] = pa;
                    }
                } finally {
                    inner.lock.unlock();
                }
                if (n[order] == 0) {
                    return NONE;
                }
            }
            return stack[--n[order]];
        }

        @Override
        public void free(long pa, int order) {
            if (order >= CACHED_ORDERS || order > inner.maxOrder) {
                inner.free(pa, order);
                return;
            }
            inner.checkBlock(pa, order);
            final int[] n = counts.get();
            final long[] stack = stacks.get()[order];
            if (n[order] == capacity) {
                int half = Math.max(1, capacity >>> 1);
                inner.lock.lock();
                try {
                    for (int i = 0; i < half; i++) {
                        inner.free(stack[i], order);
                    }
                } finally {
                    inner.lock.unlock();
                }
                System.arraycopy(stack, half, stack, 0, capacity - half);
                n[order] -= half;
            }
            stack[n[order]++] = pa;
        }

        /** Returns the calling thread's cached blocks to the locked allocator. */
        public void releaseThreadCache() {
            final int[] n = counts.get();
            final long[][] s = stacks.get();
            for (int k = 0; k < CACHED_ORDERS; k++) {
                while (n[k] > 0) {
                    inner.free(s[k][--n[k]], k);
                }
            }
        }

        @Override
        public boolean allocAt(long pa, int order) {
            return inner.allocAt(pa, order);
        }

        @Override
        public AllocatorStats stats() {
            return inner.stats();
        }

        @Override
        public long base() {
            return inner.base;
        }

        @Override
        public long size() {
            return inner.size;
        }

        @Override
        public int maxOrder() {
            return inner.maxOrder;
        }

        @Override
        public boolean isClosed() {
            return inner.isClosed();
        }

        @Override
        public void close() {
            inner.close();
        }
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

    /**
     * {@inheritDoc}
     *
     * @return the block's address, or {@link #NONE} if no block of {@code order} or larger is free
     */
    @Override
    public long alloc(int order) {
        checkOrder(order);
        lock.lock();
        try {
            checkOpen();
            int k = order;
            final int[] head = this.head;
            while (k <= maxOrder && head[k] == NIL) {
                k++;
            }
            if (k > maxOrder) {
                return NONE;
            }
            final int page = head[k];
            unlink(page, k);
            while (k > order) {
                k--;
                pushHead(page + (1 << k), k);
            }
            state[page] = (byte) ~order;
            return base + ((long) page << PAGE_SHIFT);
        } finally {
            lock.unlock();
        }
    }

    @Override
    public boolean allocAt(long pa, int order) {
        checkBlock(pa, order);
        final int page = (int) ((pa - base) >>> PAGE_SHIFT);
        lock.lock();
        try {
            checkOpen();
            // find the free block that contains [pa, pa + orderSize(order))
            final long pfn = pa >>> PAGE_SHIFT;
            for (int k = order; k <= maxOrder; k++) {
                final long headPfn = pfn & -(1L << k);
                if (headPfn < basePfn || headPfn + (1L << k) > endPfn) {
                    return false;
                }
                final int headPage = (int) (headPfn - basePfn);
                final byte s = state[headPage];
                if (s == (byte) (k + 1)) {
                    unlink(headPage, k);
                    int blockPage = headPage;
                    while (k > order) {
                        k--;
                        // keep the half holding page, free the other
                        final int upper = blockPage + (1 << k);
                        if (page >= upper) {
                            pushHead(blockPage, k);
                            blockPage = upper;
                        } else {
                            pushHead(upper, k);
                        }
                    }
                    state[blockPage] = (byte) ~order;
                    return true;
                }
                if (s < 0) {
                    return false; // an allocated block starts here and covers page
                }
            }
            return false;
        } finally {
            lock.unlock();
        }
    }

    @Override
    public void free(long pa, int order) {
        checkBlock(pa, order);
        int page = (int) ((pa - base) >>> PAGE_SHIFT);
        lock.lock();
        try {
            checkOpen();
            final byte[] state = this.state;
            final byte s = state[page];
            if (s != (byte) ~order) {
                throw new IllegalStateException("free(pa=0x" + Long.toHexString(pa) + ", order=" + order + "): "
                    + describe(s));
            }
            state[page] = 0;
            int k = order;
            long pfn = basePfn + page;
            while (k < maxOrder) {
                final long buddyPfn = pfn ^ (1L << k);
                if (buddyPfn < basePfn || buddyPfn + (1L << k) > endPfn) {
                    break;
                }
                final int buddy = (int) (buddyPfn - basePfn);
                if (state[buddy] != (byte) (k + 1)) {
                    break;
                }
                unlink(buddy, k);
                state[buddy] = 0;
                pfn &= ~(1L << k);
                k++;
            }
            pushHead((int) (pfn - basePfn), k);
        } finally {
            lock.unlock();
        }
    }

    @Override
    public AllocatorStats stats() {
        lock.lock();
        try {
            checkOpen();
            long free = 0;
            long largest = 0;
            for (int k = 0; k <= maxOrder; k++) {
                free += count[k] * BlockAllocator.orderSize(k);
                if (count[k] != 0) {
                    largest = BlockAllocator.orderSize(k);
                }
            }
            return new AllocatorStats(size, free, 0, size - free, count, largest);
        } finally {
            lock.unlock();
        }
    }

    @Override
    public boolean isClosed() {
        return closed;
    }

    /**
     * Marks the allocator closed; idempotent. Later {@link #alloc}, {@link #allocAt}, {@link #free} and
     * {@link #stats} fail with an {@link IllegalStateException}; the geometry accessors keep answering.
     */
    @Override
    public void close() {
        lock.lock();
        try {
            closed = true;
        } finally {
            lock.unlock();
        }
    }

    @Override
    public String toString() {
        return "LockedBuddyAllocator{base=0x" + Long.toHexString(base) + ", size=" + size + ", maxOrder=" + maxOrder + '}';
    }

    // ---- free lists, caller holds lock ----

    private void pushHead(int page, int k) {
        final int h = head[k];
        next[page] = h;
        prev[page] = NIL;
        if (h != NIL) {
            prev[h] = page;
        }
        head[k] = page;
        state[page] = (byte) (k + 1);
        count[k]++;
    }

    private void unlink(int page, int k) {
        final int n = next[page];
        final int p = prev[page];
        if (p == NIL) {
            head[k] = n;
        } else {
            next[p] = n;
        }
        if (n != NIL) {
            prev[n] = p;
        }
        count[k]--;
        // the caller overwrites state[page]
    }

    // ---- checks ----

    private void checkOrder(int order) {
        if (order < 0 || order > maxOrder) {
            throw new IllegalArgumentException("order=" + order + " must be in [0, " + maxOrder + "]");
        }
    }

    private void checkBlock(long pa, int order) {
        checkOrder(order);
        final long len = BlockAllocator.orderSize(order);
        if (pa < base || pa - base > size - len || (pa & (len - 1)) != 0) {
            throw new IllegalArgumentException("pa=0x" + Long.toHexString(pa) + " order=" + order
                + " is outside [0x" + Long.toHexString(base) + ", 0x" + Long.toHexString(base + size)
                + ") or not aligned to 0x" + Long.toHexString(len));
        }
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("allocator already closed");
        }
    }

    private static String describe(byte s) {
        if (s == 0) {
            return "not allocated (never allocated, already freed, or inside another block)";
        }
        if (s > 0) {
            return "already free (double free) as order " + (s - 1);
        }
        return "allocated with order " + (~s) + ", not this order";
    }
}
