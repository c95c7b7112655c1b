package dev.vcmm.ffm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.vcmm.pagetable.AddressRangeException;
import dev.vcmm.pagetable.AlreadyMappedException;
import dev.vcmm.pagetable.Attributes;
import dev.vcmm.pagetable.CachePolicy;
import dev.vcmm.pagetable.LeafSize;
import dev.vcmm.pagetable.PageTable;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.PageTableFormats;
import dev.vcmm.pagetable.UnsupportedAttributeException;
import dev.vcmm.pagetable.UnsupportedSizeException;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.heap.HeapPhysicalMemory;
import dev.vcmm.spi.MemorySpec;
import dev.vcmm.spi.PhysicalMemory;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The mapper's one-page fast path (a warm walk cache, one read and one store) gives exactly what the general
 * path gives, bad input included, over both kinds of memory: a {@link SegmentPhysicalMemory}, which it
 * reaches through {@link PhysicalMemory#segment()}, and a {@link HeapPhysicalMemory}, which has no segment.
 * Every case first warms the table with a mapping in the same last-level table, so the call under test
 * takes the fast path when it can.
 */
class PageTableOnePageTest {

    private static final long PT_BASE = 0x1000_0000L;
    private static final long PT_SIZE = 16L << 20;
    private static final long VA = 0x40_0000L; // 4 MiB: inside every format's input space, 2 MiB aligned
    private static final long PA = 0x2000_0000L;

    private PhysicalMemory memory;
    private LockFreeBuddyAllocator allocator;
    private PageTable table;
    /** The format's smallest page, and attributes it can express (stage 2 has no privileged-only mappings). */
    private long pg;
    private Attributes rw;
    private Attributes ro;

    static Stream<Arguments> cases() {
        List<Arguments> all = new ArrayList<>();
        for (PageTableFormat f : PageTableFormats.everyFormat()) {
            all.add(Arguments.of(f.name(), true));
            all.add(Arguments.of(f.name(), false));
        }
        return all.stream();
    }

    private PageTable open(String format, boolean segment) {
        MemorySpec spec = new MemorySpec("pt", PT_BASE, PT_SIZE, false, 12, 0);
        memory = segment ? SegmentPhysicalMemory.open(spec) : HeapPhysicalMemory.create(PT_BASE, PT_SIZE);
        assertEquals(segment, memory.segment() != null);
        allocator = LockFreeBuddyAllocator.create(spec);
        PageTableFormat f = PageTableFormats.byName(format);
        pg = f.leafSizes().getLast().size();
        boolean user = format.contains("-s2");
        rw = Attributes.RW.withUser(user);
        ro = Attributes.RO.withUser(user);
        table = PageTable.create(f, memory, allocator);
        table.map(VA, PA, pg, rw); // warms the walk cache for [VA, VA + 1 MiB)
        return table;
    }

    @AfterEach
    void close() {
        if (table != null) {
            table.close();
            assertEquals(0, allocator.stats().allocatedBytes(), "no table page leaked");
            allocator.close();
            memory.close();
        }
    }

    private WalkResult.Translation at(long va) {
        return assertInstanceOf(WalkResult.Translation.class, table.translate(va));
    }

    @ParameterizedTest(name = "{0} segment={1}")
    @MethodSource("cases")
    void shouldMapAndUnmapOnePageInAWarmTable(String format, boolean segment) {
        open(format, segment);
        for (int i = 1; i < 64; i++) {
            assertEquals(pg, table.map(VA + i * pg, PA + i * 3 * pg, pg, rw));
        }
        for (int i = 0; i < 64; i++) {
            assertEquals(PA + i * 3 * pg + 42, at(VA + i * pg + 42).pa());
        }
        for (int i = 1; i < 63; i += 2) {
            assertEquals(pg, table.unmap(VA + i * pg, pg));
            assertEquals(0, table.unmap(VA + i * pg, pg), "a page already unmapped unmaps nothing");
            assertFalse(table.translate(VA + i * pg).isMapped());
            assertEquals(PA + (i + 1) * 3 * pg, at(VA + (i + 1) * pg).pa(), "its neighbour stays");
        }
    }

    @ParameterizedTest(name = "{0} segment={1}")
    @MethodSource("cases")
    void shouldRefuseAMapOverALivePageAndChangeNothing(String format, boolean segment) {
        open(format, segment);
        AlreadyMappedException e = assertThrows(AlreadyMappedException.class, () -> table.map(VA, PA + pg, pg, ro));
        assertEquals(VA, e.va());
        assertEquals(PA, at(VA).pa());
        assertEquals(rw, at(VA).attributes());
    }

    @ParameterizedTest(name = "{0} segment={1}")
    @MethodSource("cases")
    void shouldRefuseMisalignedAndOutOfReachAddresses(String format, boolean segment) {
        open(format, segment);
        PageTableFormat f = table.format();
        LeafSize page = f.leafSizes().getLast();
        long va = VA + pg;
        assertThrows(UnsupportedSizeException.class, () -> table.map(va + 8, PA, pg, rw));
        assertThrows(UnsupportedSizeException.class, () -> table.map(va, PA + 8, pg, rw));
        assertThrows(UnsupportedSizeException.class, () -> table.unmap(va + 8, pg));
        assertThrows(AddressRangeException.class, () -> table.map(va, -pg, pg, rw));
        assertThrows(AddressRangeException.class, () -> table.map(va, f.leafPaLimit(page), pg, rw),
            "the first address a page cannot reach");
        assertEquals(pg, table.map(va, f.leafPaLimit(page) - pg, pg, rw), "the last one it can");
        assertEquals(f.leafPaLimit(page) - pg, at(va).pa());
        assertEquals(pg, table.unmap(va, pg));
        assertFalse(table.translate(va).isMapped());
        assertEquals(PA, at(VA).pa(), "the warm page is untouched");
    }

    @ParameterizedTest(name = "{0} segment={1}")
    @MethodSource("cases")
    void shouldEncodeEveryAttributeSetAsTheGeneralPathDoes(String format, boolean segment) {
        open(format, segment);
        PageTableFormat f = table.format();
        int supported = 0;
        int i = 1;
        for (CachePolicy c : CachePolicy.values()) {
            for (int bits = 0; bits < 16; bits++, i++) {
                Attributes a = new Attributes((bits & 1) != 0, (bits & 2) != 0, (bits & 4) != 0, (bits & 8) != 0, c);
                Attributes same = new Attributes(a.read(), a.write(), a.execute(), a.user(), a.cache());
                assertNotSame(a, same);
                long va = VA + i * pg;
                long pa = PA + i * 5 * pg;
                boolean expressible = isExpressible(f, a);
                if (!expressible) {
                    assertThrows(UnsupportedAttributeException.class, () -> table.map(va, pa, pg, a), a::toString);
                    assertFalse(table.translate(va).isMapped(), "a refused map leaves nothing");
                    continue;
                }
                supported++;
                table.map(va, pa, pg, a);
                table.map(va + 128 * pg, pa + pg, pg, same); // equal, not the same object
                // the walker decodes what the format encodes: the same attributes the general path gives
                // for a range of two pages (never the fast path) in a table of its own
                Attributes decoded = at(va).attributes();
                assertEquals(decoded, at(va + 128 * pg).attributes());
                assertEquals(pa, at(va).pa());
                assertEquals(pa + pg, at(va + 128 * pg).pa());
                assertEquals(decoded, generalPathAttributes(f, a), a::toString);
            }
        }
        assertTrue(supported > 0);
    }

    private static boolean isExpressible(PageTableFormat f, Attributes a) {
        try {
            f.checkAttributes(a);
            return true;
        } catch (UnsupportedAttributeException e) {
            return false;
        }
    }

    private static Attributes generalPathAttributes(PageTableFormat f, Attributes a) {
        try (HeapPhysicalMemory m = HeapPhysicalMemory.create(PT_BASE, PT_SIZE);
             LockFreeBuddyAllocator alloc = LockFreeBuddyAllocator.create(PT_BASE, PT_SIZE);
             PageTable t = PageTable.create(f, m, alloc)) {
            t.map(VA, PA, 2 * f.leafSizes().getLast().size(), a);
            return ((WalkResult.Translation) t.translate(VA)).attributes();
        }
    }

    @ParameterizedTest(name = "{0} segment={1}")
    @MethodSource("cases")
    void shouldSplitARunWhenOnePageOfItIsUnmapped(String format, boolean segment) {
        open(format, segment);
        LeafSize run = table.format().leafSizes().stream()
            .filter(l -> l.isRun() && l.level() == table.format().levels() - 1).findFirst().orElse(null);
        if (run == null) {
            return; // x86-64 and RISC-V have no runs of pages
        }
        long va = VA + run.size();
        long pa = PA + 4 * run.size();
        table.map(va, pa, run.size(), rw);
        assertEquals(run.size(), at(va).leafSize());
        long page = va + 3 * pg;
        assertEquals(pg, table.unmap(page, pg));
        assertFalse(table.translate(page).isMapped());
        for (long off = 0; off < run.size(); off += pg) {
            if (va + off != page) {
                assertEquals(pa + off, at(va + off).pa(), "the rest of the run stays mapped");
                assertEquals(pg, at(va + off).leafSize(), "as single pages");
            }
        }
    }

    @ParameterizedTest(name = "{0} segment={1}")
    @MethodSource("cases")
    void shouldRefuseEverythingOnceClosed(String format, boolean segment) {
        open(format, segment);
        table.close();
        assertThrows(IllegalStateException.class, () -> table.map(VA + pg, PA, pg, rw));
        assertThrows(IllegalStateException.class, () -> table.unmap(VA, pg));
    }

    @ParameterizedTest(name = "{0} segment={1}")
    @MethodSource("cases")
    void shouldRefuseNullAttributes(String format, boolean segment) {
        open(format, segment);
        assertThrows(NullPointerException.class, () -> table.map(VA + pg, PA, pg, null));
        assertFalse(table.translate(VA + pg).isMapped());
    }

    /**
     * Threads map and unmap single pages, each its own pages, interleaved in the same last-level tables (so
     * they share walk-cache entries), while each also maps and wholly unmaps a span of its own, which frees a
     * table and invalidates every thread's cache entries. Each thread checks its own pages with the walker as
     * it goes; at the end nothing is mapped and no table page is lost.
     */
    @ParameterizedTest(name = "{0} segment={1}")
    @MethodSource("cases")
    void shouldKeepOnePageCallsOfManyThreadsApart(String format, boolean segment) throws Exception {
        open(format, segment);
        assertEquals(pg, table.unmap(VA, pg));
        int threads = 4;
        long shared = 512 * pg;                 // 4 KiB pages: two 1 MiB (armv7) or one 2 MiB table, shared by all threads
        long own = 1024 * pg;                   // then one region per thread (4 MiB of 4 KiB pages)
        java.util.concurrent.atomic.AtomicReference<Throwable> failure = new java.util.concurrent.atomic.AtomicReference<>();
        java.util.concurrent.CyclicBarrier start = new java.util.concurrent.CyclicBarrier(threads);
        List<Thread> workers = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            int id = t;
            workers.add(Thread.ofPlatform().start(() -> {
                try {
                    start.await();
                    java.util.Random rnd = new java.util.Random(id);
                    long mine = VA + shared + id * own;
                    for (int round = 0; round < 3000; round++) {
                        long page = (long) (rnd.nextInt((int) (shared / pg / threads)) * threads + id) * pg;
                        long va = VA + page;
                        long pa = PA + page + ((long) round << 24 & 0x3F000000L);
                        assertEquals(pg, table.map(va, pa, pg, rw));
                        if (!(table.translate(va + 8) instanceof WalkResult.Translation tr) || tr.pa() != pa + 8) {
                            throw new AssertionError("thread " + id + " lost 0x" + Long.toHexString(va));
                        }
                        assertEquals(pg, table.unmap(va, pg));
                        assertFalse(table.translate(va).isMapped());
                        if (round % 100 == id) { // a table of its own made and freed: every cache entry goes stale
                            assertEquals(own, table.map(mine, PA + pg, own, rw));
                            assertEquals(own, table.unmap(mine, own));
                            assertEquals(16 * pg, table.map(mine, PA, 16 * pg, rw)); // a table, cached
                            assertEquals(16 * pg, table.unmap(mine, own)); // freed whole, its cache entry stale
                            long again = mine + (16 + rnd.nextInt(64)) * pg; // free in the freed table too
                            assertEquals(pg, table.map(again, PA, pg, rw));
                            if (!(table.translate(again) instanceof WalkResult.Translation t2) || t2.pa() != PA) {
                                throw new AssertionError("thread " + id + " lost 0x" + Long.toHexString(again) + " in a new table");
                            }
                            assertEquals(pg, table.unmap(again, pg));
                        }
                    }
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            }));
        }
        for (Thread w : workers) {
            w.join();
        }
        if (failure.get() != null) {
            throw new AssertionError("a worker failed", failure.get());
        }
        PageTableFormat f = table.format();
        long half = 1L << (f.vaBits() - 1);
        long left = f.isValidVa(-1L) ? table.unmap(0, half) + table.unmap(-half, half) : table.unmap(0, 1L << f.vaBits());
        assertEquals(0, left, "nothing is left mapped");
        assertEquals(1, table.tableCount(), "only the root is left");
        assertEquals(table.heldBytes(), allocator.stats().allocatedBytes());
    }
}
