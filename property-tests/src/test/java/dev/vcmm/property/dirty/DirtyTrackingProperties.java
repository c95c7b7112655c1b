package dev.vcmm.property.dirty;

import dev.vcmm.ChunkPolicy;
import dev.vcmm.Device;
import dev.vcmm.DirtyBitmap;
import dev.vcmm.DirtyTracking;
import dev.vcmm.PhysAllocOptions;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.Vcmm;
import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.RiscvSv48Format;
import dev.vcmm.pagetable.X86_64Format;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.Test;
import org.quicktheories.api.Pair;
import org.quicktheories.core.Gen;
import org.quicktheories.generators.Generate;

import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.quicktheories.QuickTheory.qt;
import static org.quicktheories.generators.SourceDSL.lists;

/**
 * Model-based property of {@link DirtyTracking}: generated sequences of device writes and reads, IOTLB flushes,
 * read-and-clear and no-clear reads of random ranges, disable + enable, and concurrent rounds, run on a VCM with two
 * devices of different formats and on a model, a set of written pages. The VCM holds 32 single 4 KiB pages (at an
 * address that rules out arm64 contiguous runs) and one 2 MiB block (x86-64 and arm64 map it as one leaf, so a
 * write anywhere in it dirties all its 512 pages; a read that does not cover the whole block reports its pages in the
 * range and leaves it dirty). After every step the bitmap a read returns equals the model's pages in the range.
 *
 * <p>A {@code Concurrent} step starts a thread that makes device writes while this thread calls
 * {@code readAndClear}, both released by a barrier; after the join one more read of everything must, together with
 * the concurrent one, contain every page the thread wrote and the model's dirty pages, and nothing else: no write is
 * lost, none invented. The steps count the rounds in which writes completed while the read ran (the overlap), and
 * the property requires some.
 *
 * <p><b>Replay:</b> prints its seed; rerun with {@code -Dvcmm.seed=N}. 60 sequences by default, 100x with
 * {@code -Dvcmm.long=true}.
 */
class DirtyTrackingProperties {

    static final long MIB = 1L << 20;
    static final long PAGE = 4096;
    static final long VA = 0x1000_0000L;
    /** Pages 1..32 of the window are single pages; pages 512..1023 the block; the rest unmapped. */
    static final int SINGLE_FIRST = 1;
    static final int SINGLES = 32;
    static final int BLOCK_FIRST = 512;
    static final int BLOCK_PAGES = 512;
    static final int WINDOW_PAGES = 1024;

    /** One step; pages are indices into the window {@code [VA, VA + 4 MiB)}. */
    sealed interface Op {
        record Write(int device, int page) implements Op { }

        record Read(int device, int page) implements Op { }

        record ReadAndClear(int fromPage, int pages) implements Op { }

        record ReadNoClear(int fromPage, int pages) implements Op { }

        record FlushIotlb(int device) implements Op { }

        record Restart() implements Op { }

        record Concurrent(int seed, int writes) implements Op { }
    }

    static Gen<int[]> ints(int n) {
        return Generate.intArrays(Generate.constant(n), Generate.range(0, 9999));
    }

    /** A mapped page: mostly single pages, a third in the block. */
    static int mappedPage(int v) {
        return v % 3 == 0 ? BLOCK_FIRST + v % BLOCK_PAGES : SINGLE_FIRST + v % SINGLES;
    }

    static final Gen<Op> WRITE = ints(2).map(a -> new Op.Write(a[0] % 2, mappedPage(a[1])));
    static final Gen<Op> READ = ints(2).map(a -> new Op.Read(a[0] % 2, mappedPage(a[1])));
    static final Gen<Op> CLEAR = ints(2).map(a -> a[0] % 3 == 0 ? new Op.ReadAndClear(0, WINDOW_PAGES)
        : new Op.ReadAndClear(a[0] % WINDOW_PAGES, 1 + a[1] % (WINDOW_PAGES - a[0] % WINDOW_PAGES)));
    static final Gen<Op> NO_CLEAR = ints(2).map(a -> new Op.ReadNoClear(a[0] % WINDOW_PAGES,
        1 + a[1] % (WINDOW_PAGES - a[0] % WINDOW_PAGES)));
    static final Gen<Op> FLUSH = ints(1).map(a -> new Op.FlushIotlb(a[0] % 2));
    static final Gen<Op> RESTART = Generate.constant(new Op.Restart());
    static final Gen<Op> CONCURRENT = ints(2).map(a -> new Op.Concurrent(a[0], 20 + a[1] % 200));

