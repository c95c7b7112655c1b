package dev.vcmm;

import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import static dev.vcmm.testing.TestGraphs.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The thread-safety claims of {@link Bound}, {@link Reservation#ref()} and {@link Reservation#setAttributes} under
 * contention: threads start at a barrier, run many rounds, and count the calls that overlapped another thread's.
 */
class RfcApiConcurrencyTest {

    static final int THREADS = 4;
    static final int ROUNDS = Boolean.getBoolean("vcmm.long") ? 20_000 : 500;

    Vcmm vcmm;
    Device gpu;

    @BeforeEach
    void open() {
        vcmm = TestGraphs.graph().ddr(64 * MIB).pageTables(16 * MIB).device("gpu", Arm64Lpae4kFormat.INSTANCE).build();
        gpu = vcmm.device("gpu");
    }

    @AfterEach
    void close() {
        vcmm.close();
    }

    /** Runs {@code body(thread)} in {@link #THREADS} threads started at a barrier; fails with the first failure. */
    static void race(java.util.function.IntConsumer body) throws Exception {
        CyclicBarrier start = new CyclicBarrier(THREADS);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        List<Thread> threads = new ArrayList<>();
        for (int t = 0; t < THREADS; t++) {
            int id = t;
            threads.add(Thread.ofPlatform().start(() -> {
                try {
                    start.await();
                    body.accept(id);
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            }));
        }
        for (Thread t : threads) {
            t.join();
        }
        assertNull(failure.get(), () -> "a thread failed: " + failure.get());
    }

    @Test
    void shouldKeepABoundsReservationsDisjointUnderContention() throws Exception {
        Vcm vcm = vcmm.createVcm(0x4000_0000L, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        Bound bound = vcm.createBound(8 * MIB, 4096);
        AtomicInteger inside = new AtomicInteger();
        AtomicInteger overlapped = new AtomicInteger();
        race(t -> {
            // ROUNDS, then on until some call overlapped another (bounded), so that the threads really met
            for (int i = 0; i < ROUNDS * 100 && (i < ROUNDS || overlapped.get() == 0); i++) {
                boolean fromBound = (i + t) % 2 == 0;
                if (inside.incrementAndGet() > 1) {
                    overlapped.incrementAndGet();
                }
                Reservation r = fromBound ? bound.reserve(4096 * (1 + i % 8), ReservationAttributes.RW)
                    : vcm.reserve(4096 * (1 + i % 8), ReservationAttributes.RW);
                inside.decrementAndGet();
                boolean in = Long.compareUnsigned(r.address() - bound.start(), bound.length()) < 0;
                if (in != fromBound) {
                    throw new AssertionError(r + " is " + (in ? "inside " : "outside ") + bound);
                }
                if (vcm.reservationAt(r.address()) != r) {
                    throw new AssertionError("lost " + r);
                }
                r.unreserve();
            }
        });
        assertTrue(overlapped.get() > 0, "no call overlapped another");
        assertEquals(8 * MIB, bound.freeBytes(), "every range went back to the bound");
        assertEquals(56 * MIB, vcm.freeBytes(), "and to the VCM");
        assertTrue(vcm.reservations().isEmpty());
        bound.free();
    }

    @Test
    void shouldCountReferencesExactlyUnderContention() throws Exception {
        Vcm vcm = vcmm.createVcm(0x4000_0000L, 64 * MIB);
        Reservation r = vcm.reserve(4096, ReservationAttributes.RW);
        AtomicInteger inside = new AtomicInteger();
        AtomicInteger overlapped = new AtomicInteger();
        race(t -> {
            // cheap calls: on until some overlapped (bounded), so that the threads really met
            for (int i = 0; i < 5_000_000 && (i < ROUNDS * 200 || overlapped.get() == 0); i++) {
                if (inside.incrementAndGet() > 1) {
                    overlapped.incrementAndGet();
                }
                r.ref();
                r.unreserve(); // drops the reference just taken: never the last one
                inside.decrementAndGet();
            }
        });
        assertTrue(overlapped.get() > 0, "no call overlapped another");
        assertEquals(1, r.references());
        assertFalse(r.isReleased());
        r.unreserve();
        assertTrue(r.isReleased());
    }

    /** Attribute changes of one reservation while other threads back and unback others in the same VCM. */
    @Test
    void shouldChangeAttributesWhileOthersBackAndUnback() throws Exception {
        Vcm vcm = vcmm.createVcm(0x4000_0000L, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        Reservation target = vcm.reserve(64 * 1024, ReservationAttributes.RW).back(vcmm.physAlloc("ddr", 64 * 1024, ChunkPolicy.VCMM));
        AtomicInteger inside = new AtomicInteger();
        AtomicInteger overlapped = new AtomicInteger();
        race(t -> {
            if (t == 0) {
                for (int i = 0; i < ROUNDS; i++) {
                    if (inside.incrementAndGet() > 1) {
                        overlapped.incrementAndGet();
                    }
                    target.setAttributes(i % 2 == 0 ? ReservationAttributes.RO : ReservationAttributes.RW);
                    inside.decrementAndGet();
                }
                return;
            }
            Reservation mine = vcm.reserve(16 * 1024, ReservationAttributes.RW);
            PhysMem pm = vcmm.physAlloc("ddr", 16 * 1024, ChunkPolicy.VCMM);
            for (int i = 0; i < ROUNDS * 100 && (i < ROUNDS || overlapped.get() == 0); i++) { // until they met (bounded)
                if (inside.incrementAndGet() > 1) {
                    overlapped.incrementAndGet();
                }
                mine.back(pm);
                mine.unback();
                inside.decrementAndGet();
            }
        });
        assertTrue(overlapped.get() > 0, "no call overlapped another");
        assertEquals(ReservationAttributes.RW, target.attributes(), "the last change was to RW");
        WalkResult.Translation t = (WalkResult.Translation) gpu.translate(target.address() + 4096);
        assertTrue(t.attributes().write());
        assertEquals(target.backingMemory().physicalAddress(4096), t.pa());
    }
}
