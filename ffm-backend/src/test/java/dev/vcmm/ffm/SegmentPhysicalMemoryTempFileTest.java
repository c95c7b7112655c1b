package dev.vcmm.ffm;

import dev.vcmm.spi.PhysicalMemory;
import dev.vcmm.spi.PhysicalMemoryContractTest;

/** The contract over the fallback backing (a sparse temporary file), which Linux would otherwise never run. */
class SegmentPhysicalMemoryTempFileTest extends PhysicalMemoryContractTest {
    @Override protected PhysicalMemory create(long base, long size) {
        return SegmentPhysicalMemory.open("contract-file", base, size, SegmentPhysicalMemory.Backing.TEMP_FILE);
    }
}
