package dev.vcmm;

import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemoryBackend;
import dev.vcmm.spi.MemorySpec;
import dev.vcmm.spi.PhysicalMemory;
import dev.vcmm.testing.SimpleBuddyAllocator;
import dev.vcmm.testing.SimplePhysicalMemory;
import dev.vcmm.testing.SimpleTestBackend;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;
import java.util.function.Supplier;

import static dev.vcmm.TestMemoryTypes.BASE;
import static dev.vcmm.TestMemoryTypes.GIB;
import static dev.vcmm.TestMemoryTypes.MIB;
import static dev.vcmm.TestMemoryTypes.ddr;
import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class MemoryTypeTest {

    @Test
    void shouldBuildFromBuilderSettings() {
        try (MemoryType t = MemoryType.builder("sram").base(0x1000_0000L).size(64 * MIB).secure(true)
            .maxOrder(10).threadCacheCapacity(64).backend(new SimpleTestBackend()).build()) {
            assertEquals("sram", t.name());
            assertEquals(0x1000_0000L, t.base());
            assertEquals(64 * MIB, t.size());
            assertTrue(t.isSecure());
            assertEquals(Set.of(MemoryAttribute.SECURE), t.attributes());
            assertThrows(UnsupportedOperationException.class, () -> t.attributes().clear());
            assertEquals(new MemorySpec("sram", 0x1000_0000L, 64 * MIB, true, 10, 64), t.spec());
            assertEquals(10, t.maxOrder());
            assertEquals(SimpleTestBackend.NAME, t.backendName());
            assertEquals(64 * MIB, t.stats().totalBytes());
            assertEquals(64 * MIB, t.stats().freeBytes());
            assertEquals(0x1000_0000L, t.memory().base());
            assertTrue(t.toString().contains("sram 64M at 0x10000000"), t.toString());
        }
    }

    @Test
    void shouldNotBeSecureByDefaultAndLetSecureFalseRemoveIt() {
        try (MemoryType t = MemoryType.builder("ddr").size(MIB).attributes(MemoryAttribute.SECURE).secure(false)
            .backend(new SimpleTestBackend()).build()) {
            assertFalse(t.isSecure());
            assertTrue(t.attributes().isEmpty());
        }
    }

    @Test
    void shouldRejectBadSettingsNamingThem() {
        MemoryBackend b = new SimpleTestBackend();
        assertTrue(assertThrows(IllegalArgumentException.class,
            () -> MemoryType.builder("ddr").base(4095).size(MIB).backend(b).build()).getMessage().contains("base="));
        assertTrue(assertThrows(IllegalArgumentException.class,
            () -> MemoryType.builder("ddr").size(MIB + 1).backend(b).build()).getMessage().contains("size="));
        assertTrue(assertThrows(IllegalArgumentException.class,
            () -> MemoryType.builder("ddr").size(MIB).maxOrder(99).backend(b).build()).getMessage().contains("maxOrder=99"));
        assertTrue(assertThrows(IllegalArgumentException.class,
            () -> MemoryType.builder("ddr").size(MIB).threadCacheCapacity(-1).backend(b).build()).getMessage()
            .contains("threadCacheCapacity=-1"));
        assertThrows(IllegalArgumentException.class, () -> MemoryType.builder(" ").size(MIB).backend(b).build());
        assertThrows(NullPointerException.class, () -> MemoryType.builder(null));
        assertTrue(assertThrows(IllegalStateException.class, () -> MemoryType.builder("ddr").backend(b).build())
            .getMessage().contains("size is not set"));
    }

    @Test
    void shouldFindTheTestBackendWithServiceLoader() {
        try (MemoryType t = MemoryType.builder("ddr").size(MIB).build()) {
            assertEquals(SimpleTestBackend.NAME, t.backendName());
        }
    }

    /** A backend of high priority, registered only by {@link #shouldPreferTheBackendOfHighestPriority}. */
    public static final class PreferredBackend implements MemoryBackend {
        @Override public String name() { return "preferred"; }
        @Override public int priority() { return 100; }
        @Override public PhysicalMemory openMemory(MemorySpec spec) { return new SimplePhysicalMemory(spec.base(), spec.size()); }
        @Override public BlockAllocator openAllocator(MemorySpec spec) { return new SimpleBuddyAllocator(spec); }
    }

    @Test
    void shouldPreferTheBackendOfHighestPriority(@TempDir Path dir) throws Exception {
        Path services = dir.resolve("META-INF/services");
        Files.createDirectories(services);
        Files.writeString(services.resolve(MemoryBackend.class.getName()), PreferredBackend.class.getName() + "\n");
        try (URLClassLoader loader = new URLClassLoader(new URL[] {dir.toUri().toURL()}, getClass().getClassLoader())) {
            String name = withContextClassLoader(loader, () -> {
                try (MemoryType t = MemoryType.builder("ddr").size(MIB).build()) {
                    return t.backendName();
                }
            });
            assertEquals("preferred", name);
        }
    }

    @Test
    void shouldSayWhatToAddWhenNoBackendIsFound() {
        IllegalStateException e = withContextClassLoader(ClassLoader.getPlatformClassLoader(),
            () -> assertThrows(IllegalStateException.class, () -> MemoryType.builder("ddr").size(MIB).build()));
        assertTrue(e.getMessage().contains("dev.vcmm:vcmm-ffm-backend"), e.getMessage());
        assertTrue(e.getMessage().contains("memoryType=ddr"), e.getMessage());
    }

    @Test
    void shouldCloseTheMemoryWhenTheAllocatorCannotBeOpened() {
        SimplePhysicalMemory[] opened = new SimplePhysicalMemory[1];
        MemoryBackend failing = new MemoryBackend() {
            @Override public String name() { return "failing"; }
            @Override public int priority() { return 0; }
            @Override public PhysicalMemory openMemory(MemorySpec spec) {
                return opened[0] = new SimplePhysicalMemory(spec.base(), spec.size());
            }
            @Override public BlockAllocator openAllocator(MemorySpec spec) {
                throw new IllegalArgumentException("too big for this backend");
            }
        };
        assertThrows(IllegalArgumentException.class, () -> MemoryType.builder("ddr").size(MIB).backend(failing).build());
        assertTrue(opened[0].isClosed());
    }

    @Test
    void shouldCloseAllocatorAndMemoryOnceAndFailUseAfterClose() {
        MemoryType t = ddr(GIB);
        BlockAllocator allocator = t.allocator();
        PhysicalMemory memory = t.memory();
        PhysMem pm = t.physAlloc(MIB, ChunkPolicy.VCMM);
        t.close();
        assertTrue(t.isClosed());
        assertTrue(allocator.isClosed());
        assertTrue(memory.isClosed());
        assertDoesNotThrow(t::close);
        for (Runnable use : new Runnable[] {
            () -> t.physAlloc(MIB, ChunkPolicy.VCMM),
            () -> t.physAlloc(MIB, ChunkPolicy.VCMM, PhysAllocOptions.CONTIGUOUS),
            () -> t.physFree(pm), pm::free, t::stats, t::memory, t::allocator}) {
            IllegalStateException e = assertThrows(IllegalStateException.class, use::run);
            assertTrue(e.getMessage().contains("memoryType=ddr"), e.getMessage());
            assertTrue(e.getMessage().contains("closed"), e.getMessage());
        }
        assertFalse(pm.isFreed(), "a free refused after close changes nothing");
        assertEquals("ddr", t.name());
        assertEquals(BASE, t.base());
        assertTrue(t.toString().endsWith(", closed]"), t.toString());
    }

    private static <T> T withContextClassLoader(ClassLoader loader, Supplier<T> body) {
        Thread thread = Thread.currentThread();
        ClassLoader saved = thread.getContextClassLoader();
        thread.setContextClassLoader(loader);
        try {
            return body.get();
        } finally {
            thread.setContextClassLoader(saved);
        }
    }

    @Test
    void shouldExposeTheSameAllocatorAndMemoryWhileOpen() {
        try (MemoryType t = ddr(MIB)) {
            assertSame(t.allocator(), t.allocator());
            assertSame(t.memory(), t.memory());
        }
    }
}
