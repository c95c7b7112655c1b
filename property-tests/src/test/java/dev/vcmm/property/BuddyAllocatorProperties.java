package dev.vcmm.property;

import dev.vcmm.spi.AllocatorStats;
import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemorySpec;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.quicktheories.api.Pair;
import org.quicktheories.core.Gen;
import org.quicktheories.generators.Generate;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import java.util.stream.Stream;

import static org.quicktheories.QuickTheory.qt;
import static org.quicktheories.generators.SourceDSL.integers;
import static org.quicktheories.generators.SourceDSL.lists;

/**
 * Model-based property test of {@link BlockAllocator} buddy allocators against {@link BuddyModel}.
 *
 * <p>QuickTheories generates sequences of up to a few thousand {@link Op operations}, weighted towards
 * allocation and free; an operation that needs a live block names it by index modulo the live count,
 * so any sequence is meaningful against any state and the list shrinks freely. Each sequence runs on a
 * fresh allocator and a fresh model, and after <em>every</em> step the allocator's statistics are
 * checked against the model (see {@link Run#checkStats}). At the end everything is freed, the thread
 * cache released, and the pool must be fully coalesced: it hands out all its top-level blocks again,
 * largest first, until it is full.
 *
 * <p><b>Replay:</b> every case prints {@code seed=N}; QuickTheories' failure message repeats it
 * ({@code Seed was N}). Replay with
 * {@code mvn -q -pl property-tests -am verify -Dtest=BuddyAllocatorProperties -Dsurefire.failIfNoSpecifiedTests=false -Dvcmm.seed=N}
 * (add {@code -Dvcmm.long=true} if the failure came from a long run: the example count is part of the
 * replay). The failure shows the shrunk operation list and the resolved trace of its last steps.
 *
 * <p><b>Sizes:</b> 6 examples per case by default (CI on 2 cores), 100x with {@code -Dvcmm.long=true}.
 */
class BuddyAllocatorProperties {

    /** A pool shape: where it is, how big, and the requested max order. */
    record Shape(String name, long base, long size, int maxOrder) {
        @Override public String toString() {
            return name + "[0x" + Long.toHexString(base) + "+0x" + Long.toHexString(size) + ",max=" + maxOrder + "]";
        }
    }

    static final List<Shape> SHAPES = List.of(
        new Shape("pow2", 0x4000_0000L, 16L << 20, 10),
        new Shape("oddSize", 0x1_0000_0000L, 0xA3_5000L, 8),
        new Shape("misalignedBase", 0x8000_3000L, 8L << 20, 9),
        new Shape("smallMaxOrder", 0x20_0000L, 64 * 4096L, 2),
        new Shape("order0Only", 0x1000L, 33 * 4096L, 0),
        new Shape("tinyOdd", 0x7000L, 0x9000L, 5));

    static final int[] CACHE_CAPACITIES = {0, 8};

    static Stream<Arguments> cases() {
        return Arrays.stream(AllocatorKind.values()).flatMap(kind -> SHAPES.stream().flatMap(shape ->
            Arrays.stream(CACHE_CAPACITIES).mapToObj(cache -> Arguments.of(kind, shape, cache))));
    }

    @ParameterizedTest(name = "{0} {1} cache={2}")
    @MethodSource("cases")
    void shouldMatchBuddyModelAfterEveryOperation(AllocatorKind kind, Shape shape, int cacheCapacity) {
        long seed = Long.getLong("vcmm.seed", System.nanoTime());
        int examples = AllocatorKind.longRun() ? 600 : 6;
        System.out.printf("BuddyAllocatorProperties %s %s cache=%d seed=%d examples=%d (replay: -Dvcmm.seed=%d)%n",
            kind, shape, cacheCapacity, seed, examples, seed);
        java.util.Map<String, Long> coverage = new java.util.TreeMap<>();
        java.util.concurrent.atomic.AtomicReference<List<Op>> shortestFailure = new java.util.concurrent.atomic.AtomicReference<>();
        try {
            qt().withFixedSeed(seed)
                .withExamples(examples)
                .withShrinkCycles(100)
                .forAll(operations(shape.maxOrder()))
                .checkAssert(ops -> {
                    Run run = new Run(kind, shape, cacheCapacity, seed, coverage);
                    try {
                        run.execute(ops);
                    } catch (AssertionError e) {
                        List<Op> failing = run.failedAtStep > 0 ? ops.subList(0, run.failedAtStep) : ops;
                        shortestFailure.accumulateAndGet(List.copyOf(failing), (x, y) -> x == null || y.size() < x.size() ? y : x);
                        throw e;
                    }
                });
        } catch (AssertionError qtFailure) {
            throw minimized(kind, shape, cacheCapacity, seed, shortestFailure.get(), qtFailure);
        }
        System.out.println("  coverage " + coverage);
    }

