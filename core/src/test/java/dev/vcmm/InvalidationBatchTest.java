package dev.vcmm;

import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static dev.vcmm.DeviceDmaTest.pattern;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Batched invalidation: gathered at the calls, merged and issued at commit, with the single calls' guarantee. */
class InvalidationBatchTest {

    static final long MIB = 1L << 20;
    static final long VA = 0x4000_0000L;
    static final int BUF = 16 << 10;

    Vcmm vcmm;
    Vcm vcm;
    List<Device> devices;

    @BeforeEach
    void open() {
        vcmm = TestGraphs.graph().ddr(0x8000_0000L, 256 * MIB).pageTables(16 * MIB).build();
        vcm = vcmm.createVcm(VA, 64 * MIB);
        devices = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            Device d = vcmm.device("dev" + i, Arm64Lpae4kFormat.INSTANCE);
            vcmm.assoc(vcm, d).activate();
            devices.add(d);
        }
    }

    @AfterEach
    void close() {
        vcmm.close();
    }

    /** {@code n} buffers at consecutive addresses from {@code first}, {@code gap} bytes apart, each read once by every device. */
    List<Reservation> buffers(int n, long gap) {
        List<Reservation> out = new ArrayList<>();
        byte[] b = new byte[1];
        for (int i = 0; i < n; i++) {
            Reservation r = vcm.reserveAt(VA + i * (BUF + gap), BUF, ReservationAttributes.RW)
                .back(vcmm.physAlloc("ddr", BUF, ChunkPolicy.PAGES_4K));
            for (Device d : devices) {
                for (int o = 0; o < BUF; o += 4096) {
                    d.read(r.address() + o, b, 0, 1); // a byte a page fills the IOTLB (the test memory is slow per byte)
                }
            }
            out.add(r);
        }
        return out;
    }

    @Test
    void shouldMergeAdjacentUnbacksIntoOneInvalidationPerDevice() {
        List<Reservation> rs = buffers(100, 0);
        List<PhysMem> pms = rs.stream().map(Reservation::backingMemory).toList();
        long[] ranges = devices.stream().mapToLong(d -> d.iotlb().rangeInvalidations()).toArray();
        long[] syncs = devices.stream().mapToLong(d -> d.stats().syncs()).toArray();
        InvalidationBatch batch = vcmm.batch();
        try (batch) {
            for (Reservation r : rs) {
                r.unback();
            }
            assertFalse(rs.getFirst().isBacked());
            // before the commit the memory is still held: it cannot be freed
            assertThrows(IllegalStateException.class, () -> pms.getFirst().free());
            assertEquals(1, pms.getFirst().backingCount());
            assertEquals(ranges[0], devices.getFirst().iotlb().rangeInvalidations(), "nothing issued before the commit");
        }
        assertEquals(300, batch.gatheredInvalidations());
        assertEquals(3, batch.invalidationOperations(), "one merged range per device");
        for (int i = 0; i < devices.size(); i++) {
            Device d = devices.get(i);
            assertEquals(ranges[i] + 1, d.iotlb().rangeInvalidations());
            assertEquals(syncs[i] + 1, d.stats().syncs());
            assertEquals(0, d.iotlb().valid());
            assertThrows(DeviceFaultException.class, () -> d.read(VA, new byte[1], 0, 1));
        }
        for (PhysMem pm : pms) {
            assertEquals(0, pm.backingCount());
            pm.free();
        }
    }

    @Test
    void shouldFlushWholeWhenTooManyRangesRemain() {
        List<Reservation> rs = buffers(100, 4096); // a page of gap: no two ranges merge
        long flushes = devices.getFirst().iotlb().flushes();
        InvalidationBatch batch = vcmm.batch();
        try (batch) {
            for (Reservation r : rs) {
                r.unback();
            }
        }
        assertEquals(3, batch.invalidationOperations());
        assertEquals(flushes + 1, devices.getFirst().iotlb().flushes());
        assertEquals(0, devices.getFirst().iotlb().valid());
    }

    @Test
    void shouldGatherSubRangeUnbacksRemapsAndDeactivations() {
        Device gpu = devices.getFirst();
        Vcm ctx = vcmm.createVcm(VA, 64 * MIB);
        Vcm other = vcmm.createVcm(VA, 64 * MIB);
        Association a1 = vcmm.assoc(ctx, gpu, 1).activate();
        vcmm.assoc(other, gpu, 2).activate();
        Reservation c1 = ctx.reserveAt(VA, BUF, ReservationAttributes.RW).back(vcmm.physAlloc("ddr", BUF, ChunkPolicy.PAGES_4K));
        Reservation c2 = other.reserveAt(VA, BUF, ReservationAttributes.RW).back(vcmm.physAlloc("ddr", BUF, ChunkPolicy.PAGES_4K));
        List<Reservation> rs = buffers(4, 0);
        byte[] b = new byte[BUF];
        gpu.read(1, VA, b, 0, BUF);
        gpu.read(2, VA, b, 0, BUF);
        PhysMem fresh = vcmm.physAlloc("ddr", 8192, ChunkPolicy.PAGES_4K);
        PhysMem old = rs.get(1).backingMemory();
        InvalidationBatch batch = vcmm.batch();
        try (batch) {
            rs.get(0).unback(4096, 12288);
            rs.get(1).remap(0, 8192, fresh, 0);
            a1.deactivate();
            assertThrows(VcmmBusyException.class, a1::deassoc, "its sync is pending");
            assertFalse(a1.isActive());
        }
        // gpu: PASID 1 whole; PASID 0: [buf0 + 4K, +12K) and [buf1, +8K) are adjacent -> one range; others: one range
        assertEquals(2 + 1 + 1, batch.invalidationOperations());
        assertThrows(DeviceFaultException.class, () -> gpu.read(1, VA, new byte[1], 0, 1));
        long misses = gpu.iotlb().misses();
        gpu.read(2, VA, b, 0, BUF);
        assertEquals(misses, gpu.iotlb().misses(), "PASID 2 was not flushed");
        assertEquals(fresh.physicalAddress(0), rs.get(1).physicalAddress(rs.get(1).address()));
        assertEquals(1, old.backingCount(), "the base allocation stays until the reservation is unbacked");
        a1.deassoc();
        c1.unback();
        c2.unback();
    }

    @Test
    void shouldRefuseNestingAndForeignThreadsAndChangeNothing() throws Exception {
        List<Reservation> rs = buffers(2, 0);
        InvalidationBatch batch = vcmm.batch();
        try {
            assertThrows(IllegalStateException.class, vcmm::batch);
            rs.getFirst().unback();
            AtomicReference<Throwable> other = new AtomicReference<>();
            Thread t = new Thread(() -> {
                try {
                    batch.close();
                } catch (Throwable e) {
                    other.set(e);
                }
                rs.get(1).unback(); // not gathered: another thread's call is issued at once
            });
            t.start();
            t.join();
            assertTrue(other.get() instanceof IllegalStateException, String.valueOf(other.get()));
            assertFalse(batch.isCommitted());
            assertEquals(2, batch.gatheredInvalidations() / devices.size() + 1, "only this thread's unback gathered");
        } finally {
            batch.close();
        }
        assertTrue(batch.isCommitted());
        batch.close(); // idempotent
        try (InvalidationBatch again = vcmm.batch()) {
            assertEquals(0, again.gatheredInvalidations());
        }
    }

    /**
     * Writers hammer 8 buffers while the main thread unbacks them all in one batch: after the batch commits, no burst
     * lands in their memory (the single unback's guarantee, at commit).
     */
    @Test
    void shouldNeverWriteReleasedMemoryAfterTheBatchCommits() throws Exception {
        Device slow = vcmm.device("slow", DeviceKind.IOMMU, Arm64Lpae4kFormat.INSTANCE, false, DeviceOptions.DEFAULT.withBurstBytes(256));
        vcmm.assoc(vcm, slow).activate();
        int n = 8;
        List<Reservation> rs = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            rs.add(vcm.reserveAt(VA + (long) i * BUF, BUF, ReservationAttributes.RW));
        }
        PhysMem[][] pms = new PhysMem[2][n];
        for (int k = 0; k < 2; k++) {
            for (int i = 0; i < n; i++) {
                pms[k][i] = vcmm.physAlloc("ddr", BUF, ChunkPolicy.PAGES_4K);
            }
        }
        AtomicBoolean stop = new AtomicBoolean();
        AtomicLong attempts = new AtomicLong();
        CyclicBarrier start = new CyclicBarrier(3);
        List<Thread> writers = new ArrayList<>();
        for (int w = 0; w < 2; w++) {
            byte[] data = pattern(2 * BUF, 10 + w); // the first two buffers: short transfers, many per round
            Thread t = new Thread(() -> {
                try {
                    start.await();
                } catch (Exception e) {
                    throw new AssertionError(e);
                }
                while (!stop.get()) {
                    try {
                        slow.write(VA, data, 0, data.length);
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
        int rounds = Boolean.getBoolean("vcmm.long") ? 10_000 : 60;
        int violations = 0;
        long deadline = System.nanoTime() + 20_000_000_000L;
        int round = 0;
        for (; (round < rounds || slow.stats().syncWaits() == 0) && System.nanoTime() < deadline; round++) {
            PhysMem[] set = pms[round & 1];
            for (int i = 0; i < n; i++) {
                rs.get(i).back(set[i]);
            }
            long written = slow.stats().bytesWritten();
            for (long spin = 0; slow.stats().bytesWritten() < written + 4 * 256 && spin < 10_000_000; spin++) {
                Thread.onSpinWait();
            }
            try (InvalidationBatch batch = vcmm.batch()) {
                for (Reservation r : rs) {
                    r.unback();
                }
            }
            byte[][] snapshot = new byte[2][]; // the two buffers the writers write
            for (int i = 0; i < 2; i++) {
                snapshot[i] = page0(set[i]);
            }
            long seen = attempts.get();
            for (long spin = 0; attempts.get() < seen + 2 && spin < 10_000_000; spin++) {
                Thread.onSpinWait();
            }
            for (int i = 0; i < 2; i++) {
                if (!Arrays.equals(snapshot[i], page0(set[i]))) {
                    violations++;
                }
            }
        }
        stop.set(true);
        for (Thread t : writers) {
            t.join();
        }
        System.out.printf("InvalidationBatchTest: %d rounds, %d commits found a burst in flight%n", round, slow.stats().syncWaits());
        assertEquals(0, violations, "memory changed after the batch committed, " + violations + " times in " + round + " rounds");
        assertTrue(slow.stats().syncWaits() > 0, "some commit found a burst in flight: " + slow.stats());
    }

    /** @return the first 4 KiB page of {@code pm}, read from physical memory in one copy */
    static byte[] page0(PhysMem pm) {
        byte[] b = new byte[4096];
        pm.memoryType().memory().copyOut(pm.physicalAddress(0), b, 0, 4096);
        return b;
    }
}
