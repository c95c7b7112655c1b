package dev.vcmm.property.space;

import dev.vcmm.space.AddressSpaceAllocator;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.quicktheories.api.Pair;
import org.quicktheories.core.Gen;
import org.quicktheories.generators.Generate;

import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;

import static dev.vcmm.space.AddressSpaceAllocator.NONE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.quicktheories.QuickTheory.qt;
import static org.quicktheories.generators.SourceDSL.integers;
import static org.quicktheories.generators.SourceDSL.lists;

/**
 * Model-based property test of {@link AddressSpaceAllocator}: random sequences of allocate (with alignment),
 * allocateAt, free of a live allocation (whole or part), free of an arbitrary range (often a double free) and
 * bad input, run against the allocator and a model, a {@link BitSet} of allocated granules whose first fit is
 * found by a linear scan. After every step: allocations never overlap and are aligned and inside the space;
 * {@code freeBytes + allocatedBytes == length}; free bytes, the number of maximal free runs and the longest run
 * equal the model's; and a probe allocation returns exactly the model's first fit (or {@link
 * AddressSpaceAllocator#NONE} when the model has none). Errors change nothing.
 *
 * <p>Four spaces: one at an odd granule near zero (so alignment is absolute, not relative to the start), one
 * ending exactly at {@code 2^64}, one at an odd granule near the top, and the x86-64 upper half's start with a
 * 64 KiB granule.
 *
 * <p><b>Replay:</b> each case prints its seed; rerun with {@code -Dvcmm.seed=N}. 300 sequences per space by
 * default, 100x with {@code -Dvcmm.long=true}.
 */
class AddressSpaceAllocatorProperties {

    static final int MAX_ALIGN_SHIFT = 9;

    /** A space of {@code granules} granules of {@code granule} bytes from {@code start}. */
    record Space(String name, long start, int granules, long granule) {
        long address(long index) {
            return start + index * granule;
        }

        @Override
        public String toString() {
            return name;
        }
    }

    /** One operation, in granules; a live allocation is picked by index from the live state. */
    sealed interface Op {
        record Allocate(int granules, int alignShift) implements Op { }

        record AllocateAt(int index, int granules) implements Op { }

        record FreeLive(int pick, boolean whole, int from, int count) implements Op { }

        record FreeRange(int index, int granules) implements Op { }

        record BadInput(int kind, int index) implements Op { }
    }

    static Stream<Space> spaces() {
        long k4 = 4096;
        return Stream.of(
            new Space("low-odd", 3 * k4, 256, k4),
            new Space("ends-at-2^64", -256 * k4, 256, k4),
            new Space("top-odd", -300 * k4, 256, k4),
            new Space("upper-half-64K", 0xffff_8000_0000_0000L, 512, 64 * 1024));
    }