    /**
     * QuickTheories shrinks the values inside a list far better than the list's length, so on failure the
     * shortest failing list it saw (cut after the failing step) is reduced further by delta debugging:
     * drop chunks of operations while the rest still fails. Index-based operations keep any sublist
     * meaningful.
     */
    private static AssertionError minimized(AllocatorKind kind, Shape shape, int cacheCapacity, long seed, List<Op> failing,
                                            AssertionError qtFailure) {
        if (failing == null) {
            return qtFailure;
        }
        java.util.function.Function<List<Op>, AssertionError> runIt = ops -> {
            try {
                new Run(kind, shape, cacheCapacity, seed, new java.util.HashMap<>()).execute(ops);
                return null;
            } catch (AssertionError e) {
                return e;
            }
        };
        long deadline = System.nanoTime() + 30_000_000_000L;
        List<Op> cur = new ArrayList<>(failing);
        int chunk = Math.max(1, cur.size() / 2);
        while (System.nanoTime() < deadline) {
            boolean removed = false;
            for (int i = 0; i + chunk <= cur.size() && System.nanoTime() < deadline; ) {
                List<Op> candidate = new ArrayList<>(cur.subList(0, i));
                candidate.addAll(cur.subList(i + chunk, cur.size()));
                if (runIt.apply(candidate) != null) {
                    cur = candidate;
                    removed = true;
                } else {
                    i += chunk;
                }
            }
            if (!removed) {
                if (chunk == 1) {
                    break;
                }
                chunk = Math.max(1, chunk / 2);
            }
        }
        AssertionError minimal = runIt.apply(cur);
        String qt = qtFailure.getMessage();
        if (qt != null && qt.length() > 4000) {
            qt = qt.substring(0, 4000) + "\n  ...";
        }
        AssertionError e = new AssertionError("minimal failing sequence (" + cur.size() + " ops, delta-debugged from "
            + failing.size() + "; seed=" + seed + ", replay with -Dvcmm.seed=" + seed + "):\n  "
            + cur.stream().map(Op::toString).collect(Collectors.joining("\n  "))
            + "\nfails with:\n" + (minimal == null ? "(flaky: the minimal sequence passed on rerun)" : minimal.getMessage())
            + "\n\nQuickTheories report:\n" + qt, qtFailure);
        return e;
    }

    // ------------------------------------------------------------------------------------------ operations

    /** Where a bad-input operation points. */
    enum BadKind { BELOW_BASE, AT_END, FAR_ABOVE, NOT_PAGE_ALIGNED, NOT_ORDER_ALIGNED, NEGATIVE_ORDER, ORDER_TOO_BIG }

    /** Which entry point a bad-input operation calls. */
    enum Entry { ALLOC, ALLOC_AT, FREE }

    /** One step of a scenario; indices are taken modulo whatever they index when the step runs. */
    sealed interface Op {
        record Alloc(int order) implements Op {
            @Override public String toString() { return "alloc(" + order + ")"; }
        }
        /** allocAt of the {@code slot}-th naturally aligned block of {@code order} in the pool. */
        record AllocAt(int slot, int order) implements Op {
            @Override public String toString() { return "allocAt(slot#" + slot + ", " + order + ")"; }
        }
        /** allocAt of the buddy of a live block, with the live block's order (fails iff the buddy is in use). */
        record AllocAtBuddy(int live) implements Op {
            @Override public String toString() { return "allocAtBuddyOf(live#" + live + ")"; }
        }
        record Free(int live) implements Op {
            @Override public String toString() { return "free(live#" + live + ")"; }
        }
        /** free of a live block with another order. */
        record FreeWrongOrder(int live, int delta) implements Op {
            @Override public String toString() { return "freeWrongOrder(live#" + live + ", +" + delta + ")"; }
        }
        /** free of a recently freed block that nothing live overlaps. */
        record DoubleFree(int freed) implements Op {
            @Override public String toString() { return "doubleFree(freed#" + freed + ")"; }
        }
        /** free of an aligned block in the pool that is not a live block of that order. */
        record FreeUnowned(int slot, int order) implements Op {
            @Override public String toString() { return "freeUnowned(slot#" + slot + ", " + order + ")"; }
        }
        record BadInput(Entry entry, BadKind kind, int slot, int order) implements Op {
            @Override public String toString() { return "bad(" + entry + ", " + kind + ", slot#" + slot + ", " + order + ")"; }
        }
        record ReleaseThreadCache() implements Op {
            @Override public String toString() { return "releaseThreadCache()"; }
        }
        record Stats() implements Op {
            @Override public String toString() { return "stats()"; }
        }
    }

