package dev.vcmm.pagetable;

import dev.vcmm.heap.HeapPhysicalMemory;
import dev.vcmm.spi.PhysicalMemory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The conformance suite every format passes, in the spirit of the Linux io-pgtable self-tests: an empty
 * table translates nothing; every leaf size maps; an overlapping map fails and changes nothing;
 * translate(va + 42) == pa + 42; a full unmap returns the size and frees the tables; the largest leaf at the
 * top of the input space maps and unmaps; partial unmap of every block size splits correctly and hitlessly.
 * Subclasses name the format (three lines each).
 */
public abstract class PageTableConformanceTest {

    static final long PT_BASE = 0x4000_0000L;
    static final long PT_SIZE = 64L << 20;

    protected abstract PageTableFormat format();

    PhysicalMemory memory;
    TestBlockAllocator allocator;
    PageTable table;
    PageTableFormat f;

    @BeforeEach
    void open() {
        f = format();
        memory = HeapPhysicalMemory.create(PT_BASE, PT_SIZE);
        allocator = new TestBlockAllocator(PT_BASE, PT_SIZE);
        table = PageTable.create(f, memory, allocator);
    }

    @AfterEach
    void closeTable() {
        table.close();
        assertEquals(0, allocator.usedBytes(), "closing the table returns every table page");
        memory.close();
    }

    /** A physical address that every leaf size can map to and that the format can encode. */
    long paFor(LeafSize leaf) {
        long largest = f.leafSizes().getFirst().size();
        long pa = Math.min(largest * 3, 1L << (f.paBits() - 2));
        return (pa & -leaf.size()) + leaf.size() * 5;
    }

    /** A virtual address in the low part of the space where every leaf size fits. */
    long vaFor(LeafSize leaf) {
        return spaceBase() + leaf.size() * 7;
    }

    /** The lowest input address of the space the tests use: 0, or the bottom of an upper-half-only space. */
    long spaceBase() {
        return f.isValidVa(0) ? 0 : -(1L << f.vaBits());
    }

    Attributes rw() {
        return Attributes.RW;
    }

    long minLeaf() {
        return f.leafSizes().getLast().size();
    }

    @Test
    void shouldTranslateNothingWhenEmpty() {
        Random rnd = new Random(1);
        for (int i = 0; i < 200; i++) {
            long va = (rnd.nextLong() >>> (64 - f.vaBits())) & -4096L;
            WalkResult r = table.translate(va);
            assertInstanceOf(WalkResult.PageFault.class, r, () -> "empty table translated " + r);
        }
        assertEquals(1, table.tableCount());
    }

    @Test
    void shouldMapAndUnmapEveryLeafSize() {
        for (LeafSize leaf : f.leafSizes()) {
            long va = vaFor(leaf);
            long pa = paFor(leaf);
            assertEquals(leaf.size(), table.map(va, pa, leaf.size(), rw()), leaf::toString);
            WalkResult.Translation t = assertInstanceOf(WalkResult.Translation.class, table.translate(va + 42), leaf::toString);
            assertEquals(pa + 42, t.pa(), leaf::toString);
            assertEquals(leaf.size(), t.leafSize(), () -> "a " + leaf + " mapping uses one leaf of that size");
            assertEquals(leaf.level(), t.level());
            assertEquals(pa + leaf.size() - 1, ((WalkResult.Translation) table.translate(va + leaf.size() - 1)).pa());
            assertFalse(table.translate(va + leaf.size()).isMapped(), "the next byte is not mapped");
            assertFalse(table.translate(va - 1).isMapped(), "the byte before is not mapped");
            assertEquals(leaf.size(), table.unmap(va, leaf.size()), leaf::toString);
            assertFalse(table.translate(va + 42).isMapped(), leaf::toString);
        }
    }

