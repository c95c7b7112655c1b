package dev.vcmm.property.graph;

import dev.vcmm.ChunkPolicy;
import dev.vcmm.Device;
import dev.vcmm.Mapping;
import dev.vcmm.PhysMem;
import dev.vcmm.Reservation;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.Vcmm;
import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.pagetable.X86_64Format;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.Test;
import org.quicktheories.api.Pair;
import org.quicktheories.core.Gen;
import org.quicktheories.generators.Generate;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.quicktheories.QuickTheory.qt;
import static org.quicktheories.generators.SourceDSL.lists;

/**
 * Model-based property of sparse reservations ({@link Vcm#reserveSparse}) in the graph: generated sequences of
 * reserve-sparse, allocate, bind ({@code remap}), unbind ({@code unback(offset, length)}), device writes, tear-down
 * and free are run on a fresh VCMM and on a model that keeps, per page of each sparse reservation, the allocation page
 * it is bound to or nothing, and the bytes of every allocation page. A refused call must throw what the model says and
 * change nothing. After EVERY step, on two devices of different formats: every page of every sparse reservation reads
 * zero when unbound and its allocation page's bytes when bound; every allocation holds exactly the model's bytes (a
 * write to an unbound page is dropped: it is visible nowhere); {@code whoMaps} of every allocation page lists exactly
 * the reservations the model binds to it, and never anything for the null page; backing counts agree; the null page is
 * zero and counts one backing per live sparse reservation; the data memory allocates exactly the live allocations
 * plus the null page.
 */
class SparseProperties {

    static final long PAGE = 4096;

    /** One operation: a record with a readable {@code toString}. */
    sealed interface SOp permits ReserveSparse, Alloc, Bind, Unbind, Write, Teardown, Free {
        void apply(Run w);
    }

    record ReserveSparse(int pages) implements SOp {
        public void apply(Run w) {
            if (w.res.size() >= 3) {
                return;
            }
            Reservation r = w.vcm.reserveSparse(pages * PAGE, ReservationAttributes.RW);
            w.res.add(new MRes(r, new long[pages][]));
            if (w.nullPa < 0) { // every page of a new sparse reservation translates to the null page
                w.nullPa = ((WalkResult.Translation) w.cpu.translate(r.address())).pa();
            }
            assertEquals(w.nullPa, ((WalkResult.Translation) w.gpu.translate(r.address() + (pages - 1) * PAGE)).pa(),
                "one null page for every sparse reservation and format");
        }
    }

    record Alloc(int pages, int seed) implements SOp {
        public void apply(Run w) {
            if (w.pms.size() >= 4) {
                return;
            }
            PhysMem pm = w.vcmm.physAlloc("ddr", pages * PAGE, ChunkPolicy.PAGES_4K);
            byte[][] bytes = new byte[pages][];
            for (int p = 0; p < pages; p++) {
                bytes[p] = pattern(seed * 31 + p);
                pm.memoryType().memory().copyIn(bytes[p], 0, pm.physicalAddress(p * PAGE), (int) PAGE);
            }
            w.pms.add(new MPm(pm, bytes));
        }
    }

    /** Binds {@code n} pages from {@code page} to allocation {@code pm} from {@code pmPage}; out of range: refused. */
    record Bind(int res, int page, int n, int pm, int pmPage) implements SOp {
        public void apply(Run w) {
            if (w.res.isEmpty() || w.pms.isEmpty()) {
                return;
            }
            MRes r = w.res.get(res % w.res.size());
            MPm m = w.pms.get(pm % w.pms.size());
            boolean bad = page + n > r.pages.length || pmPage + n > m.bytes.length;
            if (bad) {
                assertThrows(IllegalArgumentException.class, () -> r.r.remap(page * PAGE, n * PAGE, m.pm, pmPage * PAGE));
                return;
            }
            r.r.remap(page * PAGE, n * PAGE, m.pm, pmPage * PAGE);
            for (int i = 0; i < n; i++) {
                r.pages[page + i] = new long[] {w.pms.indexOf(m), pmPage + i};
                r.bound[page + i] = m;
            }
        }
    }

