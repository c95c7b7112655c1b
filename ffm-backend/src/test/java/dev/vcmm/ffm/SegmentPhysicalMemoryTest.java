package dev.vcmm.ffm;

import dev.vcmm.spi.PhysicalMemory;
import dev.vcmm.spi.PhysicalMemoryContractTest;

class SegmentPhysicalMemoryTest extends PhysicalMemoryContractTest {
    @Override protected PhysicalMemory create(long base, long size) { return SegmentPhysicalMemory.open("contract", base, size); }
}