    @Test
    void shouldRefuseAnOverlappingMapAndChangeNothing() {
        LeafSize big = f.leafSizes().get(f.leafSizes().size() > 2 ? 2 : 0);
        long va = vaFor(big);
        long pa = paFor(big);
        table.map(va, pa, big.size(), rw());
        long tables = table.tableCount();
        AlreadyMappedException e = assertThrows(AlreadyMappedException.class,
            () -> table.map(va - minLeaf() * 4, pa + big.size() * 2, minLeaf() * 8, rw()));
        assertEquals(va, e.va());
        assertFalse(table.translate(va - minLeaf() * 4).isMapped(), "the part mapped before the conflict was rolled back");
        assertEquals(pa, ((WalkResult.Translation) table.translate(va)).pa(), "the live mapping is untouched");
        assertTrue(table.tableCount() >= tables);
        assertEquals(big.size(), table.unmap(va - minLeaf() * 4, big.size() + minLeaf() * 8));
    }

    @Test
    void shouldMapALargeMixedRangeWithTheLargestLeaves() {
        LeafSize largest = f.leafSizes().getFirst();
        // starts one small leaf past an alignment boundary so every size shows up on the way up and down
        long va = spaceBase() + largest.size() * 2 + minLeaf();
        long pa = paFor(largest) + minLeaf();
        long length = largest.size() * 2 - 2 * minLeaf();
        table.map(va, pa, length, rw());
        java.util.Set<Long> sizes = new java.util.TreeSet<>();
        for (long off = 0; off < length; ) {
            WalkResult.Translation t = (WalkResult.Translation) table.translate(va + off);
            assertEquals(pa + off, t.pa());
            assertEquals(0, (va + off) % t.leafSize() == 0 ? 0 : (va + off) % t.leafSize() % 1, "aligned leaf");
            sizes.add(t.leafSize());
            off += t.leafSize() - ((va + off) & (t.leafSize() - 1));
        }
        for (LeafSize leaf : f.leafSizes()) {
            if (leaf.size() < largest.size()) {
                assertTrue(sizes.contains(leaf.size()), () -> "used " + sizes + ", expected " + leaf);
            }
        }
        assertEquals(length, table.unmap(va, length));
        assertEquals(0, unmapAll());
        assertEquals(1, table.tableCount(), "tables of fully unmapped spans are freed");
    }

    @Test
    void shouldMapABlockOverTablesThatPartialUnmapsLeftEmpty() {
        LeafSize largest = f.leafSizes().getFirst();
        long va = vaFor(largest);
        table.map(va + largest.size() / 2, paFor(largest), minLeaf(), rw());
        table.unmap(va + largest.size() / 2, minLeaf());
        long withEmptyTables = table.tableCount();
        assertTrue(withEmptyTables > 1, "a partial unmap leaves its tables");
        table.map(va, paFor(largest), largest.size(), rw());
        assertEquals(largest.size(), ((WalkResult.Translation) table.translate(va)).leafSize());
        assertTrue(table.tableCount() < withEmptyTables, "the empty subtree was replaced and freed");
        table.unmap(va, largest.size());
        assertEquals(0, unmapAll());
        assertEquals(1, table.tableCount());
    }

    @Test
    void shouldMapTheLargestLeafAtTheTopOfTheInputSpace() {
        LeafSize largest = f.leafSizes().getFirst();
        long top = topOfSpace();
        long va = top - largest.size() + 1;
        long pa = paFor(largest);
        table.map(va, pa, largest.size(), rw());
        assertEquals(pa + 42, ((WalkResult.Translation) table.translate(va + 42)).pa());
        assertEquals(pa + largest.size() - 1, ((WalkResult.Translation) table.translate(top)).pa());
        assertEquals(largest.size(), table.unmap(va, largest.size()));
        assertEquals(0, unmapAll());
        assertEquals(1, table.tableCount());
    }

    /** @return the highest valid input address: the top of the upper half for sign-extended formats */
    long topOfSpace() {
        return f.isValidVa(-1L) ? -1L : (1L << f.vaBits()) - 1;
    }

    /** Unmaps the whole input space (both halves where addresses are sign-extended), freeing every table. */
    long unmapAll() {
        if (!f.isValidVa(0)) {
            return table.unmap(spaceBase(), 1L << f.vaBits());
        }
        if (f.isValidVa(-1L)) {
            long half = 1L << (f.vaBits() - 1);
            return table.unmap(0, half) + table.unmap(-half, half);
        }
        return table.unmap(0, 1L << f.vaBits());
    }

