package dev.vcmm.ffm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.vcmm.spi.MemoryBackend;
import dev.vcmm.spi.MemorySpec;
import dev.vcmm.spi.PhysicalMemory;
import java.util.List;
import java.util.ServiceLoader;
import org.junit.jupiter.api.Test;

class FfmMemoryBackendTest {

    @Test
    void shouldBeFoundByServiceLoaderAsFfmWithPriority100() {
        List<MemoryBackend> backends = ServiceLoader.load(MemoryBackend.class).stream().map(ServiceLoader.Provider::get).toList();
        MemoryBackend ffm = backends.stream().filter(b -> b.name().equals("ffm")).findFirst()
            .orElseThrow(() -> new AssertionError("no ffm backend among " + backends));
        assertInstanceOf(FfmMemoryBackend.class, ffm);
        assertEquals(100, ffm.priority());
    }

    @Test
    void shouldOpenSegmentMemoryForTheSpec() {
        MemorySpec spec = new MemorySpec("sram", 0x1000_0000L, 8L << 20, true, 9, 0);
        try (PhysicalMemory mem = new FfmMemoryBackend().openMemory(spec)) {
            SegmentPhysicalMemory segmentMemory = assertInstanceOf(SegmentPhysicalMemory.class, mem);
            assertEquals(spec.base(), mem.base());
            assertEquals(spec.size(), mem.size());
            assertEquals("sram", segmentMemory.name());
            mem.soLong(spec.base() + spec.size() - 8, 7L);
            assertEquals(7L, mem.laLong(spec.base() + spec.size() - 8));
        }
    }

    @Test
    void shouldDescribeItself() {
        assertTrue(new FfmMemoryBackend().toString().contains("ffm"));
    }
}
