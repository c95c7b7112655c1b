package dev.vcmm.spi;

class HeapPhysicalMemoryTest extends PhysicalMemoryContractTest {
    @Override protected PhysicalMemory create(long base, long size) { return HeapPhysicalMemory.create(base, size); }
}