    static final AtomicLong OVERLAPS = new AtomicLong();
    static final AtomicLong ROUNDS = new AtomicLong();

    @Test
    void shouldReportExactlyTheWrittenPagesAndLoseNoConcurrentWrite() {
        long seed = Long.getLong("vcmm.seed", System.nanoTime());
        int n = Boolean.getBoolean("vcmm.long") ? 6000 : 60;
        System.out.printf("DirtyTrackingProperties seed=%d examples=%d (replay: -Dvcmm.seed=%d)%n", seed, n, seed);
        Map<String, Integer> stats = new ConcurrentHashMap<>();
        Gen<List<Op>> sequences = lists().of(Generate.frequency(List.of(Pair.of(12, WRITE), Pair.of(4, READ), Pair.of(6, CLEAR),
            Pair.of(3, NO_CLEAR), Pair.of(2, FLUSH), Pair.of(1, RESTART), Pair.of(3, CONCURRENT)))).ofSizeBetween(1, 40);
        qt().withFixedSeed(seed).withExamples(n).withShrinkCycles(50)
            .forAll(sequences)
            .checkAssert(ops -> run(ops, seed, stats));
        System.out.println("DirtyTrackingProperties outcomes: " + new TreeMap<>(stats) + ", concurrent rounds " + ROUNDS.get()
            + ", overlapping " + OVERLAPS.get());
        assertTrue(ROUNDS.get() == 0 || OVERLAPS.get() > 0, "no concurrent round overlapped a write with a read");
    }

    static void run(List<Op> ops, long seed, Map<String, Integer> stats) {
        PageTableFormat[] pair = switch ((int) Math.floorMod(seed + ops.size(), 3)) {
            case 0 -> new PageTableFormat[] {Arm64Lpae4kFormat.INSTANCE, X86_64Format.INSTANCE};
            case 1 -> new PageTableFormat[] {X86_64Format.INSTANCE, RiscvSv48Format.INSTANCE};
            default -> new PageTableFormat[] {RiscvSv48Format.INSTANCE, Arm64Lpae4kFormat.INSTANCE};
        };
        try (Vcmm vcmm = TestGraphs.graph().ddr(0x8000_0000L, 64 * MIB).pageTables(16 * MIB)
            .device("a", pair[0]).device("b", pair[1]).build()) {
            Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
            Device[] devices = {vcmm.device("a"), vcmm.device("b")};
            for (Device d : devices) {
                vcmm.assoc(vcm, d).activate();
            }
            vcm.reserveAt(VA + SINGLE_FIRST * PAGE, SINGLES * PAGE, ReservationAttributes.RW)
                .back(vcmm.physAlloc("ddr", SINGLES * PAGE, ChunkPolicy.PAGES_4K));
            vcm.reserveAt(VA + BLOCK_FIRST * PAGE, BLOCK_PAGES * PAGE, ReservationAttributes.RW)
                .back(vcmm.physAlloc(vcmm.memoryType("ddr"), 2 * MIB, ChunkPolicy.HUGE, PhysAllocOptions.CONTIGUOUS));
            DirtyTracking dt = vcm.dirtyTracking();
            dt.enable();
            TreeSet<Integer> model = new TreeSet<>(); // dirty pages; the block is all or nothing
            byte[] word = new byte[8];
            for (Op op : ops) {
                stats.merge(op.getClass().getSimpleName(), 1, Integer::sum);
                switch (op) {
                    case Op.Write w -> {
                        devices[w.device()].write(VA + w.page() * PAGE + 8L * (w.page() % 500), word, 0, 8);
                        mark(model, w.page());
                    }
                    case Op.Read r -> devices[r.device()].read(VA + r.page() * PAGE, word, 0, 8);
                    case Op.FlushIotlb f -> devices[f.device()].flushIotlb();
                    case Op.Restart ignored -> {
                        dt.disable();
                        dt.enable(); // cleans everything
                        model.clear();
                    }
                    case Op.ReadNoClear r -> assertEquals(expected(model, r.fromPage(), r.pages()),
                        pages(dt.readNoClear(VA + r.fromPage() * PAGE, r.pages() * PAGE)), op.toString());
                    case Op.ReadAndClear r -> {
                        assertEquals(expected(model, r.fromPage(), r.pages()),
                            pages(dt.readAndClear(VA + r.fromPage() * PAGE, r.pages() * PAGE)), op.toString());
                        clear(model, r.fromPage(), r.pages());
                    }
                    case Op.Concurrent c -> concurrent(c, dt, devices, model);
                }
            }
            assertEquals(expected(model, 0, WINDOW_PAGES), pages(dt.readNoClear(VA, WINDOW_PAGES * PAGE)), "at the end");
        }
    }

