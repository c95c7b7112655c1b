package dev.vcmm.property;

import dev.vcmm.ffm.LockFreeBuddyAllocator;
import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemorySpec;

/** The allocators the property and concurrency suites run against, and how to drain a thread cache of each. */
public enum AllocatorKind {
    /** The lock-free buddy allocator of {@code ffm-backend}: the system under test. */
    LOCK_FREE {
        @Override public BlockAllocator create(MemorySpec spec) { return LockFreeBuddyAllocator.create(spec); }
        @Override public void releaseThreadCache(BlockAllocator a) { ((LockFreeBuddyAllocator) a).releaseThreadCache(); }
    },
    /** {@link ReferenceBuddy}: validates the harness; a failure here is a bug in the test. */
    REFERENCE {
        @Override public BlockAllocator create(MemorySpec spec) { return ReferenceBuddy.create(spec); }
        @Override public void releaseThreadCache(BlockAllocator a) { ((ReferenceBuddy) a).releaseThreadCache(); }
    };

    /** @return a new allocator over {@code spec}. */
    public abstract BlockAllocator create(MemorySpec spec);

    /** Returns the calling thread's cached blocks of {@code a} to its shared pool. */
    public abstract void releaseThreadCache(BlockAllocator a);

    /** {@code -Dvcmm.long=true}: the long runs (100x the examples, longer stress). */
    public static boolean longRun() {
        return Boolean.getBoolean("vcmm.long");
    }
}