    @Test
    void shouldSplitEveryBlockSizeOnPartialUnmap() {
        for (LeafSize leaf : f.leafSizes()) {
            if (leaf.size() == minLeaf()) {
                continue;
            }
            long va = vaFor(leaf);
            long pa = paFor(leaf);
            table.map(va, pa, leaf.size(), rw());
            long hole = va + leaf.size() / 2 + minLeaf();
            assertEquals(minLeaf(), table.unmap(hole, minLeaf()), leaf::toString);
            assertFalse(table.translate(hole).isMapped(), leaf::toString);
            for (long off = 0; off < leaf.size(); off += Math.max(minLeaf(), leaf.size() / 64)) {
                if (va + off == hole) {
                    continue;
                }
                long o = off;
                WalkResult r = table.translate(va + off + 7);
                WalkResult.Translation t = assertInstanceOf(WalkResult.Translation.class, r, () -> leaf + " +0x" + Long.toHexString(o));
                assertEquals(pa + off + 7, t.pa(), () -> leaf + " +0x" + Long.toHexString(o));
                assertEquals(rw(), t.attributes());
            }
            assertEquals(minLeaf(), table.translate(hole - minLeaf()) instanceof WalkResult.Translation t ? t.leafSize() : -1,
                () -> leaf + ": the neighbour of the hole is now a smallest leaf");
            assertEquals(leaf.size() - minLeaf(), table.unmap(va, leaf.size()), leaf::toString);
            assertEquals(0, unmapAll());
            assertEquals(1, table.tableCount(), () -> leaf + ": everything unmapped, only the root is left");
        }
    }

    /**
     * Every leaf kind (blocks of every level, contiguous runs, Armv7 supersections and large pages) is split
     * hitlessly: walkers started at a barrier with the split probe several addresses of the part that stays
     * mapped, round after round, and never miss; a counter proves that walks overlapped the split (a walk
     * that began after the split began and ended before it ended).
     */
    @Test
    void shouldSplitEveryLeafKindHitlesslyUnderConcurrentWalkers() throws Exception {
        final int walkers = 2;
        final int minRounds = 20;
        final int maxRounds = 3000;
        final int wantedOverlaps = 20;
        for (LeafSize leaf : f.leafSizes()) {
            if (leaf.size() == minLeaf()) {
                continue;
            }
            long va = vaFor(leaf);
            long pa = paFor(leaf);
            long hole = va + leaf.size() / 2 + minLeaf();
            long[] offsets = {42, leaf.size() / 4 + 7, leaf.size() / 2, hole - va - 1, hole - va + minLeaf(), leaf.size() - 1};
            java.util.concurrent.CyclicBarrier barrier = new java.util.concurrent.CyclicBarrier(walkers + 1);
            AtomicBoolean splitting = new AtomicBoolean();
            AtomicBoolean roundOver = new AtomicBoolean();
            AtomicBoolean stop = new AtomicBoolean();
            java.util.concurrent.atomic.AtomicLong overlaps = new java.util.concurrent.atomic.AtomicLong();
            java.util.concurrent.atomic.AtomicLong walks = new java.util.concurrent.atomic.AtomicLong();
            AtomicReference<String> miss = new AtomicReference<>();
            List<Thread> threads = new ArrayList<>();
            for (int w = 0; w < walkers; w++) {
                int first = w;
                threads.add(Thread.ofPlatform().start(() -> {
                    try {
                        for (;;) {
                            barrier.await(); // round start
                            if (stop.get()) {
                                return;
                            }
                            long n = 0;
                            for (int k = first; !roundOver.get(); k++) {
                                long off = offsets[k % offsets.length];
                                boolean before = splitting.get();
                                WalkResult r = table.translate(va + off);
                                boolean after = splitting.get();
                                n++;
                                if (before && after) {
                                    overlaps.incrementAndGet();
                                }
                                if (!(r instanceof WalkResult.Translation t) || t.pa() != pa + off) {
                                    miss.compareAndSet(null, leaf + " +0x" + Long.toHexString(off) + ": " + r);
                                }
                            }
                            walks.addAndGet(n);
                            barrier.await(); // round end
                        }
                    } catch (Exception e) {
                        miss.compareAndSet(null, e.toString());
                    }
                }));
            }
            int rounds = 0;
            try {
                while (rounds < minRounds || (overlaps.get() < wantedOverlaps && rounds < maxRounds)) {
                    rounds++;
                    table.map(va, pa, leaf.size(), rw());
                    roundOver.set(false);
                    barrier.await();
                    long until = System.nanoTime() + 20_000; // let the walkers get going
                    while (System.nanoTime() < until) {
                        Thread.onSpinWait();
                    }
                    splitting.set(true);
                    assertEquals(minLeaf(), table.unmap(hole, minLeaf()), leaf::toString);
                    splitting.set(false);
                    roundOver.set(true);
                    barrier.await();
                    assertEquals(leaf.size() - minLeaf(), table.unmap(va, leaf.size()), leaf::toString);
                    if (miss.get() != null) {
                        break;
                    }
                }
            } finally {
                stop.set(true);
                roundOver.set(true);
                for (Thread t : threads) {
                    t.interrupt(); // a walker at a barrier, or on its way to one, leaves with an exception
                    t.join();
                }
            }
            String failure = miss.get();
            if (failure != null && !failure.startsWith("java.lang.InterruptedException")
                && !failure.startsWith("java.util.concurrent.BrokenBarrierException")) {
                throw new AssertionError("the part that stays mapped disappeared: " + failure);
            }
            int r = rounds;
            assertTrue(overlaps.get() > 0, () -> leaf + ": no walk overlapped a split in " + r + " rounds of " + walks.get() + " walks");
        }
        assertEquals(0, unmapAll());
        assertEquals(1, table.tableCount());
    }

