package dev.vcmm.pagetable;

import dev.vcmm.heap.HeapPhysicalMemory;
import dev.vcmm.spi.PhysicalMemory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The recipes of a walk reading a freed table and of an unmap waiting on unrelated walks as deterministic interleavings: a {@link PausePoint} stalls
 * one walk at a chosen read while the test thread unmaps or closes, and the test checks what the issue
 * requires: unmap and close return at once (they never wait for walks), an unlinked table is not reused
 * while a walk that may read it is stalled, a walk that races or follows a close faults and never answers
 * another table's mapping, and every byte comes back once the walks have ended.
 */
class PageTableReclamationTest {

    static final long PT_BASE = 0x4000_0000L;
    static final long PT_SIZE = 64L << 20;
    /** How long a stalled walk waits for the test to release it: long enough that spinning shows. */
    static final long STALL_MS = 1500;
    /** What "returns promptly" means here: well under the stall, with room for a loaded 2-core machine. */
    static final long PROMPT_MS = 500;

    final PageTableFormat f = Arm64Lpae4kFormat.INSTANCE;
    PhysicalMemory memory;
    TestBlockAllocator allocator;
    PageTable table;

    @BeforeEach
    void open() {
        memory = HeapPhysicalMemory.create(PT_BASE, PT_SIZE);
        allocator = new TestBlockAllocator(PT_BASE, PT_SIZE);
        table = PageTable.create(f, memory, allocator);
    }

    @AfterEach
    void close() {
        Walker.pausePoint = null;
        table.close();
        memory.close();
    }

    /** Stalls the first walk of one thread that reads {@code level}, until released or {@link #STALL_MS}. */
    static final class Stall implements PausePoint {
        final int level;
        final CountDownLatch reached = new CountDownLatch(1);
        final CountDownLatch release = new CountDownLatch(1);
        volatile Thread target;

        Stall(int level) {
            this.level = level;
        }

