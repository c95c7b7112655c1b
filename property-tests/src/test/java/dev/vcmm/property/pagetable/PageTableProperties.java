package dev.vcmm.property.pagetable;

import dev.vcmm.ffm.FfmMemoryBackend;
import dev.vcmm.ffm.LockFreeBuddyAllocator;
import dev.vcmm.pagetable.AlreadyMappedException;
import dev.vcmm.pagetable.Attributes;
import dev.vcmm.pagetable.CachePolicy;
import dev.vcmm.pagetable.PageTable;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.PageTableFormats;
import dev.vcmm.pagetable.UnsupportedAttributeException;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.spi.MemorySpec;
import dev.vcmm.spi.PhysicalMemory;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.quicktheories.api.Pair;
import org.quicktheories.core.Gen;
import org.quicktheories.generators.Generate;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.quicktheories.QuickTheory.qt;
import static org.quicktheories.generators.SourceDSL.integers;
import static org.quicktheories.generators.SourceDSL.lists;

/**
 * Model-based property test of {@link PageTable} in every format: random map / unmap / partial unmap
 * sequences against a model (a sorted map of virtual ranges to physical ranges and attributes). After every
 * step the hardware walker, reading only the page-table memory, agrees with the model at the operation's
 * edges, at random addresses and inside random live mappings; a map over a live mapping fails and changes
 * nothing; unmap returns the bytes the model had mapped; and no table page leaks (the allocator's allocated
 * bytes equal the table bytes in use, and after a full unmap only the root is left).
 *
 * <p><b>Replay:</b> each case prints its seed; rerun with {@code -Dvcmm.seed=N}. 40 sequences per format by
 * default, 100x with {@code -Dvcmm.long=true}.
 */
class PageTableProperties {

    static final long PAGE = 4096;
    static final long WINDOW = 4L << 30;        // virtual and physical addresses used: [0, 4 GiB)
    static final long[] ALIGNS = {4L << 10, 64L << 10, 1L << 20, 2L << 20, 16L << 20, 32L << 20, 1L << 30};

    /** One operation; sizes and addresses are in pages and resolved against the window. */
    sealed interface Op {
        record Map(long vaPage, long pages, int align, boolean samePhase, long paPage, int attributes) implements Op { }

        record Unmap(long vaPage, long pages, int align) implements Op { }
    }

    /**
     * Every registered format, and sized variants whose geometry differs (a root at another level, a root of
     * concatenated tables, a narrower root): arm64 at 39-bit 4K, 36-bit 16K and 42-bit 64K, stage 2 at 32 and 44 bits.
     */
    static Stream<String> formats() {
        return Stream.concat(PageTableFormats.everyFormat().stream().map(PageTableFormat::name),
            Stream.of("arm64-4k-va39", "arm64-16k-va36", "arm64-64k-va42", "arm64-s2-4k-ipa32", "arm64-s2-4k-ipa44"));
    }

