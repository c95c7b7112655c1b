package dev.vcmm.ffm;

import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.BlockAllocatorContractTest;
import dev.vcmm.spi.MemorySpec;

class CachedLockFreeBuddyAllocatorContractTest extends BlockAllocatorContractTest {
    @Override
    protected BlockAllocator create(long base, long size, int maxOrder) {
        return LockFreeBuddyAllocator.create(new MemorySpec("cached", base, size, false, maxOrder, 8));
    }

    @Override
    protected void quiesce(BlockAllocator allocator) {
        ((LockFreeBuddyAllocator) allocator).releaseThreadCache();
    }
}
