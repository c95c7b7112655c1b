package dev.vcmm.ffm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.vcmm.spi.MemorySpec;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.OptionalInt;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** What is particular to {@link SegmentPhysicalMemory}: its footprint, its fd, its segment view, racing close. */
class SegmentPhysicalMemoryFfmTest {

    private static final long BASE = 0x8000_0000L;
    private static final long GIB = 1L << 30;

    @Test
    void shouldCostOnlyTheTouchedPagesOfA64GiBMemory() throws IOException {
        assumeTrue(Libc.HAS_MEMFD, "needs memfd and /proc/self/status (Linux)");
        long size = 64 * GIB; // well above this machine's RAM: it must stay sparse
        long rss0 = statusKiB("VmRSS");
        long shmem0 = statusKiB("RssShmem");
        try (SegmentPhysicalMemory mem = SegmentPhysicalMemory.open("big", BASE, size)) {
            long stride = (size / 100) & ~4095L; // page-aligned, so each word is on its own page
            for (int i = 0; i < 100; i++) {
                long pa = BASE + i * stride + 8L * i;
                mem.soLong(pa, ~pa);
            }
            for (int i = 0; i < 100; i++) {
                long pa = BASE + i * stride + 8L * i;
                assertEquals(~pa, mem.laLong(pa));
            }
            long rssGrowth = statusKiB("VmRSS") - rss0;
            long shmemGrowth = statusKiB("RssShmem") - shmem0;
            assertTrue(shmemGrowth >= 100 * 4, "the 100 touched pages are resident shmem: +" + shmemGrowth + " KiB");
            assertTrue(rssGrowth < 64 * 1024, "touching 100 words of 64 GiB grew the RSS by " + rssGrowth + " KiB");
        }
        assertTrue(statusKiB("RssShmem") - shmem0 < 64 * 1024, "close unmaps and frees the memfd's pages");
    }

    @Test
    void shouldExposeAnOpenMemfdNamedAfterTheMemoryUntilClose() throws IOException {
        assumeTrue(Libc.HAS_MEMFD, "needs memfd (Linux)");
        String name = "fd-test-" + ProcessHandle.current().pid() + "-" + System.nanoTime();
        SegmentPhysicalMemory mem = SegmentPhysicalMemory.open(name, BASE, 1L << 20);
        OptionalInt fd = mem.fd();
        assertTrue(fd.isPresent());
        Path link = Path.of("/proc/self/fd/" + fd.getAsInt());
        String target = Files.readSymbolicLink(link).toString();
        assertTrue(target.contains("memfd:vcmm-" + name), target);
        assertEquals(1L << 20, Files.size(link), "ftruncate sized the memfd");
        mem.close();
        assertThrows(IllegalStateException.class, mem::fd);
        // The fd number may be reused by another open in this JVM, but never for our memfd again.
        boolean stillOpen = Files.exists(link, java.nio.file.LinkOption.NOFOLLOW_LINKS)
            && readLinkOrEmpty(link).contains("memfd:vcmm-" + name);
        assertFalse(stillOpen, "close closes the memfd");
    }

    @Test
    void shouldZeroOnlyTheResidentPagesOfALargeRangeLeavingHolesUntouched() throws IOException {
        assumeTrue(Libc.hasSeekData(), "needs memfd, lseek(SEEK_DATA) and /proc/self/status (Linux)");
        long mib = 1L << 20;
        try (SegmentPhysicalMemory mem = SegmentPhysicalMemory.open("holes", BASE, 512 * mib)) {
            long shmem0 = statusKiB("RssShmem");
            mem.fill(BASE + 8 * mib, 4 * mib, (byte) 0x5A); // 4 MiB of data inside 256 MiB of holes
            mem.spLong(BASE + 100 * mib, -1L);               // and one lone page
            mem.zero(BASE + 4096 + 8, 256 * mib);
            long grown = statusKiB("RssShmem") - shmem0;
            assertTrue(grown < 8 * 1024, "the holes were skipped, not faulted in: +" + grown + " KiB");
            assertEquals(0L, mem.lpLong(BASE + 8 * mib));
            assertEquals(0L, mem.segment().get(SegmentPhysicalMemory.LONG_LE, 10 * mib), "reads zero through the view");
            assertEquals(0L, mem.lpLong(BASE + 12 * mib - 8));
            assertEquals(0L, mem.lpLong(BASE + 100 * mib));
            mem.fill(BASE, 4096 + 8, (byte) 1);
            mem.fill(BASE + 256 * mib + 4096 + 8, 8, (byte) 1);
            mem.zero(BASE + 4096 + 8, 256 * mib); // ragged ends inside resident pages: exactly the range
            assertEquals(0x0101_0101_0101_0101L, mem.lpLong(BASE + 4096), "the byte before the range kept");
            assertEquals(0L, mem.lpLong(BASE + 4096 + 8));
            assertEquals(0x0101_0101_0101_0101L, mem.lpLong(BASE + 256 * mib + 4096 + 8), "the byte after the range kept");
        }
    }