    record Unbind(int res, int page, int n) implements SOp {
        public void apply(Run w) {
            if (w.res.isEmpty()) {
                return;
            }
            MRes r = w.res.get(res % w.res.size());
            if (page + n > r.pages.length) {
                assertThrows(IllegalArgumentException.class, () -> r.r.unback(page * PAGE, n * PAGE));
                return;
            }
            r.r.unback(page * PAGE, n * PAGE);
            for (int i = 0; i < n; i++) {
                r.pages[page + i] = null;
                r.bound[page + i] = null;
            }
        }
    }

    /** A device writes a page (partly, from {@code at}) of a reservation: lands in the bound page, or is dropped. */
    record Write(int res, int page, int at, int seed, boolean second) implements SOp {
        public void apply(Run w) {
            if (w.res.isEmpty()) {
                return;
            }
            MRes r = w.res.get(res % w.res.size());
            int p = page % r.pages.length;
            byte[] data = pattern(seed);
            int from = at % (int) PAGE;
            (second ? w.cpu : w.gpu).write(r.r.address() + p * PAGE + from, data, from, (int) PAGE - from);
            MPm m = r.bound[p];
            if (m != null) {
                System.arraycopy(data, from, m.bytes[(int) r.pages[p][1]], from, (int) PAGE - from);
            } else {
                w.dropped += PAGE - from;
            }
        }
    }

    record Teardown(int res) implements SOp {
        public void apply(Run w) {
            if (w.res.isEmpty()) {
                return;
            }
            MRes r = w.res.remove(res % w.res.size());
            r.r.unback();
            r.r.unreserve();
        }
    }

    /** Frees an allocation: refused (and nothing changed) while a page of a live reservation is bound to it. */
    record Free(int pm) implements SOp {
        public void apply(Run w) {
            if (w.pms.isEmpty()) {
                return;
            }
            MPm m = w.pms.get(pm % w.pms.size());
            if (w.bindersOf(m) > 0) {
                assertThrows(IllegalStateException.class, m.pm::free);
                return;
            }
            m.pm.free();
            w.pms.remove(m);
        }
    }

    /** A reservation in the model: per page {pm index, pm page} or null, and the allocation bound. */
    record MRes(Reservation r, long[][] pages, MPm[] bound) {
        MRes(Reservation r, long[][] pages) {
            this(r, pages, new MPm[pages.length]);
        }
    }

    /** An allocation and the model's bytes of each of its pages. */
    record MPm(PhysMem pm, byte[][] bytes) {
    }

    /** One run: the system and the model. */
    static final class Run {
        final Vcmm vcmm = TestGraphs.graph().ddr(0x8000_0000L, 16L << 20).pageTables(8L << 20).build();
        final Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        final Device cpu = vcmm.device("x86", X86_64Format.INSTANCE);
        final Vcm vcm = vcmm.createVcm(0x4000_0000L, 16L << 20);
        final List<MRes> res = new ArrayList<>();
        final List<MPm> pms = new ArrayList<>();
        long dropped;
        long nullPa = -1;

        Run() {
            vcmm.assoc(vcm, gpu).activate();
            vcmm.assoc(vcm, cpu).activate();
        }

        int bindersOf(MPm m) {
            int n = 0;
            for (MRes r : res) {
                if (Arrays.asList(r.bound).contains(m)) {
                    n++;
                }
            }
            return n;
        }

