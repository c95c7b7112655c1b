package dev.vcmm;

import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Page requests (ATS/PRI): a bounded queue, a handler thread, DMA that waits for the answer. */
class PageRequestsTest {

    static final long MIB = 1L << 20;
    static final long VA = 0x4000_0000L;
    static final long BUF = 64 << 10;

    Vcmm vcmm;
    Device gpu;
    Vcm vcm;

    @BeforeEach
    void open() {
        vcmm = TestGraphs.graph().ddr(0x8000_0000L, 256 * MIB).pageTables(16 * MIB).build();
        gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        vcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
    }

    @AfterEach
    void close() {
        vcmm.close();
    }

    /** Backs the reservation holding the request's address; refuses an address outside every reservation. */
    boolean backOnDemand(PageRequests.PageRequest request) {
        Reservation r = vcm.reservationAt(request.address());
        if (r == null) {
            return false;
        }
        try {
            r.back(vcmm.physAlloc("ddr", r.length(), ChunkPolicy.VCMM));
        } catch (IllegalStateException alreadyBacked) {
            // backed meanwhile (or being unbacked): walk again
        }
        return true;
    }

    /** The demand-paging scenario: a device walks a 4 MiB buffer of 64 unbacked reservations; pages arrive on request. */
    @Test
    void shouldBackEveryPieceOnRequestWhileTheDeviceWalks() {
        List<Reservation> pieces = new ArrayList<>();
        for (int i = 0; i < 64; i++) {
            pieces.add(vcm.reserveAt(VA + i * BUF, BUF, ReservationAttributes.RW));
        }
        try (PageRequests pri = PageRequests.start(gpu, 8, this::backOnDemand)) {
            byte[] page = new byte[1];
            for (long o = 0; o < 64 * BUF; o += 4096) {
                gpu.read(VA + o, page, 0, 1);
            }
            PageRequests.Stats s = pri.stats();
            assertEquals(64, s.requests(), s.toString());
            assertEquals(64, s.granted());
            assertEquals(0, s.refused() + s.queueFull());
            assertTrue(s.meanLatencyNanos() > 0 && s.maxLatencyNanos() >= s.meanLatencyNanos(), s.toString());
            assertEquals(64, gpu.stats().faults());
            assertEquals(64, gpu.stats().retries());
            assertEquals(0, gpu.stats().failed());
            assertTrue(pieces.stream().allMatch(Reservation::isBacked));
            System.out.printf("PageRequestsTest: demand paging of 4 MiB: %d requests, mean latency %.1f us, max %.1f us, %d faults%n",
                s.requests(), s.meanLatencyNanos() / 1e3, s.maxLatencyNanos() / 1e3, gpu.stats().faults());
        }
        // closed: the device has no handler any more
        DeviceFaultException e = assertThrows(DeviceFaultException.class, () -> gpu.read(VA + 64 * BUF, new byte[1], 0, 1));
        assertTrue(e.getMessage().contains("no fault handler"), e.getMessage());
    }