    static Gen<List<Op>> operations(int maxOrder) {
        Gen<Integer> index = integers().between(0, 1 << 16);
        Gen<Integer> order = Generate.frequency(
            Pair.of(6, Generate.range(0, Math.min(2, maxOrder))),
            Pair.of(3, Generate.range(0, maxOrder)),
            Pair.of(1, Generate.constant(maxOrder)));
        Gen<Integer> anyOrder = Generate.range(0, maxOrder);
        Gen<Op> op = Generate.frequency(List.of(
            Pair.of(30, order.map(o -> (Op) new Op.Alloc(o))),
            Pair.of(26, index.map(i -> (Op) new Op.Free(i))),
            Pair.of(8, index.zip(order, (i, o) -> (Op) new Op.AllocAt(i, o))),
            Pair.of(6, index.map(i -> (Op) new Op.AllocAtBuddy(i))),
            Pair.of(3, index.zip(Generate.range(0, 30), (i, d) -> (Op) new Op.FreeWrongOrder(i, d))),
            Pair.of(4, index.map(i -> (Op) new Op.DoubleFree(i))),
            Pair.of(3, index.zip(anyOrder, (i, o) -> (Op) new Op.FreeUnowned(i, o))),
            Pair.of(3, Generate.enumValues(Entry.class).zip(Generate.enumValues(BadKind.class), index, anyOrder,
                (e, k, i, o) -> (Op) new Op.BadInput(e, k, i, o))),
            Pair.of(2, Generate.constant((Op) new Op.ReleaseThreadCache())),
            Pair.of(2, Generate.constant((Op) new Op.Stats()))));
        return lists().of(op).ofSizes(Generate.range(1, 5000, 1))
            .describedAs(ops -> ops.size() + " ops:\n" + IntStream.range(0, ops.size())
                .limit(200).mapToObj(i -> "  #" + i + " " + ops.get(i)).collect(Collectors.joining("\n"))
                + (ops.size() > 200 ? "\n  ..." : ""));
    }

    // ------------------------------------------------------------------------------------------ execution

    /** One scenario: a fresh allocator, a fresh model, the operations, the final full-coalescing check. */
    static final class Run {
        private final AllocatorKind kind;
        private final Shape shape;
        private final int cacheCapacity;
        private final long seed;
        private final ArrayDeque<String> trace = new ArrayDeque<>();
        private final List<long[]> recentlyFreed = new ArrayList<>();
        private BlockAllocator a;
        private BuddyModel m;
        private AllocatorStats last;
        private final java.util.Map<String, Long> coverage;
        private int step;
        /** The 1-based step that failed, 0 if the failure came after the operations (or none). */
        int failedAtStep;
        private boolean ending;

        Run(AllocatorKind kind, Shape shape, int cacheCapacity, long seed, java.util.Map<String, Long> coverage) {
            this.coverage = coverage;
            this.kind = kind;
            this.shape = shape;
            this.cacheCapacity = cacheCapacity;
            this.seed = seed;
        }

        void execute(List<Op> ops) {
            a = kind.create(new MemorySpec("prop", shape.base(), shape.size(), false, shape.maxOrder(), cacheCapacity));
            try {
                check(a.base() == shape.base() && a.size() == shape.size(), "base/size " + a.base() + "/" + a.size());
                int mo = a.maxOrder();
                check(mo <= shape.maxOrder() && mo >= largestFittingOrder(), "maxOrder()=" + mo + " for " + shape);
                m = new BuddyModel(shape.base(), shape.size(), mo);
                last = a.stats();
                checkStats("create");
                count("sequences");
                for (Op op : ops) {
                    count("ops");
                    step++;
                    apply(op);
                    checkStats(String.valueOf(op));
                }
                drainAndCheckCoalesced();
                closeAndCheck();
            } catch (RuntimeException e) {
                throw fail("unexpected " + e, e);
            } finally {
                if (!a.isClosed()) {
                    a.close();
                }
            }
        }

