package dev.vcmm;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The README's quick start, kept compiling and true (over whichever backend ServiceLoader prefers). */
class ReadmeExampleTest {

    @Test
    void shouldRunTheQuickStart() {
        try (MemoryType ddr = MemoryType.builder("ddr")
                .base(0x8000_0000L).size(1L << 30)
                .build()) {
            PhysMem frame = ddr.physAlloc(1920 * 1080 * 4, ChunkPolicy.VCMM);
            long pa = frame.physicalAddress(4096);
            PhysMem dma = ddr.physAlloc(3 << 20, ChunkPolicy.VCMM,
                    PhysAllocOptions.CONTIGUOUS.withAlignment(1 << 20));

            assertEquals(java.util.Map.of(8, 7L, 4, 14L, 0, 9L), TestMemoryTypes.countByOrder(frame));
            assertEquals(frame.chunks().getFirst().pa() + 4096, pa);
            assertTrue(dma.isContiguous());
            assertEquals(0, dma.chunks().getFirst().pa() % (1 << 20));
            assertEquals(ChunkPolicy.of(2 << 20, 64 << 10, 4 << 10).toString(), "2M+64K+4K");
            frame.free();
            dma.free();
            assertEquals(ddr.stats().totalBytes(), ddr.stats().freeBytes());
        }
    }
}
