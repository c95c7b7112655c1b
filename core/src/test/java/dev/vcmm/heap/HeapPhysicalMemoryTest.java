package dev.vcmm.heap;

import dev.vcmm.spi.PhysicalMemory;
import dev.vcmm.spi.PhysicalMemoryContractTest;

class HeapPhysicalMemoryTest extends PhysicalMemoryContractTest {
    @Override protected PhysicalMemory create(long base, long size) { return HeapPhysicalMemory.create(base, size); }
}