        private int largestFittingOrder() {
            int k = shape.maxOrder();
            while (k > 0) {
                long s = BlockAllocator.orderSize(k);
                if (((shape.base() + s - 1) & -s) + s <= shape.base() + shape.size()) {
                    break;
                }
                k--;
            }
            return k;
        }

        private void apply(Op op) {
            switch (op) {
                case Op.Alloc(int order) -> alloc(order, op);
                case Op.AllocAt(int slot, int order) -> {
                    if (order > m.maxOrder) {
                        expectRejected(op, () -> a.allocAt(shape.base(), order), IllegalArgumentException.class);
                    } else {
                        long pa = slotAddress(slot, order);
                        if (pa >= 0) {
                            allocAt(pa, order, op);
                        } else {
                            log(op + " skipped: no block of that order fits");
                        }
                    }
                }
                case Op.AllocAtBuddy(int live) -> {
                    if (m.liveCount() == 0) {
                        log(op + " skipped: nothing live");
                        return;
                    }
                    long[] b = m.liveAt(live);
                    int order = (int) b[1];
                    long buddy = b[0] ^ BlockAllocator.orderSize(order);
                    if (m.isValidBlock(buddy, order)) {
                        allocAt(buddy, order, op);
                    } else {
                        expectRejected(op, () -> a.allocAt(buddy, order), IllegalArgumentException.class);
                    }
                }
                case Op.Free(int live) -> {
                    if (m.liveCount() == 0) {
                        log(op + " skipped: nothing live");
                        return;
                    }
                    long[] b = m.liveAt(live);
                    a.free(b[0], (int) b[1]);
                    m.give(b[0], (int) b[1]);
                    log(op + " = free(" + BuddyModel.block(b[0], (int) b[1]) + ")");
                    count("free");
                    recentlyFreed.add(b);
                    if (recentlyFreed.size() > 64) {
                        recentlyFreed.remove(0);
                    }
                }
                case Op.FreeWrongOrder(int live, int delta) -> {
                    if (m.liveCount() == 0) {
                        log(op + " skipped: nothing live");
                        return;
                    }
                    long[] b = m.liveAt(live);
                    int wrong = (int) ((b[1] + 1 + delta % Math.max(1, m.maxOrder)) % (m.maxOrder + 2));
                    if (wrong == b[1]) {
                        wrong = m.maxOrder + 1;
                    }
                    final int w = wrong;
                    long s = BlockAllocator.orderSize(w);
                    if (w > m.maxOrder || (b[0] & (s - 1)) != 0) {
                        expectRejected(op, () -> a.free(b[0], w), IllegalArgumentException.class);
                    } else if (b[0] + s > m.end) {
                        // Aligned but sticking out of the pool: the contract does not say which of the two.
                        expectRejected(op, () -> a.free(b[0], w), IllegalArgumentException.class, IllegalStateException.class);
                    } else {
                        expectRejected(op, () -> a.free(b[0], w), IllegalStateException.class);
                    }
                }
                case Op.DoubleFree(int freed) -> {
                    if (recentlyFreed.isEmpty()) {
                        log(op + " skipped: nothing freed yet");
                        return;
                    }
                    long[] b = recentlyFreed.get(Math.floorMod(freed, recentlyFreed.size()));
                    if (m.overlapsLive(b[0], (int) b[1])) {
                        log(op + " skipped: " + BuddyModel.block(b[0], (int) b[1]) + " is in use again");
                        return;
                    }
                    expectRejected(op + " of " + BuddyModel.block(b[0], (int) b[1]), () -> a.free(b[0], (int) b[1]),
                        IllegalStateException.class);
                }
                case Op.FreeUnowned(int slot, int order) -> {
                    if (order > m.maxOrder) {
                        return;
                    }
                    long pa = slotAddress(slot, order);
                    if (pa < 0 || m.liveOrder(pa) == order) {
                        log(op + " skipped");
                        return;
                    }
                    expectRejected(op + " of " + BuddyModel.block(pa, order), () -> a.free(pa, order), IllegalStateException.class);
                }
                case Op.BadInput bad -> badInput(bad);
                case Op.ReleaseThreadCache() -> {
                    kind.releaseThreadCache(a);
                    AllocatorStats s = a.stats();
                    check(s.cachedBytes() == 0, "cachedBytes after releaseThreadCache: " + s);
                    log(op.toString());
                }
                case Op.Stats() -> {
                    AllocatorStats s1 = a.stats();
                    AllocatorStats s2 = a.stats();
                    check(s1.equals(s2), "two stats() in a row differ: " + s1 + " vs " + s2);
                    log(op + " = " + s1);
                }
            }
        }