        @Override
        public void reached(String place, int lv, long va) {
            if (Thread.currentThread() == target && lv == level && reached.getCount() > 0) {
                reached.countDown();
                try {
                    release.await(STALL_MS, TimeUnit.MILLISECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        }

        /** Starts {@code walk} in a thread of its own, stalled at {@link #level}; returns once it is stalled. */
        Thread start(PageTable t, long va, AtomicReference<WalkResult> result) throws InterruptedException {
            Thread th = Thread.ofPlatform().unstarted(() -> result.set(t.walk(va, Access.READ, false)));
            target = th;
            Walker.pausePoint = this;
            th.start();
            assertTrue(reached.await(10, TimeUnit.SECONDS), "the walk reached the pause point");
            return th;
        }
    }

    static long millisSince(long t0) {
        return (System.nanoTime() - t0) / 1_000_000;
    }

    /** The recipe of defect 1, no threads needed: t1's root page goes to t2, t1's walk must not follow it. */
    @Test
    void shouldFaultAWalkAfterCloseEvenWhenAnotherTableReusesItsMemory() {
        table.map(0x100000, 0x8000_0000L, 4096, Attributes.RW);
        table.close();
        try (PageTable t2 = PageTable.create(f, memory, allocator)) {
            t2.map(0x100000, 0x9999_0000L, 4096, Attributes.RW);
            for (WalkResult r : List.of(table.walk(0x100000, Access.READ, false), table.walk(0x100000, null, false),
                table.translate(0x100000))) {
                WalkResult.PageFault fault = assertInstanceOf(WalkResult.PageFault.class, r, () -> "walk after close: " + r);
                assertEquals(FaultReason.TRANSLATION, fault.reason());
                assertTrue(fault.detail().contains("closed"), fault::detail);
            }
        }
        assertEquals(0, allocator.usedBytes(), "both tables gave every page back");
    }

    /** Defect 3: a walk of an unrelated address, stalled in its first read, does not hold up an unmap. */
    @Test
    void shouldUnmapAWhole2MSpanPromptlyWhileAnUnrelatedWalkIsStalled() throws Exception {
        long span = 0x4020_0000L;
        table.map(span, 0x8000_1000L, 2 << 20, Attributes.RW); // pa not 64K aligned: 512 pages, one last-level table
        table.map(0x1_0000_0000L, 0x9000_0000L, 4096, Attributes.RW);
        long tables = table.tableCount();
        Stall stall = new Stall(0);
        AtomicReference<WalkResult> result = new AtomicReference<>();
        Thread walker = stall.start(table, 0x1_0000_0000L, result);
        long t0 = System.nanoTime();
        assertEquals(2 << 20, table.unmap(span, 2 << 20));
        long ms = millisSince(t0);
        stall.release.countDown();
        walker.join();
        assertTrue(ms < PROMPT_MS, () -> "unmap of a whole 2M span took " + ms + " ms while an unrelated walk was stalled");
        assertEquals(0x9000_0000L, assertInstanceOf(WalkResult.Translation.class, result.get()).pa());
        table.unmap(0x1_0000_0000L, 4096); // a later call reclaims what the stalled walk held back
        assertTrue(table.tableCount() < tables, "the unlinked table was given back after the walk");
        assertEquals(table.heldBytes(), allocator.usedBytes());
    }

    /**
     * Defect 3, the other half: the walk stalled just after reading the pointer to the last-level table may
     * still read that table, so the table is not reused while it is stalled; the unmap still returns at once.
     */
    @Test
    void shouldNotReuseAnUnlinkedTableWhileAWalkThatMayReadItIsStalled() throws Exception {
        long span = 0x4020_0000L;
        table.map(span, 0x8000_1000L, 2 << 20, Attributes.RW);
        long lastTable = lastLevelTables().getFirst();
        Stall stall = new Stall(f.levels() - 2); // has read the table descriptor, not yet the leaf
        AtomicReference<WalkResult> result = new AtomicReference<>();
        Thread walker = stall.start(table, span + 0x5000, result);
        long t0 = System.nanoTime();
        assertEquals(2 << 20, table.unmap(span, 2 << 20));
        long ms = millisSince(t0);
        try {
            assertTrue(ms < PROMPT_MS, () -> "unmap took " + ms + " ms while a walk of its span was stalled");
            for (int i = 1; i <= 4; i++) { // new last-level tables, while the walk is stalled
                table.map(span + ((long) i << 21), 0x8000_1000L, 2 << 20, Attributes.RW);
            }
            assertFalse(lastLevelTables().contains(lastTable), "the unlinked table was reused while a walk may read it");
            assertTrue(allocator.usedBytes() >= table.tableBytes() + 4096, "the unlinked table is still held");
        } finally {
            stall.release.countDown();
            walker.join();
        }
        WalkResult r = result.get();
        if (r instanceof WalkResult.Translation t) {
            assertEquals(0x8000_6000L, t.pa(), "a stale but correct answer: the walk read the entry before the unmap");
        } else {
            assertEquals(FaultReason.TRANSLATION, ((WalkResult.PageFault) r).reason());
        }
        for (int i = 1; i <= 4; i++) {
            table.unmap(span + ((long) i << 21), 2 << 20);
        }
        assertTrue(lastLevelTables().isEmpty(), "every last-level table is unlinked");
        assertEquals(0, table.retiredBytes(), "and given back once the walk ended");
        assertEquals(table.heldBytes(), allocator.usedBytes());
    }

    /**
     * Defect 1 under a race: a walk stalled in its first read while the table closes, a second table made
     * from the same memory and mapped. Close returns at once; the stalled walk, and any walk that starts
     * after close, fault as closed and never answer t2's mapping; once the stalled walk ends, every byte of
     * t1 is back.
     */
    @Test
    void shouldFaultAStalledWalkWhenItsTableClosesAndGiveEveryByteBackAfterIt() throws Exception {
        table.map(0x100000, 0x8000_0000L, 4096, Attributes.RW);
        Stall stall = new Stall(0);
        AtomicReference<WalkResult> result = new AtomicReference<>();
        Thread walker = stall.start(table, 0x100000, result);
        PageTable t2;
        long t0 = System.nanoTime();
        table.close();
        long ms = millisSince(t0);
        try {
            assertTrue(ms < PROMPT_MS, () -> "close took " + ms + " ms while a walk was stalled");
            t2 = PageTable.create(f, memory, allocator);
            t2.map(0x100000, 0x9999_0000L, 4096, Attributes.RW);
            assertNotEquals(0, table.heldBytes(), "t1's tables wait for the stalled walk");
            WalkResult after = table.walk(0x100000, Access.READ, false);
            assertInstanceOf(WalkResult.PageFault.class, after, () -> "a walk after close: " + after);
        } finally {
            stall.release.countDown();
            walker.join();
        }
        WalkResult r = result.get();
        WalkResult.PageFault fault = assertInstanceOf(WalkResult.PageFault.class, r, () -> "the walk that raced close: " + r);
        assertTrue(fault.detail().contains("closed"), fault::detail);
        assertEquals(0, table.heldBytes(), "the last walk to leave gave t1's tables back");
        assertEquals(t2.heldBytes(), allocator.usedBytes());
        t2.close();
        assertEquals(0, allocator.usedBytes());
    }

    /** Many rounds of walkers racing close from a barrier: each answer is the mapping or a fault, nothing leaks. */
    @Test
    void shouldNeverAnswerAnotherTablesMappingWhenWalksRaceClose() throws Exception {
        int walkers = 2;
        int raced = 0;
        for (int round = 0; round < 200; round++) {
            final int rd = round;
            PageTable t1 = PageTable.create(f, memory, allocator);
            t1.map(0x100000, 0x8000_0000L, 4096, Attributes.RW);
            java.util.concurrent.CyclicBarrier start = new java.util.concurrent.CyclicBarrier(walkers + 1);
            AtomicReference<String> wrong = new AtomicReference<>();
            java.util.concurrent.atomic.AtomicInteger faultsAfterStart = new java.util.concurrent.atomic.AtomicInteger();
            List<Thread> threads = new ArrayList<>();
            for (int w = 0; w < walkers; w++) {
                threads.add(Thread.ofPlatform().start(() -> {
                    try {
                        start.await();
                        for (int i = 0; i < 2000; i++) {
                            WalkResult r = t1.walk(0x100000, Access.READ, false);
                            if (r instanceof WalkResult.Translation t && t.pa() != 0x8000_0000L) {
                                wrong.compareAndSet(null, r.toString());
                            } else if (r instanceof WalkResult.PageFault) {
                                faultsAfterStart.incrementAndGet();
                                return;
                            }
                        }
                    } catch (Exception e) {
                        wrong.compareAndSet(null, e.toString());
                    }
                }));
            }
            start.await();
            t1.close();
            try (PageTable t2 = PageTable.create(f, memory, allocator)) {
                t2.map(0x100000, 0x9999_0000L, 4096, Attributes.RW);
                for (Thread th : threads) {
                    th.join();
                }
                assertEquals(null, wrong.get());
                raced += faultsAfterStart.get() > 0 ? 1 : 0;
                assertEquals(0, t1.heldBytes());
                assertEquals(t2.heldBytes() + table.heldBytes(), allocator.usedBytes(), "round " + rd);
            }
        }
        assertTrue(raced > 0, "some walks overlapped a close");
    }

    private List<Long> lastLevelTables() {
        List<Long> found = new ArrayList<>();
        table.forEachTable((level, pa, bytes) -> {
            if (level == f.levels() - 1) {
                found.add(pa);
            }
        });
        return found;
    }
}
