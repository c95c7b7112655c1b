package dev.vcmm.ffm;

import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.BlockAllocatorContractTest;
import dev.vcmm.spi.MemorySpec;

class LockFreeBuddyAllocatorContractTest extends BlockAllocatorContractTest {
    @Override
    protected BlockAllocator create(long base, long size, int maxOrder) {
        return LockFreeBuddyAllocator.create(new MemorySpec("test", base, size, false, maxOrder, 0));
    }
}