        private void alloc(int order, Op op) {
            if (order > m.maxOrder) {
                expectRejected(op, () -> a.alloc(order), IllegalArgumentException.class);
                return;
            }
            long pa = a.alloc(order);
            log(op + " -> " + (pa == BlockAllocator.NONE ? "NONE" : BuddyModel.block(pa, order)));
            count(pa == BlockAllocator.NONE ? "allocNone" : "allocOk");
            if (pa == BlockAllocator.NONE) {
                if (cacheCapacity == 0) {
                    check(!m.hasFreeOfAtLeast(order), "alloc(" + order + ") returned NONE but the model has a free block of order >= "
                        + order + ": " + Arrays.toString(m.freeBlocksByOrder()));
                }
                long[] shared = a.stats().freeBlocksByOrder();
                for (int k = order; k < shared.length; k++) {
                    check(shared[k] == 0, "alloc(" + order + ") returned NONE but stats show a free block of order " + k + ": " + a.stats());
                }
                return;
            }
            acceptNewBlock(pa, order, "alloc(" + order + ")");
        }

        private void allocAt(long pa, int order, Op op) {
            boolean modelFree = m.isFree(pa, order);
            long cachedBefore = last.cachedBytes();
            boolean got = a.allocAt(pa, order);
            log(op + " = allocAt(" + BuddyModel.block(pa, order) + ") -> " + got);
            count(got ? "allocAtOk" : "allocAtFalse");
            if (cacheCapacity == 0 || cachedBefore == 0) {
                check(got == modelFree, "allocAt(" + BuddyModel.block(pa, order) + ") returned " + got + " but the model says "
                    + (modelFree ? "all free" : "in use by " + m.liveOverlapping(pa, order)));
            } else {
                check(!got || modelFree, "allocAt(" + BuddyModel.block(pa, order) + ") succeeded over live " + m.liveOverlapping(pa, order));
            }
            if (got) {
                acceptNewBlock(pa, order, "allocAt");
            }
        }

        /** The independent invariants of a returned block, then the model follows. */
        private void acceptNewBlock(long pa, int order, String what) {
            long s = BlockAllocator.orderSize(order);
            check((pa & (s - 1)) == 0, what + " returned 0x" + Long.toHexString(pa) + ", not aligned to 0x" + Long.toHexString(s));
            check(pa >= m.base && pa + s <= m.end, what + " returned " + BuddyModel.block(pa, order) + ", outside the pool");
            check(!m.overlapsLive(pa, order), what + " returned " + BuddyModel.block(pa, order) + ", overlapping live "
                + m.liveOverlapping(pa, order));
            m.take(pa, order);
        }