    @Test
    void shouldHaveNoFdAndLeaveNoFileWithTheTempFileBacking() throws IOException {
        String name = "tmp-test-" + System.nanoTime();
        try (SegmentPhysicalMemory mem = SegmentPhysicalMemory.open(name, BASE, 16 * GIB, SegmentPhysicalMemory.Backing.TEMP_FILE)) {
            assertTrue(mem.fd().isEmpty());
            mem.spLong(BASE + 15 * GIB, 42L);
            assertEquals(42L, mem.lpLong(BASE + 15 * GIB));
            try (Stream<Path> files = Files.list(Path.of(System.getProperty("java.io.tmpdir")))) {
                assertFalse(files.anyMatch(p -> p.getFileName().toString().startsWith("vcmm-" + name)),
                    "the temporary file is deleted once mapped");
            }
        }
    }

    @Test
    void shouldShareItsBytesWithTheSegmentView() {
        try (SegmentPhysicalMemory mem = SegmentPhysicalMemory.open("view", BASE, 1L << 20)) {
            MemorySegment view = mem.segment();
            assertEquals(1L << 20, view.byteSize());
            assertEquals(0, view.address() & 4095, "the mapping is page-aligned");
            mem.spLong(BASE + 4096, 0x0102_0304_0506_0708L);
            assertEquals(0x0102_0304_0506_0708L, view.get(SegmentPhysicalMemory.LONG_LE, 4096));
            assertEquals((byte) 0x08, view.get(java.lang.foreign.ValueLayout.JAVA_BYTE, 4096), "little-endian");
            view.set(SegmentPhysicalMemory.INT_LE, 8192 + 4, 0xCAFE_BABE);
            assertEquals(0xCAFE_BABE, mem.laInt(BASE + 8192 + 4));
            assertEquals(0xCAFE_BABE_0000_0000L, mem.lpLong(BASE + 8192));
            mem.close();
            assertThrows(IllegalStateException.class, mem::segment);
            assertThrows(IllegalStateException.class, () -> view.get(SegmentPhysicalMemory.LONG_LE, 4096),
                "a view that outlives close fails instead of touching unmapped memory");
        }
    }