    static void mark(TreeSet<Integer> model, int page) {
        if (page >= BLOCK_FIRST) {
            for (int p = BLOCK_FIRST; p < BLOCK_FIRST + BLOCK_PAGES; p++) {
                model.add(p);
            }
        } else {
            model.add(page);
        }
    }

    static TreeSet<Integer> expected(TreeSet<Integer> model, int from, int n) {
        return new TreeSet<>(model.subSet(from, from + n));
    }

    /** A read-and-clear of the range: single pages in it are cleaned; the block only if the range covers it whole. */
    static void clear(TreeSet<Integer> model, int from, int n) {
        for (int p = from; p < from + n; p++) {
            if (p < BLOCK_FIRST || (from <= BLOCK_FIRST && from + n >= BLOCK_FIRST + BLOCK_PAGES)) {
                model.remove(p);
            }
        }
    }

    static TreeSet<Integer> pages(DirtyBitmap b) {
        TreeSet<Integer> out = new TreeSet<>();
        b.forEachDirtyPage(a -> out.add((int) ((a - VA) / PAGE)));
        return out;
    }

    /**
     * A writer thread makes {@code c.writes()} device writes while this thread reads and clears the window, both
     * released by a barrier; then one more read and clear. Their union must be the model's pages plus every page the
     * thread wrote, exactly.
     */
    static void concurrent(Op.Concurrent c, DirtyTracking dt, Device[] devices, TreeSet<Integer> model) {
        CyclicBarrier start = new CyclicBarrier(2);
        int[] written = new int[c.writes()];
        AtomicLong done = new AtomicLong();
        Thread writer = new Thread(() -> {
            java.util.Random rnd = new java.util.Random(c.seed());
            byte[] b = new byte[8];
            try {
                start.await();
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
            for (int i = 0; i < written.length; i++) {
                int page = mappedPage(rnd.nextInt(10_000));
                written[i] = page;
                devices[i % 2].write(VA + page * PAGE + 8L * (i % 500), b, 0, 8);
                done.incrementAndGet();
            }
        });
        writer.start();
        DirtyBitmap during;
        long before;
        try {
            start.await();
            before = done.get();
            during = dt.readAndClear(VA, WINDOW_PAGES * PAGE);
            long after = done.get();
            writer.join();
            ROUNDS.incrementAndGet();
            if (after != before && after != written.length) {
                OVERLAPS.incrementAndGet(); // writes completed while the read ran
            }
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
        TreeSet<Integer> union = pages(during);
        union.addAll(pages(dt.readAndClear(VA, WINDOW_PAGES * PAGE)));
        for (int page : written) {
            mark(model, page);
        }
        assertEquals(model, union, "the concurrent read and the one after it, against the model's pages and every page written");
        model.clear();
    }
}