    @Test
    void shouldFailWithAClearReasonWhenTheQueueIsFullOrTheRequestRefused() throws Exception {
        CountDownLatch serving = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        PageRequests pri = PageRequests.start(gpu, 1, request -> {
            serving.countDown();
            try {
                release.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            return false;
        });
        try {
            AtomicReference<Throwable> a = new AtomicReference<>();
            AtomicReference<Throwable> b = new AtomicReference<>();
            Thread ta = new Thread(() -> a.set(assertThrows(DeviceFaultException.class, () -> gpu.read(VA, new byte[1], 0, 1))));
            ta.start();
            assertTrue(serving.await(10, TimeUnit.SECONDS)); // the handler thread holds a's request
            Thread tb = new Thread(() -> b.set(assertThrows(DeviceFaultException.class, () -> gpu.read(VA + 4096, new byte[1], 0, 1))));
            tb.start();
            for (long spin = 0; pri.queued() < 1 && spin < 1_000_000_000L; spin++) {
                Thread.onSpinWait(); // b's request waits in the queue: it is full now
            }
            DeviceFaultException full = assertThrows(DeviceFaultException.class, () -> gpu.read(VA + 8192, new byte[1], 0, 1));
            assertTrue(full.getMessage().contains("page request queue full (capacity 1)"), full.getMessage());
            release.countDown();
            ta.join();
            tb.join();
            assertTrue(a.get().getMessage().contains("page request refused"), String.valueOf(a.get()));
            assertTrue(b.get().getMessage().contains("page request refused"), String.valueOf(b.get()));
            PageRequests.Stats s = pri.stats();
            assertEquals(2, s.requests());
            assertEquals(2, s.refused());
            assertEquals(1, s.queueFull());
            assertEquals(3, gpu.stats().failed());
        } finally {
            release.countDown();
            pri.close();
        }
        assertThrows(IllegalArgumentException.class, () -> PageRequests.start(gpu, 0, r -> true));
    }

    @Test
    void shouldTerminateFaultsThatAreNotMisses() {
        Reservation ro = vcm.reserve(BUF, ReservationAttributes.RO).back(vcmm.physAlloc("ddr", BUF, ChunkPolicy.VCMM));
        try (PageRequests pri = PageRequests.start(gpu, 4, r -> true)) {
            DeviceFaultException e = assertThrows(DeviceFaultException.class, () -> gpu.write(ro.address(), new byte[1], 0, 1));
            assertTrue(e.getMessage().contains("terminated by the fault handler"), e.getMessage());
            assertEquals(0, pri.stats().requests());
        }
    }

    /**
     * Two readers walk 16 reservations while a third thread unbacks them at random (barrier start): every miss the
     * unbacks cause is served by a page request, and a read either succeeds or, when the unbacker won eight times in a
     * row, fails saying so; never with another reason.
     */
    @Test
    void shouldServePageRequestsWhileReservationsAreUnbacked() throws Exception {
        List<Reservation> pieces = new ArrayList<>();
        for (int i = 0; i < 16; i++) {
            pieces.add(vcm.reserveAt(VA + i * BUF, BUF, ReservationAttributes.RW));
        }
        AtomicBoolean stop = new AtomicBoolean();
        AtomicLong reads = new AtomicLong();
        AtomicLong exhausted = new AtomicLong();
        AtomicLong unbacks = new AtomicLong();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        CyclicBarrier start = new CyclicBarrier(3);
        try (PageRequests pri = PageRequests.start(gpu, 4, this::backOnDemand)) {
            List<Thread> threads = new ArrayList<>();
            for (int t = 0; t < 2; t++) {
                int seed = t;
                threads.add(new Thread(() -> {
                    byte[] b = new byte[16];
                    try {
                        start.await();
                        for (int i = seed; !stop.get(); i++) {
                            try {
                                gpu.read(VA + (i * 7L % 16) * BUF + (i % 16) * 4096, b, 0, b.length);
                                reads.incrementAndGet();
                            } catch (DeviceFaultException e) {
                                if (!e.getMessage().contains("still faulting after")) {
                                    throw e;
                                }
                                exhausted.incrementAndGet();
                            }
                        }
                    } catch (Throwable e) {
                        failure.compareAndSet(null, e);
                    }
                }));
            }
            threads.add(new Thread(() -> {
                try {
                    start.await();
                    for (int i = 0; !stop.get(); i++) {
                        Reservation r = pieces.get(i * 5 % 16);
                        PhysMem pm = r.backingMemory();
                        try {
                            r.unback();
                            pm.free();
                            unbacks.incrementAndGet();
                        } catch (IllegalStateException | NullPointerException notBacked) {
                            // not backed now, or being backed
                        }
                        Thread.sleep(0, 200_000);
                    }
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            }));
            threads.forEach(Thread::start);
            long deadline = System.nanoTime() + 2_000_000_000L;
            while (System.nanoTime() < deadline && (unbacks.get() < 200 || pri.stats().granted() < 200) && failure.get() == null) {
                Thread.sleep(10);
            }
            stop.set(true);
            for (Thread t : threads) {
                t.join();
            }
            if (failure.get() != null) {
                throw new AssertionError(failure.get());
            }
            PageRequests.Stats s = pri.stats();
            assertTrue(unbacks.get() > 0 && s.granted() > 0, "requests served while unbacking: " + s + ", " + unbacks + " unbacks");
            assertEquals(0, s.refused() + s.queueFull(), s.toString());
            System.out.printf("PageRequestsTest: %d reads, %d retries exhausted, %d unbacks, %s%n", reads.get(), exhausted.get(),
                unbacks.get(), s);
        }
    }
}