    static boolean longRun() {
        return Boolean.getBoolean("vcmm.long");
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("spaces")
    void shouldAgreeWithTheModelAfterEveryStep(Space space) {
        long seed = Long.getLong("vcmm.seed", System.nanoTime());
        int examples = longRun() ? 30_000 : 300;
        System.out.printf("AddressSpaceAllocatorProperties %s seed=%d examples=%d (replay: -Dvcmm.seed=%d)%n", space, seed, examples, seed);
        qt().withFixedSeed(seed).withExamples(examples)
            .forAll(operations(space.granules()))
            .checkAssert(ops -> run(space, ops));
    }

    static Gen<List<Op>> operations(int granules) {
        Gen<Integer> index = integers().between(0, granules - 1);
        Gen<Integer> length = Generate.frequency(List.of(
            Pair.of(6, integers().between(1, 4)),
            Pair.of(3, integers().between(1, 32)),
            Pair.of(1, integers().between(1, granules + 8))));
        Gen<Integer> alignShift = Generate.frequency(List.of(
            Pair.of(4, Generate.constant(0)),
            Pair.of(4, integers().between(1, 4)),
            Pair.of(1, integers().between(5, MAX_ALIGN_SHIFT))));
        Gen<Op> allocate = length.zip(alignShift, (n, a) -> (Op) new Op.Allocate(n, a));
        Gen<Op> allocateAt = index.zip(length, (i, n) -> (Op) new Op.AllocateAt(i, n));
        Gen<Op> freeLive = integers().between(0, 1000).zip(integers().between(0, 3), integers().between(0, 1000),
            (pick, whole, cut) -> (Op) new Op.FreeLive(pick, whole != 0, cut % 37, cut / 37));
        Gen<Op> freeRange = index.zip(length, (i, n) -> (Op) new Op.FreeRange(i, n));
        Gen<Op> bad = integers().between(0, 7).zip(index, (k, i) -> (Op) new Op.BadInput(k, i));
        Gen<Op> op = Generate.frequency(List.of(
            Pair.of(5, allocate), Pair.of(2, allocateAt), Pair.of(4, freeLive), Pair.of(1, freeRange), Pair.of(1, bad)));
        return lists().of(op).ofSizeBetween(1, longRun() ? 150 : 80);
    }

    // ---------------------------------------------------------------------------------------------------

    /** The model: allocated granules, and the live allocations (index -> granules) to pick from. */
    static final class Model {
        final Space space;
        final BitSet allocated = new BitSet();
        final TreeMap<Integer, Integer> live = new TreeMap<>();

        Model(Space space) {
            this.space = space;
        }

        boolean allFree(int index, int granules) {
            int next = allocated.nextSetBit(index);
            return next < 0 || next >= index + granules;
        }

        boolean allAllocated(int index, int granules) {
            return allocated.nextClearBit(index) >= index + granules;
        }

        /** First-fit index of {@code granules} granules aligned to {@code alignment} bytes, or -1. */
        int firstFit(int granules, long alignment) {
            for (int runStart = allocated.nextClearBit(0); runStart < space.granules(); ) {
                int runEnd = allocated.nextSetBit(runStart);
                if (runEnd < 0 || runEnd > space.granules()) {
                    runEnd = space.granules();
                }
                long pad = (-space.address(runStart) & (alignment - 1)) / space.granule();
                if (runStart + pad + granules <= runEnd) {
                    return (int) (runStart + pad);
                }
                runStart = runEnd >= space.granules() ? space.granules() : allocated.nextClearBit(runEnd);
            }
            return -1;
        }

        void reserve(int index, int granules) {
            assertTrue(allFree(index, granules), "overlapping allocation");
            allocated.set(index, index + granules);
            live.put(index, granules);
        }

        /** Frees granules that are all allocated, trimming or splitting the live allocations they cut. */
        void release(int index, int granules) {
            int end = index + granules;
            allocated.clear(index, end);
            for (Map.Entry<Integer, Integer> e = live.lowerEntry(end); e != null && e.getKey() + e.getValue() > index; e = live.lowerEntry(end)) {
                int s = e.getKey();
                int t = s + e.getValue();
                live.remove(s);
                if (s < index) {
                    live.put(s, index - s);
                }
                if (end < t) {
                    live.put(end, t - end);
                }
                if (s < index) {
                    break;
                }
            }
        }

        int freeRuns() {
            int runs = 0;
            for (int i = allocated.nextClearBit(0); i < space.granules(); ) {
                runs++;
                int end = allocated.nextSetBit(i);
                if (end < 0) {
                    break;
                }
                i = allocated.nextClearBit(end);
            }
            return runs;
        }

        int largestRun() {
            int largest = 0;
            for (int i = allocated.nextClearBit(0); i < space.granules(); ) {
                int end = allocated.nextSetBit(i);
                end = end < 0 ? space.granules() : end;
                largest = Math.max(largest, end - i);
                i = allocated.nextClearBit(end);
            }
            return largest;
        }
    }

    static void run(Space space, List<Op> ops) {
        AddressSpaceAllocator allocator = new AddressSpaceAllocator(space.start(), space.granules() * space.granule(), space.granule());
        Model model = new Model(space);
        List<String> trace = new ArrayList<>();
        for (Op op : ops) {
            trace.add(op.toString());
            apply(allocator, model, op, trace);
            check(allocator, model, op, trace);
        }
        for (Map.Entry<Integer, Integer> e : List.copyOf(model.live.entrySet())) {
            allocator.free(space.address(e.getKey()), e.getValue() * space.granule());
        }
        assertEquals(1, allocator.freeRangeCount(), "everything freed leaves one range");
        assertTrue(allocator.isFree(space.start(), allocator.length()), "everything freed leaves the whole space");
    }

    static void apply(AddressSpaceAllocator allocator, Model model, Op op, List<String> trace) {
        Space space = model.space;
        long g = space.granule();
        switch (op) {
            case Op.Allocate a -> {
                long alignment = g << a.alignShift();
                int expected = model.firstFit(a.granules(), alignment);
                long got = allocator.allocate(a.granules() * g, alignment);
                assertEquals(expected < 0 ? NONE : space.address(expected), got, () -> "first fit after " + trace);
                if (got != NONE) {
                    assertEquals(0, got & (alignment - 1), "aligned");
                    model.reserve(expected, a.granules());
                }
            }
            case Op.AllocateAt a -> {
                long address = space.address(a.index());
                long length = a.granules() * g;
                if (a.index() + a.granules() > space.granules()) {
                    expectIllegalArgument(allocator, () -> allocator.allocateAt(address, length), trace);
                } else {
                    boolean free = model.allFree(a.index(), a.granules());
                    assertEquals(free, allocator.isFree(address, length), () -> "isFree after " + trace);
                    assertEquals(free, allocator.allocateAt(address, length), () -> "allocateAt after " + trace);
                    if (free) {
                        model.reserve(a.index(), a.granules());
                    }
                }
            }
            case Op.FreeLive f -> {
                if (model.live.isEmpty()) {
                    return;
                }
                List<Integer> starts = new ArrayList<>(model.live.keySet());
                int index = starts.get(f.pick() % starts.size());
                int granules = model.live.get(index);
                if (!f.whole()) {
                    int from = f.from() % granules;
                    index += from;
                    granules = 1 + f.count() % (granules - from);
                }
                allocator.free(space.address(index), granules * g);
                model.release(index, granules);
            }
            case Op.FreeRange f -> {
                long address = space.address(f.index());
                long length = f.granules() * g;
                if (f.index() + f.granules() > space.granules()) {
                    expectIllegalArgument(allocator, () -> allocator.free(address, length), trace);
                } else if (model.allAllocated(f.index(), f.granules())) {
                    allocator.free(address, length);
                    model.release(f.index(), f.granules());
                } else {
                    String before = allocator.toString();
                    assertThrows(IllegalStateException.class, () -> allocator.free(address, length), () -> "double free after " + trace);
                    assertEquals(before, allocator.toString(), "a refused free changes nothing");
                }
            }
            case Op.BadInput b -> {
                long address = space.address(b.index());
                long end = space.start() + space.granules() * g; // 0 for a space ending at 2^64
                Runnable call = switch (b.kind()) {
                    case 0 -> () -> allocator.allocateAt(address + 512, g);
                    case 1 -> () -> allocator.free(address, g + 512);
                    case 2 -> () -> allocator.isFree(address, 0);
                    case 3 -> () -> allocator.allocateAt(space.start() - g, g);
                    case 4 -> () -> allocator.free(end, g);
                    case 5 -> () -> allocator.allocateAt(address, Long.MAX_VALUE & -g);   // wraps or runs past the end
                    case 6 -> () -> allocator.allocate(g, g >>> 1);
                    default -> () -> allocator.allocate(-g, g);
                };
                expectIllegalArgument(allocator, call::run, trace);
            }
        }
    }

    static void expectIllegalArgument(AddressSpaceAllocator allocator, org.junit.jupiter.api.function.Executable call, List<String> trace) {
        String before = allocator.toString();
        assertThrows(IllegalArgumentException.class, call, () -> "bad input accepted after " + trace);
        assertEquals(before, allocator.toString(), "bad input changes nothing");
    }

    static void check(AddressSpaceAllocator allocator, Model model, Op op, List<String> trace) {
        Space space = model.space;
        long g = space.granule();
        int freeGranules = space.granules() - model.allocated.cardinality();
        assertEquals(freeGranules * g, allocator.freeBytes(), () -> "freeBytes after " + trace);
        assertEquals(allocator.length(), allocator.freeBytes() + allocator.allocatedBytes(), "free + allocated == length");
        assertEquals(model.freeRuns(), allocator.freeRangeCount(), () -> "freeRangeCount after " + trace);
        assertEquals(model.largestRun() * g, allocator.largestFreeRange(), () -> "largestFreeRange after " + trace);
        int previousEnd = -1;
        for (Map.Entry<Integer, Integer> e : model.live.entrySet()) {
            assertTrue(e.getKey() >= previousEnd && e.getKey() + e.getValue() <= space.granules(), "disjoint, inside the space");
            assertTrue(!allocator.isFree(space.address(e.getKey()), g), () -> "a live allocation reads as free after " + trace);
            previousEnd = e.getKey() + e.getValue();
        }
        // Probe: an allocation derived from the op must land on the model's first fit; free it back.
        int granules = 1 + Math.floorMod(op.hashCode(), 8);
        long alignment = g << Math.floorMod(op.hashCode() >>> 3, MAX_ALIGN_SHIFT + 1);
        int expected = model.firstFit(granules, alignment);
        String before = allocator.toString();
        long got = allocator.allocate(granules * g, alignment);
        assertEquals(expected < 0 ? NONE : space.address(expected), got, () -> "probe allocate(" + granules + " granules, align "
            + Long.toHexString(alignment) + ") after " + trace);
        if (got != NONE) {
            allocator.free(got, granules * g);
        }
        assertEquals(before, allocator.toString(), "probe allocate + free restores the state");
    }
}
