package dev.vcmm.ffm;

import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Magazines, depots and the return of empty slab pages: a page goes back to the buddy only once every one of its
 * objects is free and collected, a depot pop that read the old head cannot hand out an object of a page given back
 * (forced with the pop hook), and allocations, frees across threads and trims run together without handing an object
 * out twice (stamps checked before every free; the overlap of trims giving pages back with live operations counted).
 */
class SegmentPoolMagazineTest {

    private static final long MIB = 1L << 20;

    @Test
    void shouldGiveEmptySlabPagesBackAndKeepPagesWithALiveObject() {
        try (SegmentPool pool = SegmentPool.builder(16 * MIB).name("slabs").decay(null).build()) {
            long start = pool.stats().residentBytes();
            List<MemorySegment> made = new ArrayList<>();
            for (int c = 0; c < 8; c++) {
                for (int i = 0; i < 600; i++) { // 600 objects of each class: 2.3 pages of 16 B .. 300 pages of 2 KiB
                    MemorySegment s = pool.allocate(16L << c, 8);
                    s.fill((byte) 7);
                    made.add(s);
                }
            }
            MemorySegment live = made.remove(made.size() - 1); // one 2 KiB object stays: its page stays
            made.forEach(pool::free);
            long before = pool.slabPagesReturned();
            pool.trim();
            long returned = pool.slabPagesReturned() - before;
            // pages carved: ceil(600 / perPage) per class; the live object's page stays
            long carved = 0;
            for (int c = 0; c < 8; c++) {
                long perPage = 4096 / (16L << c);
                carved += (600 + perPage - 1) / perPage;
            }
            assertEquals(carved - 1, returned);
            assertEquals(7, pool.slabClassAt(live.address()));
            assertEquals(7, live.get(ValueLayout.JAVA_BYTE, 2047)); // untouched by the trim
            assertTrue(pool.stats().residentBytes() <= start + 4096, () -> "resident " + pool.stats());
            pool.free(live);
            assertThrows(IllegalStateException.class, () -> pool.free(live)); // a double free still refused
            pool.trim();
            assertEquals(carved, pool.slabPagesReturned() - before);
            assertEquals(-1, pool.slabClassAt(live.address()));
            assertThrows(IllegalArgumentException.class, () -> pool.free(live)); // its page is no slab page now
            assertTrue(pool.stats().residentBytes() <= start, () -> "resident " + pool.stats());
        }
    }

    /**
     * Forces the interleaving: a thread's depot pop reads the head (an object of a page about to go back) and stops
     * before its CAS; the main thread trims, which collects every object and gives every page back; the pop resumes.
     * Its CAS must fail on the stamp, and the object it finally gets must lie on a live slab page of its class.
     */
    @Test
    void shouldNotHandOutAnObjectOfAPageGivenBackWhileAPopWasUnderWay() throws Exception {
        try (SegmentPool pool = SegmentPool.builder(16 * MIB).name("pop-vs-return").decay(null).build()) {
            List<MemorySegment> made = new ArrayList<>();
            for (int i = 0; i < 40; i++) { // 2 KiB objects, 2 per page: 20 pages
                made.add(pool.allocate(2048, 8));
            }
            made.forEach(pool::free); // the magazine (16) overflows: chains of 8 go to the depot
            CountDownLatch atHook = new CountDownLatch(1);
            CountDownLatch resume = new CountDownLatch(1);
            AtomicBoolean armed = new AtomicBoolean(true);
            AtomicInteger pops = new AtomicInteger();
            Thread[] popper = new Thread[1];
            pool.depotPopHook = () -> {
                if (Thread.currentThread() == popper[0]) {
                    pops.incrementAndGet();
                    if (armed.compareAndSet(true, false)) {
                        atHook.countDown();
                        try {
                            resume.await();
                        } catch (InterruptedException e) {
                            Thread.currentThread().interrupt();
                        }
                    }
                }
            };
            AtomicReference<MemorySegment> got = new AtomicReference<>();
            AtomicReference<Throwable> failed = new AtomicReference<>();
            popper[0] = Thread.ofPlatform().unstarted(() -> {
                try {
                    got.set(pool.allocate(2048, 8)); // its magazine is empty: a depot pop
                } catch (Throwable t) {
                    failed.set(t);
                }
            });
            popper[0].start(); // after popper[0] is set: the hook must recognise the thread at its first pop
            assertTrue(atHook.await(10, TimeUnit.SECONDS), "the pop never reached the hook");
            long before = pool.slabPagesReturned();
            pool.trim(); // meanwhile: every object collected, every page given back
            assertEquals(20, pool.slabPagesReturned() - before);
            resume.countDown();
            popper[0].join(10_000);
            pool.depotPopHook = null;
            assertEquals(null, failed.get());
            MemorySegment s = got.get();
            assertNotNull(s);
            assertEquals(1, pops.get(), "the stale pop's CAS must fail and the retry find the depot empty");
            assertEquals(7, pool.slabClassAt(s.address()), "the object lies on a live slab page");
            s.fill((byte) 1);
            pool.free(s);
            assertEquals(0, pool.stats().liveSegments());
        }
    }

