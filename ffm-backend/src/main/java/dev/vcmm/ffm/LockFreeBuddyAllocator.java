package dev.vcmm.ffm;

import dev.vcmm.spi.AllocatorStats;
import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemorySpec;

/**
 * The lock-free buddy allocator (work in progress: the API is fixed, the body lands next).
 */
public final class LockFreeBuddyAllocator implements BlockAllocator {

    private LockFreeBuddyAllocator() {
    }

    /** Creates an allocator for {@code spec}'s range, with its order bound and thread-cache capacity. */
    public static LockFreeBuddyAllocator create(MemorySpec spec) {
        throw new UnsupportedOperationException("not yet");
    }

    /** Creates an allocator over {@code [base, base + size)}, max order 18, no thread caches. */
    public static LockFreeBuddyAllocator create(long base, long size) {
        return create(new MemorySpec("pool", base, size, false, MemorySpec.DEFAULT_MAX_ORDER, 0));
    }

    /** Returns every block in the calling thread's cache to the shared pool, where it may coalesce. */
    public void releaseThreadCache() {
        throw new UnsupportedOperationException("not yet");
    }

    @Override public long base() { throw new UnsupportedOperationException(); }
    @Override public long size() { throw new UnsupportedOperationException(); }
    @Override public int maxOrder() { throw new UnsupportedOperationException(); }
    @Override public long alloc(int order) { throw new UnsupportedOperationException(); }
    @Override public boolean allocAt(long pa, int order) { throw new UnsupportedOperationException(); }
    @Override public void free(long pa, int order) { throw new UnsupportedOperationException(); }
    @Override public AllocatorStats stats() { throw new UnsupportedOperationException(); }
    @Override public boolean isClosed() { throw new UnsupportedOperationException(); }
    @Override public void close() { throw new UnsupportedOperationException(); }
}
