package dev.vcmm;

import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The frame-table reverse map: whoMaps and reservationsOf for chunks of every size, and under concurrent backing. */
class ReverseMapTest {

    static final long MIB = 1L << 20;
    static final long DDR = 0x8000_0000L;

    Vcmm vcmm;

    @BeforeEach
    void open() {
        vcmm = TestGraphs.graph().ddr(DDR, 256 * MIB).pageTables(64 * MIB).build();
    }

    @AfterEach
    void close() {
        vcmm.close();
    }

    @Test
    void shouldFindEveryByteOfEveryChunkSizeAndForgetItAfterUnback() {
        Vcm a = vcmm.createVcm(0x4000_0000L, 256 * MIB);
        Vcm b = vcmm.createVcm(0x4000_0000L, 256 * MIB);
        // 16M + 1M + 64K + 4K chunks
        PhysMem pm = vcmm.physAlloc("ddr", 16 * MIB + MIB + 64 * 1024 + 4096, ChunkPolicy.VCMM);
        assertEquals(4, pm.chunkCount());
        Reservation ra = a.reserve(pm.length(), ReservationAttributes.RW, 16 * MIB).back(pm);
        Reservation rb = b.reserve(MIB, ReservationAttributes.RW, MIB).back(pm, 16 * MIB); // the 1M chunk only
        for (long off : new long[] {0, 4095, 8 * MIB + 7, 16 * MIB, 16 * MIB + MIB - 1, 17 * MIB + 12345, pm.length() - 1}) {
            long pa = pm.physicalAddress(off);
            List<Mapping> m = vcmm.whoMaps(pa);
            boolean inB = off >= 16 * MIB && off < 17 * MIB;
            assertEquals(inB ? 2 : 1, m.size(), "off=" + off + " " + m);
            assertTrue(m.contains(new Mapping(ra, ra.address() + off)), m.toString());
            if (inB) {
                assertTrue(m.contains(new Mapping(rb, rb.address() + off - 16 * MIB)), m.toString());
            }
        }
        assertEquals(List.of(), vcmm.whoMaps(pm.physicalAddress(0) - 4096 < DDR ? DDR + 255 * MIB : pm.physicalAddress(0) - 4096));
        assertEquals(2, vcmm.reservationsOf(pm).size());
        ra.unback();
        assertEquals(List.of(new Mapping(rb, rb.address())), vcmm.whoMaps(pm.physicalAddress(16 * MIB)));
        assertEquals(List.of(), vcmm.whoMaps(pm.physicalAddress(0)), "a chunk no longer backing anything is forgotten");
        rb.unback();
        assertEquals(List.of(), vcmm.reservationsOf(pm));
        assertEquals(List.of(), vcmm.whoMaps(pm.physicalAddress(16 * MIB)));
    }