    /**
     * Four workers, started together by a barrier each round, allocate slab objects and small blocks, stamp them, hand
     * half to the next worker through a queue and free the rest (and what they receive) after checking the stamps;
     * meanwhile a fifth thread trims in a loop (mostly only trim's collection of magazines and depots and return of
     * empty pages, without its punching, so that many run), giving empty pages back. A page
     * given back while one of its objects was still in use, or an object handed out twice, breaks a stamp (or trips the
     * allocator's own "handed out twice" check). {@code overlaps} counts trims that gave pages back while workers were
     * inside operations: it must be positive.
     */
    @Test
    void shouldNeverHandOutTwiceWhileTrimsGivePagesBackUnderCrossThreadFrees() throws Exception {
        int workers = 4;
        int rounds = Boolean.getBoolean("vcmm.long") ? 2000 : 120;
        try (SegmentPool pool = SegmentPool.builder(64 * MIB).name("magazines").build()) {
            CyclicBarrier barrier = new CyclicBarrier(workers + 1);
            List<ArrayBlockingQueue<MemorySegment>> inbox = new ArrayList<>();
            for (int w = 0; w < workers; w++) {
                inbox.add(new ArrayBlockingQueue<>(1 << 16));
            }
            AtomicInteger inside = new AtomicInteger();
            AtomicBoolean done = new AtomicBoolean();
            AtomicLong overlaps = new AtomicLong();
            AtomicLong crossFrees = new AtomicLong();
            AtomicReference<Throwable> failed = new AtomicReference<>();
            List<Thread> threads = new ArrayList<>();
            for (int w = 0; w < workers; w++) {
                int me = w;
                threads.add(Thread.ofPlatform().start(() -> {
                    SplittableRandom rnd = new SplittableRandom(1000 + me);
                    try {
                        for (int r = 0; r < rounds && failed.get() == null; r++) {
                            barrier.await(10, TimeUnit.SECONDS);
                            inside.incrementAndGet();
                            for (int batch = 0; batch < 4; batch++) { // pages fill and empty again within a round
                                List<MemorySegment> mine = new ArrayList<>();
                                for (int i = 0; i < 64; i++) {
                                    long size = rnd.nextInt(10) < 8 ? 16L << rnd.nextInt(8) : 4096L << rnd.nextInt(5);
                                    MemorySegment s = pool.allocateUninitialized(size, 8);
                                    long stamp = ((long) me << 48) | ((long) r << 16) | (batch << 8) | i;
                                    s.set(ValueLayout.JAVA_LONG_UNALIGNED, 0, stamp);
                                    s.set(ValueLayout.JAVA_LONG_UNALIGNED, size - 8, stamp);
                                    if (i % 2 == 0) {
                                        mine.add(s);
                                    } else {
                                        inbox.get((me + 1) % workers).add(s);
                                    }
                                }
                                for (MemorySegment s : mine) {
                                    check(s);
                                    pool.free(s);
                                }
                                MemorySegment s;
                                while ((s = inbox.get(me).poll()) != null) {
                                    check(s);
                                    pool.free(s); // allocated by another thread
                                    crossFrees.incrementAndGet();
                                }
                            }
                            inside.decrementAndGet();
                        }
                    } catch (Throwable t) {
                        failed.compareAndSet(null, t);
                        inside.decrementAndGet();
                    }
                }));
            }
            Thread trimmer = Thread.ofPlatform().start(() -> {
                try {
                    for (int n = 0; !done.get(); n++) {
                        long before = pool.slabPagesReturned();
                        boolean busy = inside.get() > 0;
                        if (n % 32 == 0) {
                            pool.trim(); // also punches: slow
                        } else {
                            pool.reclaimNow(); // trim's collection and return of pages alone
                        }
                        if (busy && inside.get() > 0 && pool.slabPagesReturned() > before) {
                            overlaps.incrementAndGet();
                        }
                    }
                } catch (Throwable t) {
                    failed.compareAndSet(null, t);
                }
            });
            for (int r = 0; r < rounds && failed.get() == null; r++) {
                barrier.await(10, TimeUnit.SECONDS);
            }
            for (Thread t : threads) {
                t.join(60_000);
            }
            done.set(true);
            trimmer.join(60_000);
            if (failed.get() != null) {
                throw new AssertionError("a worker failed", failed.get());
            }
            for (ArrayBlockingQueue<MemorySegment> q : inbox) { // the last round's handoffs to a finished worker
                MemorySegment s;
                while ((s = q.poll()) != null) {
                    check(s);
                    pool.free(s);
                }
            }
            System.out.println("magazines: " + rounds + " rounds, " + crossFrees.get() + " cross-thread frees, "
                + overlaps.get() + " returns of pages while workers ran, " + pool.slabPagesReturned() + " pages back");
            assertEquals(0, pool.stats().liveSegments());
            assertTrue(crossFrees.get() > 0, "no cross-thread free happened");
            assertTrue(overlaps.get() > 0, () -> "no trim gave pages back while workers ran; rounds " + rounds
                + ", pages given back " + pool.slabPagesReturned() + ", " + pool.stats());
            pool.trim();
            assertTrue(pool.stats().residentBytes() <= 64 * 1024, () -> "resident after all was freed: " + pool.stats());
        }
    }