    static boolean longRun() {
        return Boolean.getBoolean("vcmm.long");
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("formats")
    void shouldAgreeWithTheModelAfterEveryStep(String formatName) {
        check(formatName, WINDOW, "");
    }

    /**
     * The same in a 4 MiB window with many one-page operations: most of them find their last-level table in
     * the walk cache and take the mapper's one-page fast path, with the attributes changing under it.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("formats")
    void shouldAgreeWithTheModelInAWarmTable(String formatName) {
        check(formatName, WARM_WINDOW, "warm ");
    }

    static void check(String formatName, long window, String label) {
        PageTableFormat format = PageTableFormats.byName(formatName);
        long seed = Long.getLong("vcmm.seed", System.nanoTime());
        int examples = longRun() ? 4000 : 40;
        System.out.printf("PageTableProperties %s%s seed=%d examples=%d (replay: -Dvcmm.seed=%d)%n", label, formatName, seed, examples, seed);
        List<Attributes> supported = supportedAttributes(format);
        qt().withFixedSeed(seed).withExamples(examples).withShrinkCycles(200)
            .forAll(operations(window))
            .checkAssert(ops -> run(format, supported, ops, window));
    }

    static final long WARM_WINDOW = 4L << 20;

    static Gen<List<Op>> operations(long window) {
        Gen<Long> page = integers().between(0, (int) (window / PAGE) - 1).map(Integer::longValue);
        boolean warm = window == WARM_WINDOW;
        Gen<Long> pages = warm
            ? Generate.frequency(List.of(
                Pair.of(8, Generate.constant(1L)),
                Pair.of(2, integers().between(1, 64).map(Integer::longValue)),
                Pair.of(1, Generate.pick(List.of(16L, 256L, 512L)))))
            : Generate.frequency(List.of(
                Pair.of(5, integers().between(1, 16).map(Integer::longValue)),
                Pair.of(3, integers().between(1, 1024).map(Integer::longValue)),
                Pair.of(2, Generate.pick(List.of(16L, 256L, 512L, 4096L, 8192L))),
                Pair.of(1, Generate.pick(List.of(262144L, 270000L)))));
        Gen<Integer> align = Generate.range(0, ALIGNS.length - 1);
        Gen<Op> map = page.zip(pages, align, integers().between(0, 9), (v, n, a, phase) ->
            new long[] {v, n, a, phase}).zip(page, integers().between(0, 63), (x, p, attrs) ->
            (Op) new Op.Map(x[0], x[1], (int) x[2], x[3] < 8, p, attrs));
        Gen<Op> unmap = page.zip(pages, align, (v, n, a) -> (Op) new Op.Unmap(v, n, a));
        Gen<Op> op = Generate.frequency(List.of(Pair.of(6, map), Pair.of(4, unmap)));
        return lists().of(op).ofSizeBetween(1, (longRun() ? 120 : 60) * (warm ? 3 : 1));
    }

    static List<Attributes> supportedAttributes(PageTableFormat format) {
        List<Attributes> all = new ArrayList<>();
        for (CachePolicy c : CachePolicy.values()) {
            for (int bits = 0; bits < 16; bits++) {
                Attributes a = new Attributes((bits & 1) != 0, (bits & 2) != 0, (bits & 4) != 0, (bits & 8) != 0, c);
                try {
                    format.checkAttributes(a);
                    all.add(a);
                } catch (UnsupportedAttributeException expected) {
                    // not expressible in this format
                }
            }
        }
        return all;
    }

    /** The model: start -> [end, pa, attributes] of disjoint virtual ranges. */
    record Seg(long start, long end, long pa, Attributes attributes) { }

    static void run(PageTableFormat format, List<Attributes> supported, List<Op> ops, long window) {
        MemorySpec spec = new MemorySpec("pt", 0x2000_0000L, 64L << 20, false, 12, 0);
        try (PhysicalMemory memory = new FfmMemoryBackend().openMemory(spec);
             LockFreeBuddyAllocator allocator = LockFreeBuddyAllocator.create(spec)) {
            PageTable table = PageTable.create(format, memory, allocator);
            TreeMap<Long, Seg> model = new TreeMap<>();
            Random rnd = new Random(ops.hashCode());
            List<String> trace = new ArrayList<>();
            for (Op op : ops) {
                trace.add(op.toString());
                long[] range = apply(table, model, supported, op, trace, window);
                check(table, model, range[0], range[1], rnd, trace, window);
                assertEquals(table.heldBytes(), allocator.stats().allocatedBytes(), "table memory held == allocated");
                if (format.tableBytes(format.levels() - 1) >= PAGE && format.tableBytes(0) >= PAGE) { // no slab page
                    assertEquals(table.tableBytes(), table.heldBytes(), "whole-page tables: held == in use");
                }
            }
            long expected = model.values().stream().mapToLong(s -> s.end() - s.start()).sum();
            long half = 1L << (format.vaBits() - 1);
            long unmapped = format.isValidVa(-1L) ? table.unmap(0, half) + table.unmap(-half, half) : table.unmap(0, 1L << format.vaBits());
            assertEquals(expected, unmapped, "a full unmap returns every mapped byte");
            assertEquals(1, table.tableCount(), "only the root is left");
            assertEquals(format.tableBytes(0), table.tableBytes(), "only the root's bytes are in use");
            assertEquals(table.heldBytes(), allocator.stats().allocatedBytes(), () -> "no table page leaked: " + allocator.stats());
            assertTrue(table.heldBytes() <= format.tableBytes(0) + PAGE, "at most one spare slab page besides the root");
            table.close();
            assertEquals(0, allocator.stats().allocatedBytes());
        }
    }

    /** Applies {@code op} to the table and the model. @return the virtual range it touched */
    static long[] apply(PageTable table, TreeMap<Long, Seg> model, List<Attributes> supported, Op op, List<String> trace,
                        long window) {
        switch (op) {
            case Op.Map m -> {
                long align = ALIGNS[m.align()];
                long unit = unit(table);
                long va = (m.vaPage() * PAGE) & -align & -unit;
                long length = Math.min(roundUp(m.pages() * PAGE, unit), window - va);
                long pa = (m.paPage() * PAGE) & -align & -unit;
                if (!m.samePhase()) {
                    pa += unit; // different phase: only small leaves fit
                }
                pa = Math.min(pa, window - length);
                Attributes a = supported.get(m.attributes() % supported.size());
                boolean overlaps = overlaps(model, va, va + length);
                try {
                    table.map(va, pa, length, a);
                    if (overlaps) {
                        fail("map over a live mapping succeeded: " + trace);
                    }
                    model.put(va, new Seg(va, va + length, pa, a));
                } catch (AlreadyMappedException e) {
                    if (!overlaps) {
                        throw new AssertionError("map refused a free range (" + e.getMessage() + ") after " + trace, e);
                    }
                }
                return new long[] {va, va + length};
            }
            case Op.Unmap u -> {
                long align = ALIGNS[u.align()];
                long unit = unit(table);
                long va = (u.vaPage() * PAGE) & -align & -unit;
                long length = Math.min(roundUp(u.pages() * PAGE, unit), window - va);
                long expected = removeFromModel(model, va, va + length);
                assertEquals(expected, table.unmap(va, length), () -> "bytes unmapped after " + trace);
                return new long[] {va, va + length};
            }
        }
    }

    /**
     * @return the format's smallest page: operations are generated in 4 KiB units and rounded to it, so 16 KiB and
     * 64 KiB granules see the same shapes of sequence
     */
    static long unit(PageTable table) {
        return Math.max(PAGE, table.format().leafSizes().getLast().size());
    }

    static long roundUp(long bytes, long unit) {
        return (bytes + unit - 1) & -unit;
    }

    static boolean overlaps(TreeMap<Long, Seg> model, long start, long end) {
        Map.Entry<Long, Seg> before = model.lowerEntry(end);
        return before != null && before.getValue().end() > start;
    }

    static long removeFromModel(TreeMap<Long, Seg> model, long start, long end) {
        long removed = 0;
        for (Map.Entry<Long, Seg> e = model.lowerEntry(end); e != null && e.getValue().end() > start; e = model.lowerEntry(end)) {
            Seg s = model.remove(e.getKey());
            long cutStart = Math.max(s.start(), start);
            long cutEnd = Math.min(s.end(), end);
            removed += cutEnd - cutStart;
            if (s.start() < cutStart) {
                model.put(s.start(), new Seg(s.start(), cutStart, s.pa(), s.attributes()));
            }
            if (cutEnd < s.end()) {
                model.put(cutEnd, new Seg(cutEnd, s.end(), s.pa() + (cutEnd - s.start()), s.attributes()));
            }
            if (s.start() < cutStart) {
                break; // everything further left ends before start
            }
        }
        return removed;
    }

    static void check(PageTable table, TreeMap<Long, Seg> model, long start, long end, Random rnd, List<String> trace,
                      long window) {
        List<Long> probes = new ArrayList<>(List.of(start, start + 42, end - 1, end, start - 1));
        for (int i = 0; i < 8; i++) {
            probes.add((rnd.nextLong() >>> 1) % window);
        }
        if (!model.isEmpty()) {
            Seg[] segs = model.values().toArray(new Seg[0]);
            for (int i = 0; i < 6; i++) {
                Seg s = segs[rnd.nextInt(segs.length)];
                probes.add(s.start() + (rnd.nextLong() >>> 1) % (s.end() - s.start()));
                probes.add(s.end() - 1);
            }
        }
        for (long va : probes) {
            if (va < 0 || va >= window) {
                continue;
            }
            Map.Entry<Long, Seg> e = model.floorEntry(va);
            WalkResult r = table.translate(va);
            if (e == null || e.getValue().end() <= va) {
                assertTrue(r instanceof WalkResult.PageFault, () -> "0x" + Long.toHexString(va) + " should be unmapped, walker: " + r + " after " + trace);
            } else {
                Seg s = e.getValue();
                if (!(r instanceof WalkResult.Translation t)) {
                    throw new AssertionError("0x" + Long.toHexString(va) + " should map to 0x" + Long.toHexString(s.pa() + va - s.start())
                        + ", walker: " + r + " after " + trace);
                }
                assertEquals(s.pa() + (va - s.start()), t.pa(), () -> "0x" + Long.toHexString(va) + " after " + trace);
                assertEquals(s.attributes(), t.attributes(), () -> "attributes at 0x" + Long.toHexString(va) + " after " + trace);
            }
        }
    }
}