    @Test
    @Timeout(60)
    void shouldFailStragglersWithIllegalStateWhenClosedUnderThem() throws Exception {
        for (int round = 0; round < 20; round++) {
            SegmentPhysicalMemory mem = SegmentPhysicalMemory.open("race", BASE, 1L << 20);
            int threads = 4;
            AtomicLong operations = new AtomicLong();
            CountDownLatch running = new CountDownLatch(threads);
            ExecutorService pool = Executors.newFixedThreadPool(threads);
            List<Future<Throwable>> outcomes = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                long pa = BASE + 8L * t;
                outcomes.add(pool.submit(() -> {
                    byte[] buffer = new byte[4096];
                    running.countDown();
                    try {
                        while (true) {
                            long v = mem.laLong(pa);
                            mem.casLong(pa, v, v + 1);
                            mem.copyOut(BASE + 65536, buffer, 0, buffer.length);
                            mem.fill(BASE + 131072, 4096, (byte) v);
                            operations.incrementAndGet();
                        }
                    } catch (Throwable e) {
                        return e;
                    }
                }));
            }
            running.await();
            while (operations.get() < 100) {
                Thread.onSpinWait();
            }
            mem.close();
            for (Future<Throwable> outcome : outcomes) {
                Throwable e = outcome.get(10, TimeUnit.SECONDS);
                assertInstanceOf(IllegalStateException.class, e, () -> "round: a straggler saw " + e);
            }
            pool.shutdown();
            assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS));
        }
    }

    @Test
    void shouldRejectBadGeometryNamingTheField() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> SegmentPhysicalMemory.open("x", 100, 4096));
        assertTrue(e.getMessage().contains("base=0x64"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> SegmentPhysicalMemory.open("x", 0, 4097));
        assertTrue(e.getMessage().contains("size=4097"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> SegmentPhysicalMemory.open("x", 0, SegmentPhysicalMemory.MAX_SIZE + 4096));
        assertTrue(e.getMessage().contains("size="), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> SegmentPhysicalMemory.open("x", Long.MAX_VALUE & ~4095L, 1L << 20));
        assertTrue(e.getMessage().contains("overflows"), e.getMessage());
    }

    @Test
    void shouldNameTheMemoryInMessages() {
        SegmentPhysicalMemory mem = SegmentPhysicalMemory.open(new MemorySpec("ddr", 0, 1L << 20, false, 9, 0));
        assertEquals("ddr", mem.name());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> mem.lpLong(1L << 20));
        assertTrue(e.getMessage().contains("'ddr'"), e.getMessage());
        mem.close();
        IllegalStateException s = assertThrows(IllegalStateException.class, () -> mem.spInt(0, 1));
        assertEquals("physical memory 'ddr' is closed", s.getMessage());
        assertTrue(mem.toString().contains("closed"), mem.toString());
    }

    @Test
    @Timeout(60)
    void shouldRefuseCloseWhileANativeCallHoldsTheMemoryAndChangeNothing() throws Exception {
        for (SegmentPhysicalMemory.Backing backing : SegmentPhysicalMemory.Backing.values()) {
            if (backing == SegmentPhysicalMemory.Backing.MEMFD && !Libc.HAS_MEMFD) {
                continue;
            }
            SegmentPhysicalMemory mem = SegmentPhysicalMemory.open("held-" + backing, BASE, 1L << 20, backing);
            mem.spLong(BASE + 4096, 0x1234L);
            OptionalInt fd = mem.fd();
            IllegalStateException refused;
            try (NativeHold hold = new NativeHold(mem.segment())) {
                refused = assertThrows(IllegalStateException.class, mem::close);
                // nothing changed: still open, still readable and writable, the memfd still there
                assertFalse(mem.isClosed(), backing + ": a refused close leaves the memory open");
                assertEquals(0x1234L, mem.lpLong(BASE + 4096));
                mem.spLong(BASE + 8192, 0x5678L);
                assertEquals(0x5678L, mem.segment().get(SegmentPhysicalMemory.LONG_LE, 8192));
                assertEquals(fd, mem.fd());
                if (fd.isPresent()) {
                    assertTrue(readLinkOrEmpty(Path.of("/proc/self/fd/" + fd.getAsInt())).contains("memfd:vcmm-held"),
                        "the memfd stays open after a refused close");
                }
            }
            assertTrue(refused.getMessage().contains("held-" + backing) && refused.getMessage().contains("busy"),
                refused.getMessage());
            mem.close(); // the obstacle is gone: now it closes
            assertTrue(mem.isClosed());
            assertThrows(IllegalStateException.class, () -> mem.lpLong(BASE + 4096));
            mem.close(); // idempotent after success
        }
    }

    @Test
    void shouldExplainANativeFailureWithErrno() {
        assumeTrue(Libc.HAS_MEMFD, "needs libc (Linux)");
        java.io.UncheckedIOException e = assertThrows(java.io.UncheckedIOException.class, () -> Libc.close(-1));
        assertTrue(e.getMessage().contains("close(-1) failed: errno 9 (Bad file descriptor)"), e.getMessage());
    }

    private static long statusKiB(String key) throws IOException {
        for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
            if (line.startsWith(key + ":")) {
                return Long.parseLong(line.substring(key.length() + 1).replace("kB", "").trim());
            }
        }
        throw new IllegalStateException(key + " not in /proc/self/status");
    }

    private static String readLinkOrEmpty(Path link) {
        try {
            return Files.readSymbolicLink(link).toString();
        } catch (IOException e) {
            return "";
        }
    }
}
