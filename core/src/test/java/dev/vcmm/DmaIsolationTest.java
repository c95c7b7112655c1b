package dev.vcmm;

import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.FaultReason;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.testing.StallingMemory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Isolation is a timing guarantee: once unback, deactivate, crash or reset returns, no DMA burst that used a
 * removed translation is still moving bytes. Each test forces its interleaving: a DMA stalls inside its copy
 * ({@link StallingMemory}, which needs no hook in the code under test) or between reading a device slot and walking
 * (the {@link Device#slotReadHook} pause point), and the test checks that the invalidating call waits for the burst
 * and that nothing lands after it returned.
 */
class DmaIsolationTest {

    static final long DDR = 0x8000_0000L;
    static final long MIB = 1L << 20;
    static final long VA = 0x4000_0000L;
    static final int BURST = DeviceOptions.MAX_BURST;
    /** How long an invalidation must stay blocked behind a stalled burst to count as waiting for it. */
    static final long BLOCKED_MS = 300;

    StallingMemory.Backend stalling;
    Vcmm vcmm;
    StallingMemory ddr;

    @BeforeEach
    void open() {
        stalling = new StallingMemory.Backend();
        vcmm = Vcmm.builder()
            .memoryType(MemoryType.builder("ddr").base(DDR).size(64 * MIB).backend(stalling))
            .memoryType(MemoryType.builder("pt").base(0x1000_0000L).size(16 * MIB))
            .pageTableMemory("pt")
            .build();
        ddr = stalling.memory();
    }

    @AfterEach
    void close() {
        ddr.release();
        Device.slotReadHook = null;
        vcmm.close();
    }

    static byte[] pattern(int length, int seed) {
        byte[] b = new byte[length];
        for (int i = 0; i < length; i++) {
            b[i] = (byte) (i * 31 + seed * 17 + (i >>> 8) | 1); // never zero
        }
        return b;
    }

    byte[] physical(long pa, int length) {
        byte[] b = new byte[length];
        ddr.copyOut(pa, b, 0, length);
        return b;
    }

    /** Runs {@code r} in a new thread; the future fails with what it throws. */
    static CompletableFuture<Void> async(Runnable r) {
        CompletableFuture<Void> f = new CompletableFuture<>();
        Thread t = new Thread(() -> {
            try {
                r.run();
                f.complete(null);
            } catch (Throwable e) {
                f.completeExceptionally(e);
            }
        }, "dma-isolation-test");
        t.setDaemon(true);
        t.start();
        return f;
    }

    static Throwable failure(CompletableFuture<?> f) throws InterruptedException {
        try {
            f.get(10, TimeUnit.SECONDS);
            return null;
        } catch (java.util.concurrent.ExecutionException e) {
            return e.getCause();
        } catch (java.util.concurrent.TimeoutException e) {
            throw new AssertionError("did not finish in 10 s", e);
        }
    }

    /** A 2 MiB reservation of an active arm64 device, backed by one 2 MiB block. */
    record Setup(Device gpu, Association assoc, Reservation r, PhysMem pm) {
    }

    Setup setup() {
        Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        Association a = vcmm.assoc(vcm, gpu).activate();
        PhysMem pm = vcmm.physAlloc("ddr", 2 * MIB, ChunkPolicy.HUGE);
        Reservation r = vcm.reserve(2 * MIB, ReservationAttributes.RW, 2 * MIB).back(pm);
        return new Setup(gpu, a, r, pm);
    }

    @Test
    void shouldNotLetAStalledDmaWriteLandInMemoryGivenToAnotherOwner() throws Exception {
        Setup s = setup();
        long pa = s.pm().physicalAddress(0);
        byte[] data = pattern((int) (2 * MIB), 1);
        ddr.arm(pa + MIB); // the write stalls half-way, inside its copy
        CompletableFuture<Void> dma = async(() -> s.gpu().write(s.r().address(), data, 0, data.length));
        assertTrue(ddr.awaitStalled(5_000), "the DMA reached the stall");

        CompletableFuture<Void> unback = async(() -> {
            s.r().unback();
            s.r().unreserve();
            s.pm().free();
        });
        Thread.sleep(BLOCKED_MS);
        assertFalse(unback.isDone(), "unback waits for the burst in flight (the invalidation's sync)");
        ddr.release();
        assertEquals(null, failure(unback));
        assertInstanceOf(DeviceFaultException.class, failure(dma), "the bursts after the unback fault");

        // another owner takes the same block: it must not see the stalled DMA's later bytes
        PhysMem next = vcmm.physAlloc("ddr", 2 * MIB, ChunkPolicy.HUGE);
        assertEquals(pa, next.physicalAddress(0), "the recipe: the new owner gets the same 2 MiB block");
        int landed = (int) (MIB + BURST); // the stalled burst itself finished before unback returned
        assertArrayEquals(new byte[(int) (2 * MIB) - landed], physical(pa + landed, (int) (2 * MIB) - landed),
            "nothing of the DMA landed after its burst: the bytes after it were never written");
        assertEquals(landed, s.gpu().stats().bytesWritten(), "the write stopped after the stalled burst");
        assertTrue(s.gpu().stats().syncWaits() >= 1, "the unback's sync found the burst in flight");
    }

    @Test
    void shouldWaitForTheBurstInFlightOnDeactivate() throws Exception {
        Setup s = setup();
        long pa = s.pm().physicalAddress(0);
        ddr.arm(pa + 3 * BURST + 100);
        byte[] into = new byte[(int) (2 * MIB)];
        CompletableFuture<Void> dma = async(() -> s.gpu().read(s.r().address(), into, 0, into.length));
        assertTrue(ddr.awaitStalled(5_000));
        CompletableFuture<Void> deactivate = async(() -> s.assoc().deactivate());
        Thread.sleep(BLOCKED_MS);
        assertFalse(deactivate.isDone(), "deactivate waits for the burst in flight");
        ddr.release();
        assertEquals(null, failure(deactivate));
        DeviceFaultException e = assertInstanceOf(DeviceFaultException.class, failure(dma));
        assertEquals(FaultReason.TRANSLATION, e.fault().reason(), "no active table after deactivate");
        assertEquals(4L * BURST, s.gpu().stats().bytesRead(), "three bursts and the stalled one, nothing after");
    }

    @Test
    void shouldWaitForTheBurstInFlightOnCrashAndReset() throws Exception {
        Setup s = setup();
        long pa = s.pm().physicalAddress(0);
        byte[] data = pattern((int) MIB, 2);
        ddr.arm(pa + 5 * BURST);
        CompletableFuture<Void> dma = async(() -> s.gpu().write(s.r().address(), data, 0, data.length));
        assertTrue(ddr.awaitStalled(5_000));
        CompletableFuture<Void> crash = async(() -> s.gpu().crash());
        Thread.sleep(BLOCKED_MS);
        assertFalse(crash.isDone(), "crash waits for the burst in flight");
        ddr.release();
        assertEquals(null, failure(crash));
        Throwable t = failure(dma);
        assertInstanceOf(IllegalStateException.class, t);
        assertTrue(t.getMessage().contains("crashed"), t.getMessage());
        assertArrayEquals(new byte[(int) MIB - 6 * BURST], physical(pa + 6 * BURST, (int) MIB - 6 * BURST),
            "nothing moved after the crash returned");

        // reset waits too: a one-to-one DMA of another device is unaffected, this device's new DMA is refused
        s.gpu().reset();
        assertFalse(s.gpu().isCrashed());
        assertThrows(DeviceFaultException.class, () -> s.gpu().read(s.r().address(), new byte[8], 0, 8),
            "associations stay inactive after reset");
        s.assoc().activate();
        ddr.arm(pa + 2 * BURST);
        byte[] into = new byte[4 * BURST];
        CompletableFuture<Void> again = async(() -> s.gpu().read(s.r().address(), into, 0, into.length));
        assertTrue(ddr.awaitStalled(5_000));
        CompletableFuture<Void> reset = async(() -> s.gpu().reset());
        Thread.sleep(BLOCKED_MS);
        assertFalse(reset.isDone(), "reset waits for the burst in flight");
        ddr.release();
        assertEquals(null, failure(reset));
        assertEquals(null, failure(again), "a reset of a running device lets its DMA finish");
    }

    @Test
    void shouldWaitForOneToOneBurstsOnUnback() throws Exception {
        Device display = vcmm.oneToOneDevice("display");
        Vcm vcm = vcmm.createOneToOneVcm(vcmm.memoryType("ddr"));
        vcmm.assoc(vcm, display).activate();
        PhysMem pm = vcmm.physAlloc("ddr", 64 * 1024, ChunkPolicy.VCMM);
        long pa = pm.physicalAddress(0);
        Reservation r = vcm.reserveAt(pa, 64 * 1024, ReservationAttributes.RW).back(pm);
        byte[] data = pattern(64 * 1024, 3);
        ddr.arm(pa + 2 * BURST);
        CompletableFuture<Void> dma = async(() -> display.write(pa, data, 0, data.length));
        assertTrue(ddr.awaitStalled(5_000));
        CompletableFuture<Void> unback = async(r::unback);
        Thread.sleep(BLOCKED_MS);
        assertFalse(unback.isDone(), "unback of a one-to-one VCM waits for the burst in flight");
        ddr.release();
        assertEquals(null, failure(unback));
        assertInstanceOf(DeviceFaultException.class, failure(dma));
        assertArrayEquals(new byte[64 * 1024 - 3 * BURST], physical(pa + 3 * BURST, 64 * 1024 - 3 * BURST));
    }

    /**
     * Defect 1 from the device side: a translation reads its slot, then its VCM's table, then walks; deassoc closes
     * the table. The translation is fenced, so the deactivate that must precede deassoc waits for it, and the walk
     * never reads a closed (and reused) table.
     */
    @Test
    void shouldNotLetDeassocCloseATableUnderADeviceWalk() throws Exception {
        Setup s = setup();
        long pa = s.pm().physicalAddress(0);
        java.util.concurrent.CountDownLatch paused = new java.util.concurrent.CountDownLatch(1);
        java.util.concurrent.CountDownLatch go = new java.util.concurrent.CountDownLatch(1);
        Thread walker = Thread.currentThread();
        AtomicReference<Thread> translating = new AtomicReference<>();
        Device.slotReadHook = () -> {
            if (Thread.currentThread() == translating.get()) {
                paused.countDown();
                try {
                    go.await(10, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        };
        AtomicReference<WalkResult> result = new AtomicReference<>();
        CompletableFuture<Void> translate = new CompletableFuture<>();
        Thread t = new Thread(() -> {
            result.set(s.gpu().translate(s.r().address() + 0x1234));
            translate.complete(null);
        });
        translating.set(t);
        t.start();
        assertTrue(paused.await(5, TimeUnit.SECONDS));
        assertNotNull(walker);

        CompletableFuture<Void> teardown = async(() -> {
            s.assoc().deactivate();
            s.r().unback();
            s.assoc().deassoc(); // closes the VCM's only arm64 table
            // another address space gets the freed table pages and maps the same address elsewhere
            Device other = vcmm.device("other", Arm64Lpae4kFormat.INSTANCE);
            Vcm vcm2 = vcmm.createVcm(VA, 64 * MIB);
            vcmm.assoc(vcm2, other).activate();
            vcm2.reserveAt(s.r().address(), 2 * MIB, ReservationAttributes.RW)
                .back(vcmm.physAlloc("ddr", 2 * MIB, ChunkPolicy.HUGE));
        });
        Thread.sleep(BLOCKED_MS);
        assertFalse(teardown.isDone(), "deactivate waits for the fenced translation");
        go.countDown();
        translate.get(10, TimeUnit.SECONDS);
        assertEquals(null, failure(teardown));
        WalkResult.Translation tr = assertInstanceOf(WalkResult.Translation.class, result.get());
        assertEquals(pa + 0x1234, tr.pa(), "the walk read the table it started in, not another address space's");
    }

    /**
     * Many rounds of back, DMA, unback while two threads write through the device without pause: after each unback
     * returns, the memory it released is snapshotted and must not change while the writers keep going (their bursts
     * now fault). Counts the unbacks whose sync found a burst in flight, to prove the windows overlapped.
     */
    @Test
    void shouldNeverWriteReleasedMemoryAfterUnbackReturnsUnderContention() throws Exception {
        Device gpu = vcmm.device("gpu", DeviceKind.IOMMU, Arm64Lpae4kFormat.INSTANCE, false,
            DeviceOptions.DEFAULT.withBurstBytes(256));
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        int len = 64 * 1024;
        PhysMem[] pms = {vcmm.physAlloc("ddr", len, ChunkPolicy.VCMM), vcmm.physAlloc("ddr", len, ChunkPolicy.VCMM)};
        Reservation r = vcm.reserve(len, ReservationAttributes.RW, len);
        java.util.concurrent.atomic.AtomicBoolean stop = new java.util.concurrent.atomic.AtomicBoolean();
        java.util.concurrent.atomic.AtomicLong attempts = new java.util.concurrent.atomic.AtomicLong();
        java.util.concurrent.CyclicBarrier start = new java.util.concurrent.CyclicBarrier(3);
        List<Thread> writers = new java.util.ArrayList<>();
        for (int w = 0; w < 2; w++) {
            byte[] data = pattern(len, 10 + w);
            Thread t = new Thread(() -> {
                try {
                    start.await();
                } catch (Exception e) {
                    throw new AssertionError(e);
                }
                while (!stop.get()) {
                    try {
                        gpu.write(r.address(), data, 0, data.length);
                    } catch (DeviceFaultException expected) {
                        // unbacked meanwhile
                    }
                    attempts.incrementAndGet();
                }
            });
            t.start();
            writers.add(t);
        }
        start.await();
        int rounds = Boolean.getBoolean("vcmm.long") ? 20_000 : 200;
        int violations = 0;
        // at least `rounds` rounds, and on until some unback's sync found a burst in flight, within 30 s
        long deadline = System.nanoTime() + 30_000_000_000L;
        int round = 0;
        for (; (round < rounds || gpu.stats().syncWaits() == 0) && System.nanoTime() < deadline; round++) {
            PhysMem pm = pms[round & 1];
            long written = gpu.stats().bytesWritten();
            r.back(pm);
            for (long spin = 0; gpu.stats().bytesWritten() < written + 4 * 256 && spin < 10_000_000; spin++) {
                Thread.onSpinWait(); // let the writers land a few bursts
            }
            r.unback();
            byte[] snapshot = physical(pm.physicalAddress(0), len);
            long seen = attempts.get();
            for (long spin = 0; attempts.get() < seen + 2 && spin < 10_000_000; spin++) {
                Thread.onSpinWait(); // every writer finished the transfer it was in
            }
            if (!java.util.Arrays.equals(snapshot, physical(pm.physicalAddress(0), len))) {
                violations++;
            }
        }
        stop.set(true);
        for (Thread t : writers) {
            t.join();
        }
        assertEquals(0, violations, "memory changed after unback returned, in " + violations + " of " + round + " rounds");
        assertTrue(gpu.stats().syncWaits() > 0, "some unback found a burst in flight: " + gpu.stats());
    }
}