    @Test
    void shouldRejectBadInput() {
        LeafSize small = f.leafSizes().getLast();
        long base = spaceBase();
        assertThrows(UnsupportedSizeException.class, () -> table.map(base + 0x1000 + 1, 0, small.size(), rw()));
        assertThrows(UnsupportedSizeException.class, () -> table.map(base, 0x123, small.size(), rw()));
        assertThrows(UnsupportedSizeException.class, () -> table.map(base, 0, 100, rw()));
        assertThrows(UnsupportedSizeException.class, () -> table.map(base, 0, 0, rw()));
        assertThrows(UnsupportedSizeException.class, () -> table.unmap(base, -4096));
        assertThrows(AddressRangeException.class, () -> table.map(topOfSpace() + 1 - small.size(), 0, small.size() * 2, rw()));
        assertThrows(AddressRangeException.class, () -> table.map(base, (1L << Math.min(62, f.paBits())), small.size(), rw()));
        assertThrows(AddressRangeException.class, () -> table.map(base, -small.size(), small.size(), rw()));
        assertEquals(1, table.tableCount(), "nothing allocated by refused calls");
        assertFalse(table.translate(base).isMapped());
    }

    @Test
    void shouldRoundTripTheAttributesItSupports() {
        LeafSize small = f.leafSizes().getLast();
        long va = vaFor(small);
        int supported = 0;
        for (Attributes a : allAttributes()) {
            try {
                f.checkAttributes(a);
            } catch (UnsupportedAttributeException e) {
                assertTrue(e.getMessage().contains(f.name()), e.getMessage());
                assertThrows(UnsupportedAttributeException.class, () -> table.map(va, 0, small.size(), a));
                continue;
            }
            supported++;
            table.map(va, paFor(small), small.size(), a);
            WalkResult.Translation t = (WalkResult.Translation) table.translate(va);
            assertEquals(a, t.attributes(), "decode(encode(a)) == a");
            table.unmap(va, small.size());
        }
        assertTrue(supported >= 4, "supports at least r--, rw-, r-x, rwx in write-back");
    }