        private void badInput(Op.BadInput bad) {
            int order = Math.min(bad.order(), m.maxOrder);
            long s = BlockAllocator.orderSize(order);
            long inPool = slotAddress(bad.slot(), order);
            if (inPool < 0) {
                inPool = m.base;
                order = 0;
                s = BlockAllocator.PAGE_SIZE;
            }
            long pa;
            int o = order;
            switch (bad.kind()) {
                case BELOW_BASE -> pa = ((m.base - s) & -s);
                case AT_END -> pa = (m.end + s - 1) & -s;
                case FAR_ABOVE -> pa = ((m.end + (1L << 40)) & -s);
                case NOT_PAGE_ALIGNED -> pa = inPool + 0x800;
                case NOT_ORDER_ALIGNED -> {
                    if (order == 0) {
                        o = Math.min(1, m.maxOrder);
                    }
                    pa = (inPool & -BlockAllocator.orderSize(o)) + BlockAllocator.PAGE_SIZE;
                    if (o == 0) {
                        pa += 0x10;
                    }
                }
                case NEGATIVE_ORDER -> {
                    pa = inPool;
                    o = -1 - bad.order();
                }
                case ORDER_TOO_BIG -> {
                    pa = inPool;
                    o = m.maxOrder + 1 + bad.order();
                }
                default -> throw new IllegalStateException();
            }
            if (pa < 0 && bad.kind() == BadKind.BELOW_BASE) {
                pa = -s;
            }
            final long fpa = pa;
            final int fo = o;
            String what = bad + " = " + bad.entry() + "(0x" + Long.toHexString(fpa) + ", " + fo + ")";
            switch (bad.entry()) {
                case ALLOC -> {
                    int badOrder = bad.kind() == BadKind.NEGATIVE_ORDER || bad.kind() == BadKind.ORDER_TOO_BIG ? fo : -1;
                    expectRejected(what, () -> a.alloc(badOrder), IllegalArgumentException.class);
                }
                case ALLOC_AT -> expectRejected(what, () -> a.allocAt(fpa, fo), IllegalArgumentException.class);
                case FREE -> expectRejected(what, () -> a.free(fpa, fo), IllegalArgumentException.class);
            }
        }

        /** @return the {@code slot}-th (modulo) naturally aligned block of {@code order} inside the pool, or -1. */
        private long slotAddress(int slot, int order) {
            long s = BlockAllocator.orderSize(order);
            long first = (m.base + s - 1) & -s;
            if (first + s > m.end) {
                return -1;
            }
            long n = (m.end - first) / s;
            return first + Math.floorMod(slot, n) * s;
        }

        @SafeVarargs
        private void expectRejected(Object what, Runnable call, Class<? extends RuntimeException>... allowed) {
            AllocatorStats before = a.stats();
            RuntimeException thrown = null;
            try {
                call.run();
            } catch (RuntimeException e) {
                thrown = e;
            }
            log(what + " -> " + (thrown == null ? "no exception" : thrown.getClass().getSimpleName() + ": " + thrown.getMessage()));
            final RuntimeException t = thrown;
            count("rejected" + (t == null ? "None" : t.getClass().getSimpleName().replace("Exception", "")));
            check(t != null && Arrays.stream(allowed).anyMatch(c -> c == t.getClass()),
                what + " should throw " + Arrays.stream(allowed).map(Class::getSimpleName).collect(Collectors.joining(" or "))
                    + " but " + (t == null ? "returned normally" : "threw " + t));
            AllocatorStats after = a.stats();
            check(before.equals(after), what + " changed the stats: " + before + " -> " + after);
        }

        private void count(String what) {
            coverage.merge(what, 1L, Long::sum);
        }

        private void log(String line) {
            trace.addLast("#" + step + " " + line);
            if (trace.size() > 40) {
                trace.removeFirst();
            }
        }

        /** After every step: the stats are consistent in themselves and with the model. */
        void checkStats(String after) {
            AllocatorStats s = a.stats();
            last = s;
            long total = m.end - m.base;
            check(s.totalBytes() == total, "totalBytes " + s);
            check(s.freeBytes() >= 0 && s.cachedBytes() >= 0 && s.allocatedBytes() >= 0, "negative figure " + s);
            check(s.freeBytes() + s.cachedBytes() + s.allocatedBytes() == total, "free + cached + allocated != total: " + s);
            check(s.allocatedBytes() == m.liveBytes(), "allocatedBytes " + s.allocatedBytes() + " != live bytes " + m.liveBytes()
                + " (" + m.liveCount() + " live blocks): " + s);
            long[] byOrder = s.freeBlocksByOrder();
            long sum = 0;
            long largest = 0;
            for (int k = 0; k < byOrder.length; k++) {
                check(byOrder[k] >= 0, "negative count " + s);
                if (byOrder[k] != 0) {
                    check(k <= m.maxOrder, "free block of order " + k + " > maxOrder " + s);
                    sum += byOrder[k] * BlockAllocator.orderSize(k);
                    largest = BlockAllocator.orderSize(k);
                }
            }
            check(sum == s.freeBytes(), "sum of freeBlocksByOrder " + sum + " != freeBytes: " + s);
            check(largest == s.largestFreeBlock(), "largestFreeBlock != largest order with free blocks: " + s);
            if (cacheCapacity == 0) {
                check(s.cachedBytes() == 0, "cachedBytes with caching off: " + s);
            }
            if (s.cachedBytes() != 0) {
                count("stepsWithCache");
            }
            if (s.cachedBytes() == 0) {
                // Nothing parked: every page that is not live is in the shared pool, fully coalesced.
                check(Arrays.equals(pad(byOrder), pad(m.freeBlocksByOrder())),
                    "freeBlocksByOrder " + Arrays.toString(byOrder) + " != model " + Arrays.toString(m.freeBlocksByOrder()) + ": " + s);
                check(s.freeBytes() == m.freeBytes(), "freeBytes != model " + m.freeBytes() + ": " + s);
                check(s.largestFreeBlock() == m.largestFreeBlock(), "largestFreeBlock != model " + m.largestFreeBlock() + ": " + s);
            }
        }

