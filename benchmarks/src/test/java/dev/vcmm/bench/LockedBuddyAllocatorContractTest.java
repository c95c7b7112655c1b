package dev.vcmm.bench;

import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.BlockAllocatorContractTest;

class LockedBuddyAllocatorContractTest extends BlockAllocatorContractTest {
    @Override
    protected BlockAllocator create(long base, long size, int maxOrder) {
        return new LockedBuddyAllocator(base, size, maxOrder);
    }
}