        void check() {
            byte[] zero = new byte[(int) PAGE];
            byte[] got = new byte[(int) PAGE];
            Map<Long, Set<Long>> expectMaps = new HashMap<>(); // pa of an allocation page -> device addresses
            for (MRes r : res) {
                for (int p = 0; p < r.pages.length; p++) {
                    long va = r.r.address() + p * PAGE;
                    byte[] want = r.bound[p] == null ? zero : r.bound[p].bytes[(int) r.pages[p][1]];
                    for (Device d : List.of(gpu, cpu)) {
                        d.read(va, got, 0, (int) PAGE);
                        assertArrayEquals(want, got, "page " + p + " of " + r.r + " read by " + d.name());
                    }
                    if (r.bound[p] != null) {
                        long pa = r.bound[p].pm.physicalAddress(r.pages[p][1] * PAGE);
                        expectMaps.computeIfAbsent(pa, k -> new HashSet<>()).add(va);
                        assertEquals(pa, r.r.physicalAddress(va));
                    } else {
                        assertEquals(-1, r.r.physicalAddress(va));
                    }
                }
            }
            long live = 0;
            for (MPm m : pms) {
                live += m.pm.length();
                assertEquals(bindersOf(m), m.pm.backingCount(), "backing count of " + m.pm);
                for (int p = 0; p < m.bytes.length; p++) {
                    long pa = m.pm.physicalAddress(p * PAGE);
                    m.pm.memoryType().memory().copyOut(pa, got, 0, (int) PAGE);
                    assertArrayEquals(m.bytes[p], got, "bytes of page " + p + " of " + m.pm);
                    Set<Long> maps = new HashSet<>();
                    for (Mapping x : vcmm.whoMaps(pa)) {
                        maps.add(x.address());
                    }
                    assertEquals(expectMaps.getOrDefault(pa, Set.of()), maps, "whoMaps of page " + p + " of " + m.pm);
                }
            }
            if (nullPa >= 0) {
                vcmm.memoryType("ddr").memory().copyOut(nullPa, got, 0, (int) PAGE);
                assertArrayEquals(zero, got, "the null page stays zero");
                assertEquals(List.of(), vcmm.whoMaps(nullPa), "whoMaps never reports the null page");
                live += PAGE;
            }
            assertEquals(live, vcmm.memoryType("ddr").stats().allocatedBytes(), "live allocations + the null page");
            assertEquals(dropped, gpu.droppedWriteBytes() + cpu.droppedWriteBytes(), "dropped writes");
        }
    }

    static byte[] pattern(int seed) {
        byte[] b = new byte[(int) PAGE];
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) (seed * 131 + i * 7 + 1);
        }
        return b;
    }

    static Gen<int[]> ints(int n) {
        return Generate.intArrays(Generate.constant(n), Generate.range(0, 9999));
    }

    static final List<Pair<Integer, Gen<SOp>>> WEIGHTS = List.of(
        Pair.of(3, ints(1).map(x -> (SOp) new ReserveSparse(1 + x[0] % 8))),
        Pair.of(3, ints(2).map(x -> (SOp) new Alloc(1 + x[0] % 4, x[1]))),
        Pair.of(8, ints(5).map(x -> (SOp) new Bind(x[0], x[1] % 9, 1 + x[2] % 3, x[3], x[4] % 4))),
        Pair.of(5, ints(3).map(x -> (SOp) new Unbind(x[0], x[1] % 9, 1 + x[2] % 3))),
        Pair.of(8, ints(5).map(x -> (SOp) new Write(x[0], x[1], x[2] % 5 == 0 ? x[3] % 4096 : 0, x[3], x[4] % 2 == 0))),
        Pair.of(1, ints(1).map(x -> (SOp) new Teardown(x[0]))),
        Pair.of(2, ints(1).map(x -> (SOp) new Free(x[0]))));

    static void run(List<SOp> ops) {
        Run w = new Run();
        try {
            for (SOp op : ops) {
                op.apply(w);
                w.check();
            }
            for (MRes r : w.res) {
                r.r.unback();
                r.r.unreserve();
            }
            for (MPm m : w.pms) {
                m.pm.free();
            }
            assertFalse(w.vcm.reservations().stream().anyMatch(Reservation::isBacked));
            assertTrue(w.vcmm.memoryType("ddr").stats().allocatedBytes() <= PAGE, "only the null page is left");
        } finally {
            w.vcmm.close();
        }
    }

    @Test
    void shouldReadZeroFromUnboundPagesAndDropTheirWritesAsTheModel() {
        long seed = Long.getLong("vcmm.seed", System.nanoTime());
        int n = Boolean.getBoolean("vcmm.long") ? 5000 : 60;
        System.out.printf("SparseProperties seed=%d examples=%d (replay: -Dvcmm.seed=%d)%n", seed, n, seed);
        qt().withFixedSeed(seed).withExamples(n).withShrinkCycles(100)
            .forAll(lists().of(Generate.frequency(WEIGHTS)).ofSizeBetween(1, 40))
            .checkAssert(SparseProperties::run);
    }
}