        private static long[] pad(long[] a) {
            return Arrays.copyOf(a, BlockAllocator.PAGE_SHIFT + 64);
        }

        private void drainAndCheckCoalesced() {
            ending = true;
            step++;
            log("-- end: free all " + m.liveCount() + " live blocks");
            while (m.liveCount() > 0) {
                long[] b = m.liveAt(m.liveCount() - 1);
                a.free(b[0], (int) b[1]);
                m.give(b[0], (int) b[1]);
            }
            kind.releaseThreadCache(a);
            checkStats("free all + releaseThreadCache");
            AllocatorStats s = a.stats();
            long[] canonical = BuddyModel.canonicalFreeBlocks(shape.base(), shape.size(), m.maxOrder);
            check(s.freeBytes() == s.totalBytes() && s.allocatedBytes() == 0 && s.cachedBytes() == 0, "not all free at the end: " + s);
            check(Arrays.equals(pad(s.freeBlocksByOrder()), pad(canonical)), "not fully coalesced at the end: " + s
                + ", expected " + Arrays.toString(canonical));
            // The pool hands out every top-level block again, largest first, until it is full.
            for (int k = m.maxOrder; k >= 0; k--) {
                for (long i = 0; i < canonical[k]; i++) {
                    long pa = a.alloc(k);
                    log("refill alloc(" + k + ") -> " + (pa == BlockAllocator.NONE ? "NONE" : BuddyModel.block(pa, k)));
                    check(pa != BlockAllocator.NONE, "after freeing everything, alloc(" + k + ") #" + i + " of " + canonical[k]
                        + " failed: not fully coalesced; " + a.stats());
                    acceptNewBlock(pa, k, "refill alloc(" + k + ")");
                }
                check(a.alloc(k) == BlockAllocator.NONE, "alloc(" + k + ") succeeded beyond the pool's " + canonical[k] + " blocks");
            }
            AllocatorStats full = a.stats();
            check(full.freeBytes() == 0 && full.allocatedBytes() == full.totalBytes(), "pool not full after refill: " + full);
        }

        private void closeAndCheck() {
            a.close();
            check(a.isClosed(), "isClosed() after close()");
            a.close();
            expectClosed("alloc", () -> a.alloc(0));
            expectClosed("allocAt", () -> a.allocAt(m.base, 0));
            expectClosed("free", () -> a.free(m.base, 0));
            expectClosed("stats", () -> a.stats());
        }

        private void expectClosed(String what, Runnable call) {
            try {
                call.run();
            } catch (IllegalStateException e) {
                return;
            }
            throw fail(what + " after close() did not throw IllegalStateException", null);
        }

        private void check(boolean ok, String message) {
            if (!ok) {
                throw fail(message, null);
            }
        }

        private AssertionError fail(String message, Throwable cause) {
            if (failedAtStep == 0 && step > 0 && m != null && !ending) {
                failedAtStep = step;
            }
            if (cause instanceof AssertionError ae && ae.getMessage() != null && ae.getMessage().contains("\nseed=")) {
                return ae;
            }
            AssertionError e = new AssertionError(message + "\nseed=" + seed + " subject=" + kind + " pool=" + shape
                + " cache=" + cacheCapacity + " step=" + step + " live=" + (m == null ? 0 : m.liveCount())
                + "\nlast steps:\n  " + String.join("\n  ", trace), cause);
            return e;
        }
    }
}