    /**
     * Threads back and unback their own buffers while a reader asks whoMaps of random chunks: every answer is empty
     * or exactly the reservation that backs that byte now (never another allocation's, whose handle was recycled).
     */
    @Test
    void shouldAnswerOnlyTrueMappingsWhileBackingsChange() throws Exception {
        Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        Vcm vcm = vcmm.createVcm(0x4000_0000L, 256 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        int threads = 2;
        int perThread = 64;
        List<List<Reservation>> res = new ArrayList<>();
        List<List<PhysMem>> mems = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            List<Reservation> rs = new ArrayList<>();
            List<PhysMem> ps = new ArrayList<>();
            for (int i = 0; i < perThread; i++) {
                rs.add(vcm.reserve(64 * 1024, ReservationAttributes.RW, 64 * 1024));
                ps.add(vcmm.physAlloc("ddr", 64 * 1024, ChunkPolicy.PAGES_4K));
            }
            res.add(rs);
            mems.add(ps);
        }
        AtomicBoolean stop = new AtomicBoolean();
        AtomicLong wrong = new AtomicLong();
        AtomicLong found = new AtomicLong();
        CyclicBarrier start = new CyclicBarrier(threads + 1);
        List<Thread> workers = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            List<Reservation> rs = res.get(t);
            List<PhysMem> ps = mems.get(t);
            Thread w = new Thread(() -> {
                await(start);
                for (int round = 0; round < 200; round++) {
                    for (int i = 0; i < perThread; i++) {
                        // rotate: reservation i takes allocation i + round, so chunks change owners between rounds
                        rs.get(i).back(ps.get((i + round) % perThread));
                    }
                    for (Reservation r : rs) {
                        r.unback();
                    }
                }
            });
            w.start();
            workers.add(w);
        }
        Thread reader = new Thread(() -> {
            await(start);
            java.util.Random rnd = new java.util.Random(42);
            while (!stop.get()) {
                int t = rnd.nextInt(threads);
                PhysMem pm = mems.get(t).get(rnd.nextInt(perThread));
                long off = rnd.nextInt(16) * 4096L + rnd.nextInt(4096);
                for (Mapping m : vcmm.whoMaps(pm.physicalAddress(off))) {
                    found.incrementAndGet();
                    if (!res.get(t).contains(m.reservation()) || m.address() != m.reservation().address() + off) {
                        wrong.incrementAndGet();
                    }
                }
            }
        });
        reader.start();
        for (Thread w : workers) {
            w.join();
        }
        stop.set(true);
        reader.join();
        assertEquals(0, wrong.get(), "whoMaps answered a mapping that does not exist");
        assertTrue(found.get() > 0, "the reader saw live mappings while they changed");
        for (List<PhysMem> ps : mems) {
            for (PhysMem pm : ps) {
                assertEquals(List.of(), vcmm.reservationsOf(pm));
                assertEquals(List.of(), vcmm.whoMaps(pm.physicalAddress(0)), "empty after everything is unbacked");
            }
        }
        assertEquals(0, vcmm.reverseMap().registeredCount(), "no allocation left registered");
        for (List<PhysMem> ps : mems) {
            for (PhysMem pm : ps) {
                pm.free();
            }
        }
        for (List<Reservation> rs : res) {
            for (Reservation r : rs) {
                r.unreserve();
            }
        }
        assertEquals(0, vcmm.memoryType("ddr").stats().allocatedBytes(), "the allocator is whole");
        assertEquals(0, vcmm.reverseMap().liveFrameEntries(), "every frame entry was cleared");
        assertEquals(0, vcmm.reverseMap().handlesInUse(), "every handle was recycled when its allocation was freed");
    }

    /**
     * Threads back and unback their own reservations with one shared allocation, so registrations and
     * unregistrations race on its one record (the last one out unpublishes the record and clears its frame entries while another
     * thread is putting its reservation in, the record going from one reservation to an array and back): at every step a thread's own reservation is found, and at the end the
     * record, its handle and every frame entry are gone. Barrier per 100 rounds; the overlap is counted.
     */
    @Test
    void shouldKeepEveryReservationOfASharedAllocationWhileTheyComeAndGo() throws Exception {
        Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        Vcm vcm = vcmm.createVcm(0x4000_0000L, 256 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        PhysMem shared = vcmm.physAlloc("ddr", 64 * 1024, ChunkPolicy.PAGES_4K);
        int threads = 3;
        int rounds = 20_000;
        CyclicBarrier barrier = new CyclicBarrier(threads);
        AtomicLong overlaps = new AtomicLong();
        AtomicLong missing = new AtomicLong();
        List<Thread> workers = new ArrayList<>();
        List<Reservation> rs = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            Reservation r = vcm.reserve(64 * 1024, ReservationAttributes.RW, 64 * 1024);
            rs.add(r);
            Thread w = new Thread(() -> {
                // rounds (a barrier per 100), then on until two registrations overlapped (bounded)
                for (int round = 0; round < rounds || overlaps.get() == 0 && round < rounds * 20; round++) {
                    if (round < rounds && round % 100 == 0) {
                        await(barrier);
                    }
                    r.back(shared);
                    List<Reservation> now = vcmm.reservationsOf(shared);
                    if (!now.contains(r)
                        || !vcmm.whoMaps(shared.physicalAddress(4096)).contains(new Mapping(r, r.address() + 4096))) {
                        missing.incrementAndGet();
                    }
                    if (now.size() > 1) {
                        overlaps.incrementAndGet();
                    }
                    r.unback();
                }
            });
            w.start();
            workers.add(w);
        }
        for (Thread w : workers) {
            w.join();
        }
        assertEquals(0, missing.get(), "a backed reservation was missing from the reverse map");
        assertTrue(overlaps.get() > 0, "two reservations were registered with the allocation at once");
        assertEquals(List.of(), vcmm.reservationsOf(shared));
        assertEquals(List.of(), vcmm.whoMaps(shared.physicalAddress(0)));
        assertEquals(0, vcmm.reverseMap().registeredCount(), "no allocation left registered");
        assertEquals(16, vcmm.reverseMap().liveFrameEntries(), "the unbacked allocation keeps its 16 frame entries");
        System.out.printf("[ReverseMapTest] shared allocation: %d overlapping registrations%n", overlaps.get());
        for (Reservation r : rs) {
            r.unreserve();
        }
        assertEquals(1, vcmm.reverseMap().handlesInUse(), "the unbacked allocation keeps its handle until it is freed");
        shared.free();
        assertEquals(0, vcmm.reverseMap().handlesInUse(), "freeing it recycled the handle");
        assertEquals(0, vcmm.reverseMap().liveFrameEntries(), "freeing it cleared its frame entries");
        assertEquals(0, vcmm.memoryType("ddr").stats().allocatedBytes(), "the allocator is whole");
    }

    /**
     * The first back of a fresh allocation writes its frame entries once, however many backs race: threads start
     * together (a barrier per round) backing their own reservations with one new allocation; every round each
     * thread's mapping is found at every chunk, and freeing the allocation leaves no entry. Runs until some round
     * had a first back lose the race to write the entries (counted by the map), bounded.
     */
    @Test
    void shouldWriteTheFrameEntriesOnceWhenFirstBacksRace() throws Exception {
        Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        Vcm vcm = vcmm.createVcm(0x4000_0000L, 256 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        int threads = 3;
        List<Reservation> rs = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            rs.add(vcm.reserve(64 * 1024, ReservationAttributes.RW, 64 * 1024));
        }
        PhysMem[] current = new PhysMem[1];
        int[] rounds = new int[1];
        long[] lostBefore = {vcmm.reverseMap().lostFramings()};
        AtomicLong missing = new AtomicLong();
        AtomicBoolean done = new AtomicBoolean();
        CyclicBarrier start = new CyclicBarrier(threads, () -> current[0] = vcmm.physAlloc("ddr", 64 * 1024,
            ChunkPolicy.PAGES_4K));
        CyclicBarrier end = new CyclicBarrier(threads, () -> {
            PhysMem pm = current[0];
            for (int i = 0; i < pm.chunkCount(); i++) {
                List<Mapping> m = vcmm.whoMaps(pm.chunks().get(i).pa());
                for (Reservation r : rs) {
                    if (!m.contains(new Mapping(r, r.address() + i * 4096L))) {
                        missing.incrementAndGet();
                    }
                }
            }
            for (Reservation r : rs) {
                r.unback();
            }
            pm.free();
            rounds[0]++;
            // decided in the barrier action, so every thread reads the same verdict when it is released
            if (rounds[0] >= 200_000 || rounds[0] >= 2_000 && vcmm.reverseMap().lostFramings() > lostBefore[0]) {
                done.set(true);
            }
        });
        List<Thread> workers = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            Reservation r = rs.get(t);
            Thread w = new Thread(() -> {
                while (!done.get()) {
                    await(start);
                    r.back(current[0]);
                    await(end);
                }
            });
            w.start();
            workers.add(w);
        }
        for (Thread w : workers) {
            w.join();
        }
        long lost = vcmm.reverseMap().lostFramings() - lostBefore[0];
        System.out.printf("[ReverseMapTest] racing first backs: %d rounds, %d lost framings%n", rounds[0], lost);
        assertEquals(0, missing.get(), "a racing back's mapping was missing from the reverse map");
        assertTrue(lost > 0, "first backs raced to write the frame entries");
        assertEquals(0, vcmm.reverseMap().liveFrameEntries(), "every freed allocation's entries were cleared");
        assertEquals(0, vcmm.reverseMap().handlesInUse(), "every freed allocation's handle was recycled");
        assertEquals(0, vcmm.memoryType("ddr").stats().allocatedBytes(), "the allocator is whole");
    }

    private static void await(CyclicBarrier b) {
        try {
            b.await();
        } catch (Exception e) {
            throw new AssertionError(e);
        }
    }
}