    @Test
    void shouldCheckPermissionsInTheWalker() {
        LeafSize small = f.leafSizes().getLast();
        long va = vaFor(small);
        Attributes ro = new Attributes(true, false, false, rw().user(), rw().cache()); // RO, or r--u where all is user
        table.map(va, paFor(small), small.size(), ro);
        assertTrue(Walker.translate(f, memory, table.root(), va, Access.READ, false).isMapped());
        WalkResult w = Walker.translate(f, memory, table.root(), va, Access.WRITE, false);
        assertEquals(FaultReason.PERMISSION, ((WalkResult.PageFault) w).reason());
        WalkResult u = Walker.translate(f, memory, table.root(), va, Access.READ, true);
        if (!ro.user()) {
            assertEquals(FaultReason.PERMISSION, ((WalkResult.PageFault) u).reason(), "privileged mapping, user access");
        }
        WalkResult x = Walker.translate(f, memory, table.root(), va, Access.EXECUTE, false);
        assertEquals(FaultReason.PERMISSION, ((WalkResult.PageFault) x).reason());
        table.unmap(va, small.size());
    }

    @Test
    void shouldAnswerTheFastTestsAsDecodeDoes() {
        Random rnd = new Random(42);
        for (int level = 0; level < f.levels(); level++) {
            for (int i = 0; i < 20_000; i++) {
                long raw = rnd.nextLong();
                if (f.entryBytes() == 4) {
                    raw &= 0xFFFF_FFFFL;
                }
                if (i % 2 == 0) {
                    raw &= ~0xFF8L; // fewer attribute bits: more tables and valid leaves
                }
                Descriptor d = f.decode(level, raw, 0);
                int lv = level;
                long r = raw;
                assertEquals(d instanceof Descriptor.Table, f.isTable(level, raw),
                    () -> "isTable at L" + lv + " of 0x" + Long.toHexString(r) + ": decode says " + d);
                if (d instanceof Descriptor.Table t) {
                    assertEquals(t.tablePa(), f.tableAddress(level, raw));
                }
                if (d instanceof Descriptor.Leaf leaf && leaf.leaf().isRun()) { // a pre-filter: never a false "no"
                    assertTrue(f.isRunEntry(level, raw), () -> "isRunEntry at L" + lv + " of 0x" + Long.toHexString(r) + ": " + d);
                }
            }
        }
    }

    @Test
    void shouldFailClearlyWhenClosed() {
        table.close();
        assertThrows(IllegalStateException.class, () -> table.map(0, 0, minLeaf(), rw()));
        assertThrows(IllegalStateException.class, () -> table.unmap(0, minLeaf()));
    }

