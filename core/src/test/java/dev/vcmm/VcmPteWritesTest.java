package dev.vcmm;

import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.pagetable.X86_64Format;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link VcmmStats.VcmStats#pteWrites()}: the count of page-table entry writes in 4 KiB pages per table, checked
 * against leaves the walker finds, and exact after threads back and unback in parallel (per-thread cells).
 */
class VcmPteWritesTest {

    static final long KIB = 1L << 10;
    static final long MIB = 1L << 20;

    Vcmm vcmm;
    Vcm vcm;
    Device arm;
    Device x86;

    @BeforeEach
    void open() {
        vcmm = TestGraphs.graph().ddr(256 * MIB).pageTables(16 * MIB).build();
        arm = vcmm.device("arm", Arm64Lpae4kFormat.INSTANCE);
        x86 = vcmm.device("x86", X86_64Format.INSTANCE);
        vcm = vcmm.createVcm(0x4000_0000L, 256 * MIB);
        vcmm.assoc(vcm, arm).activate();
        vcmm.assoc(vcm, x86).activate(); // two formats: two page tables
    }

    @AfterEach
    void close() {
        vcmm.close();
    }

    long pteWrites() {
        return vcmm.stats().vcms().stream().filter(v -> v.name().equals(vcm.name())).findFirst().orElseThrow().pteWrites();
    }

    /** 16 scattered 4 KiB chunks: physical pages with gaps between them, so no larger leaf can map them. */
    PhysMem scattered16() {
        List<PhysMem> gaps = new ArrayList<>();
        List<PhysMem> pages = new ArrayList<>();
        for (int i = 0; i < 32; i++) {
            (i % 2 == 0 ? pages : gaps).add(vcmm.physAlloc("ddr", 4 * KIB, ChunkPolicy.PAGES_4K));
        }
        for (PhysMem p : pages) {
            p.free(); // every other page free: a 64 KiB allocation of 4 KiB chunks gets them, scattered
        }
        PhysMem pm = vcmm.physAlloc("ddr", 64 * KIB, ChunkPolicy.PAGES_4K);
        for (PhysMem g : gaps) {
            g.free();
        }
        return pm;
    }

    @Test
    void shouldCountOneWritePerLeafPerTableForScattered4KiBChunks() {
        assertEquals(0, pteWrites());
        PhysMem pm = scattered16();
        Reservation r = vcm.reserve(64 * KIB, ReservationAttributes.RW, 64 * KIB).back(pm);
        // what the tables hold: 16 leaves of 4 KiB in each of the two tables, so 32 leaf entries were written
        int leaves = 0;
        for (Device d : List.of(arm, x86)) {
            for (long o = 0; o < 64 * KIB; o += 4 * KIB) {
                WalkResult.Translation t = assertInstanceOf(WalkResult.Translation.class, d.translate(r.address() + o));
                assertEquals(4 * KIB, t.leafSize());
                leaves++;
            }
        }
        assertEquals(32, leaves);
        assertEquals(32, pteWrites());

        r.unback(16 * KIB, 8 * KIB); // a part: 2 pages x 2 tables cleared
        assertEquals(36, pteWrites());
        r.setAttributes(ReservationAttributes.RO); // 14 mapped pages x 2 tables rewritten
        assertEquals(64, pteWrites());
        r.unback(); // the 14 pages still mapped x 2 tables
        assertEquals(92, pteWrites());
        assertFalse(r.isBacked());
    }

    @Test
    void shouldNotCountARefusedBack() {
        PhysMem pm = vcmm.physAlloc("ddr", 64 * KIB, ChunkPolicy.PAGES_4K);
        Reservation r = vcm.reserve(64 * KIB, ReservationAttributes.RW, 64 * KIB).back(pm);
        long before = pteWrites();
        assertThrows(IllegalStateException.class, () -> r.back(pm)); // already backed: nothing written
        assertEquals(before, pteWrites());
    }

    @Test
    void shouldSumEveryThreadsWritesExactlyAfterParallelBackAndUnback() throws Exception {
        int threads = 4;
        int rounds = 200;
        long pages = 4; // 16 KiB reservations
        List<PhysMem> memories = new ArrayList<>();
        List<Reservation> reservations = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            memories.add(vcmm.physAlloc("ddr", pages * 4 * KIB, ChunkPolicy.PAGES_4K));
            reservations.add(vcm.reserve(pages * 4 * KIB, ReservationAttributes.RW));
        }
        CyclicBarrier start = new CyclicBarrier(threads);
        AtomicInteger inside = new AtomicInteger();
        AtomicInteger overlaps = new AtomicInteger(); // times a thread entered back while another was in back or unback
        AtomicReference<Throwable> failure = new AtomicReference<>();
        long[] done = new long[threads]; // rounds per thread: more than `rounds` if no overlap was seen yet
        long deadline = System.nanoTime() + 5_000_000_000L;
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            int me = t;
            ts.add(Thread.ofPlatform().start(() -> {
                try {
                    int i = 0;
                    for (; i < rounds || (overlaps.get() == 0 && System.nanoTime() < deadline); i++) {
                        if (i % 20 == 0 && i < rounds) {
                            start.await(); // all threads start these rounds together
                        }
                        if (inside.getAndIncrement() > 0) {
                            overlaps.incrementAndGet();
                        }
                        reservations.get(me).back(memories.get(me));
                        reservations.get(me).unback();
                        inside.decrementAndGet();
                    }
                    done[me] = i;
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                    start.reset(); // no thread waits for ever for this one
                }
            }));
        }
        long total = 0;
        for (int t = 0; t < threads; t++) {
            ts.get(t).join();
            total += done[t];
        }
        assertNull(failure.get());
        assertTrue(overlaps.get() > 0, "the threads never overlapped");
        System.out.println("VcmPteWritesTest: " + total + " back+unback rounds, " + overlaps.get() + " overlapped");
        // each round: back writes pages x 2 tables, unback clears as many
        assertEquals(total * pages * 2 * 2, pteWrites());
    }
}