    private static void check(MemorySegment s) {
        long head = s.get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
        long tail = s.get(ValueLayout.JAVA_LONG_UNALIGNED, s.byteSize() - 8);
        if (head != tail) {
            throw new AssertionError("segment at 0x" + Long.toHexString(s.address()) + " of " + s.byteSize()
                + " bytes was written by someone else: " + Long.toHexString(head) + " != " + Long.toHexString(tail));
        }
    }

    /**
     * A producer allocates and a consumer frees, through a queue, 200 000 times: the consumer's frees must come back
     * to the producer (through the depot) rather than pile up while the producer carves new memory.
     */
    @Test
    void shouldRecycleCrossThreadFreesToTheAllocatingThread() throws Exception {
        try (SegmentPool pool = SegmentPool.builder(64 * MIB).name("handoff").decay(null).build()) {
            for (long size : new long[] {64, 4096, 65536}) {
                ArrayBlockingQueue<MemorySegment> ring = new ArrayBlockingQueue<>(256);
                int n = 200_000;
                Thread consumer = Thread.ofPlatform().daemon().start(() -> {
                    try {
                        for (int i = 0; i < n; i++) {
                            MemorySegment s = ring.take();
                            if (s.get(ValueLayout.JAVA_INT_UNALIGNED, 0) != i) {
                                throw new AssertionError("segment " + i + " overwritten");
                            }
                            pool.free(s);
                        }
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                });
                for (int i = 0; i < n; i++) {
                    MemorySegment s = pool.allocateUninitialized(size, 8);
                    s.set(ValueLayout.JAVA_INT_UNALIGNED, 0, i);
                    ring.put(s);
                }
                consumer.join(60_000);
                assertEquals(0, pool.stats().liveSegments());
                // at most 256 in the ring plus magazines and depots: far below 200 000 segments' worth
                long touched = pool.stats().residentBytes();
                assertTrue(touched <= 400 * Math.max(size, 4096) + 4 * MIB,
                    () -> "size " + size + ": resident " + touched + " after 200 000 handoffs");
                pool.trim();
            }
        }
    }

    /**
     * Blocks of every magazine order freed on one thread (its magazine overflows: chains, arrays in their first block,
     * go to the depot, the rest to the buddy) come back to another thread through the depot: each block at most once,
     * every recycled one among those freed, none lost (after a trim the pool is as empty as before), and a chain's
     * array in its first block never reaches a live block.
     */
    @Test
    void shouldCarryBlockChainsAcrossThreadsEachBlockOnce() throws Exception {
        try (SegmentPool pool = SegmentPool.builder(64 * MIB).name("block-chains").decay(null).build()) {
            long start = pool.stats().residentBytes();
            for (int order = 0; order < 5; order++) {
                long size = 4096L << order;
                int m = 200;
                List<MemorySegment> first = new ArrayList<>();
                for (int i = 0; i < m; i++) {
                    MemorySegment s = pool.allocateUninitialized(size, 8);
                    s.fill((byte) 0x5a);
                    first.add(s);
                }
                java.util.Set<Long> freed = new java.util.HashSet<>();
                first.forEach(s -> freed.add(s.address()));
                Thread.ofPlatform().start(() -> first.forEach(pool::free)).join(); // flushes on that thread
                java.util.Set<Long> again = new java.util.HashSet<>();
                int recycled = 0;
                List<MemorySegment> second = new ArrayList<>();
                for (int i = 0; i < m; i++) {
                    MemorySegment s = pool.allocateUninitialized(size, 8);
                    assertTrue(again.add(s.address()), "order " + order + ": a block handed out twice");
                    recycled += freed.contains(s.address()) ? 1 : 0;
                    s.fill((byte) i);
                    second.add(s);
                }
                for (int i = 0; i < m; i++) { // no chain was written into a live block
                    MemorySegment s = second.get(i);
                    assertEquals((byte) i, s.get(ValueLayout.JAVA_BYTE, 0), "order " + order);
                    assertEquals((byte) i, s.get(ValueLayout.JAVA_BYTE, 8 * 40), "order " + order);
                }
                assertTrue(recycled > 0, "order " + order + ": nothing came back through the depot");
                second.forEach(pool::free);
            }
            assertEquals(0, pool.stats().liveSegments());
            pool.trim(); // collects every depot chain and magazine: every block back to the buddy, then punched
            assertTrue(pool.stats().residentBytes() <= start, () -> "resident " + pool.stats() + ", at start " + start);
        }
    }
}