    @Test
    void shouldMapAndUnmapDisjointRangesFromManyThreads() throws Exception {
        int threads = 6;
        long chunk = 4L << 20;
        List<Thread> workers = new ArrayList<>();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        for (int t = 0; t < threads; t++) {
            long base = spaceBase() + chunk * (t + 1);
            workers.add(Thread.ofPlatform().start(() -> {
                try {
                    Random rnd = new Random(base);
                    for (int i = 0; i < 200; i++) {
                        long off = (rnd.nextInt((int) (chunk / minLeaf()) / 2)) * minLeaf();
                        long len = (1 + rnd.nextInt(32)) * minLeaf();
                        table.map(base + off, 0x100_0000L + off, len, rw());
                        if (!(table.translate(base + off) instanceof WalkResult.Translation tr) || tr.pa() != 0x100_0000L + off) {
                            throw new AssertionError("lost own mapping at 0x" + Long.toHexString(base + off));
                        }
                        assertEquals(len, table.unmap(base + off, len));
                    }
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            }));
        }
        for (Thread w : workers) {
            w.join();
        }
        assertNull(failure.get(), () -> "worker failed: " + failure.get());
        assertEquals(0, table.unmap(spaceBase(), chunk * (threads + 2)), "everything each thread mapped it unmapped");
    }

    @Test
    void shouldEncodeTheSmallestLeafAffinelyInThePhysicalAddress() {
        Random rnd = new Random(11);
        for (LeafSize leaf : f.leafSizes()) {
            boolean smallest = leaf.equals(f.leafSizes().getLast());
            long limit = f.leafPaLimit(leaf);
            assertTrue(limit > 0 && (f.paBits() >= 63 || limit <= 1L << f.paBits()), () -> leaf + " limit 0x" + Long.toHexString(limit));
            for (Attributes a : allAttributes()) {
                try {
                    f.checkAttributes(a);
                } catch (UnsupportedAttributeException notExpressible) {
                    continue;
                }
                for (int i = 0; smallest && i < leaf.entries(); i++) { // what the one-page fast path relies on
                    long e0 = f.leafEntry(leaf, 0, i, a);
                    long step = f.leafEntry(leaf, leaf.size(), i, a) - e0;
                    for (int k = 0; k < 24; k++) {
                        long pa = k == 0 ? limit - leaf.size() : ((rnd.nextLong() >>> 1) % limit) & -leaf.size();
                        assertEquals(e0 + (pa / leaf.size()) * step, f.leafEntry(leaf, pa, i, a),
                            () -> leaf + " entry at pa=0x" + Long.toHexString(pa) + " " + a);
                    }
                }
            }
            for (int k = 0; k < 24; k++) { // every leaf reaches every address below its limit
                f.leafEntry(leaf, k == 0 ? limit - leaf.size() : ((rnd.nextLong() >>> 1) % limit) & -leaf.size(), 0, rw());
            }
            if (f.paBits() < 63 && limit < 1L << f.paBits()) {
                assertThrows(AddressRangeException.class, () -> f.leafEntry(leaf, limit, 0, rw()), leaf::toString);
            }
            if (smallest) {
                assertTrue(leaf.entries() == 1 && leaf.level() == f.levels() - 1, "the smallest leaf is one last-level entry");
            }
        }
    }

    static List<Attributes> allAttributes() {
        List<Attributes> all = new ArrayList<>();
        for (CachePolicy c : CachePolicy.values()) {
            for (int bits = 0; bits < 16; bits++) {
                all.add(new Attributes((bits & 1) != 0, (bits & 2) != 0, (bits & 4) != 0, (bits & 8) != 0, c));
            }
        }
        return all;
    }

    @Test
    void shouldProtectEveryLeafSizeInPlace() {
        Attributes rw = rw();
        Attributes ro = new Attributes(rw.read(), false, rw.execute(), rw.user(), rw.cache());
        for (LeafSize leaf : f.leafSizes()) {
            long va = vaFor(leaf);
            long pa = paFor(leaf);
            assertEquals(leaf.size(), table.map(va, pa, leaf.size(), rw));
            long tables = table.tableBytes();
            assertEquals(leaf.size(), table.protect(va, leaf.size(), ro), leaf.toString());
            WalkResult.Translation t = assertInstanceOf(WalkResult.Translation.class, table.translate(va + 42), leaf.toString());
            assertEquals(pa + 42, t.pa(), leaf.toString());
            assertEquals(leaf.size(), t.leafSize(), "same leaf after protect: " + leaf);
            assertFalse(t.attributes().write(), leaf.toString());
            assertInstanceOf(WalkResult.PageFault.class, table.walk(va + leaf.size() - 1, Access.WRITE, false), leaf.toString());
            assertEquals(tables, table.tableBytes(), "protect allocates no table");
            assertEquals(leaf.size(), table.protect(va, leaf.size(), rw));
            assertInstanceOf(WalkResult.Translation.class, table.walk(va + leaf.size() - 1, Access.WRITE, false), leaf.toString());
            assertEquals(leaf.size(), table.unmap(va, leaf.size()));
        }
    }

    @Test
    void shouldRefuseToProtectPartOfALeafAndChangeNothing() {
        LeafSize largest = f.leafSizes().getFirst();
        long page = f.leafSizes().getLast().size();
        if (largest.size() == page) {
            return;
        }
        long va = vaFor(largest);
        table.map(va, paFor(largest), largest.size(), rw());
        Attributes ro = new Attributes(rw().read(), false, rw().execute(), rw().user(), rw().cache());
        assertThrows(IllegalArgumentException.class, () -> table.protect(va + page, page, ro));
        assertInstanceOf(WalkResult.Translation.class, table.walk(va + page, Access.WRITE, false), "unchanged");
        assertInstanceOf(WalkResult.Translation.class, table.walk(va, Access.WRITE, false), "unchanged");
        assertEquals(0, table.protect(va + largest.size(), page, ro), "nothing mapped there: nothing to change");
        table.unmap(va, largest.size());
    }
}
