package dev.vcmm;

import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.FaultReason;
import dev.vcmm.pagetable.X86_64Format;
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
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Sub-range unback and remap of a reservation, reached from the graph: hitless for the other pages. */
class SubRangeTest {

    static final long MIB = 1L << 20;
    static final long KIB = 1L << 10;
    static final long VA = 0x4000_0000L;
    static final int LEN = (int) (2 * MIB);

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

    /** A 2 MiB reservation backed by one 2 MiB block, filled with {@code pattern(seed)}. */
    Reservation block(int seed) {
        Reservation r = vcm.reserve(LEN, ReservationAttributes.RW, 2 * MIB).back(vcmm.physAlloc("ddr", LEN, ChunkPolicy.HUGE));
        byte[] data = pattern(LEN, seed);
        gpu.write(r.address(), data, 0, LEN);
        return r;
    }

    PhysMem filledMemory(int length, int seed) {
        PhysMem pm = vcmm.physAlloc("ddr", length, ChunkPolicy.VCMM);
        byte[] data = pattern(length, seed);
        for (int o = 0; o < length; o += 4096) {
            pm.memoryType().memory().copyIn(data, o, pm.physicalAddress(o), 4096);
        }
        return pm;
    }

    byte[] read(long va, int n) {
        byte[] b = new byte[n];
        gpu.read(va, b, 0, n);
        return b;
    }

    static byte[] slice(byte[] b, long from, long n) {
        return Arrays.copyOfRange(b, (int) from, (int) (from + n));
    }

    @Test
    void shouldUnbackASubRangeAndKeepEveryOtherPage() {
        Reservation r = block(1);
        PhysMem pm = r.backingMemory();
        r.unback(64 * KIB, 128 * KIB);
        assertTrue(r.isBacked());
        assertEquals(FaultReason.TRANSLATION, assertThrows(DeviceFaultException.class,
            () -> read(r.address() + 64 * KIB, 1)).fault().reason());
        assertEquals(FaultReason.TRANSLATION, assertThrows(DeviceFaultException.class,
            () -> read(r.address() + 192 * KIB - 1, 1)).fault().reason());
        byte[] all = pattern(LEN, 1);
        assertArrayEquals(slice(all, 0, 64 * KIB), read(r.address(), (int) (64 * KIB)));
        assertArrayEquals(slice(all, 192 * KIB, LEN - 192 * KIB), read(r.address() + 192 * KIB, (int) (LEN - 192 * KIB)));
        assertEquals(List.of(), vcmm.whoMaps(pm.physicalAddress(100 * KIB)));
        assertEquals(r.address() + 200 * KIB, vcmm.whoMaps(pm.physicalAddress(200 * KIB)).getFirst().address());
        assertEquals(-1, r.physicalAddress(r.address() + 64 * KIB));
        assertTrue(vcmm.translate(vcm, r.address() + 100 * KIB, vcm).isEmpty());
        // piece by piece, every page: the reservation is unbacked and its memory released
        r.unback(0, 64 * KIB);
        r.unback(192 * KIB, LEN - 192 * KIB);
        assertFalse(r.isBacked());
        assertEquals(0, pm.backingCount());
        assertEquals(List.of(), vcmm.reservationsOf(pm));
        pm.free();
        r.back(vcmm.physAlloc("ddr", LEN, ChunkPolicy.HUGE)); // backs whole again
        read(r.address() + 100 * KIB, 4096);
    }

    @Test
    void shouldRemapASubRangeToOtherMemoryAndOtherOffsets() {
        Reservation r = block(1);
        PhysMem base = r.backingMemory();
        PhysMem other = filledMemory(256 * (int) KIB, 7);
        r.remap(512 * KIB, 128 * KIB, other, 64 * KIB);
        byte[] all = pattern(LEN, 1);
        byte[] o = pattern(256 * (int) KIB, 7);
        assertArrayEquals(slice(all, 0, 512 * KIB), read(r.address(), (int) (512 * KIB)));
        assertArrayEquals(slice(o, 64 * KIB, 128 * KIB), read(r.address() + 512 * KIB, (int) (128 * KIB)));
        assertArrayEquals(slice(all, 640 * KIB, LEN - 640 * KIB), read(r.address() + 640 * KIB, (int) (LEN - 640 * KIB)));
        assertEquals(other.physicalAddress(64 * KIB), r.physicalAddress(r.address() + 512 * KIB));
        assertEquals(1, other.backingCount());
        assertEquals(List.of(r), vcmm.reservationsOf(other));
        assertEquals(r.address() + 512 * KIB + 4096, vcmm.whoMaps(other.physicalAddress(64 * KIB + 4096)).getFirst().address());
        assertEquals(List.of(), vcmm.whoMaps(other.physicalAddress(0)), "the part of other that is not bound");
        assertEquals(List.of(), vcmm.whoMaps(base.physicalAddress(512 * KIB)), "the base's pages that were replaced");
        // a write lands in the new memory
        gpu.write(r.address() + 512 * KIB, new byte[] {42}, 0, 1);
        byte[] b = new byte[1];
        other.memoryType().memory().copyOut(other.physicalAddress(64 * KIB), b, 0, 1);
        assertEquals(42, b[0]);
        // another offset of the same (base) allocation: base page 0 shows at offset 1 MiB too
        r.remap(MIB, 4096, base, 0);
        assertArrayEquals(slice(all, 0, 4096), read(r.address() + MIB, 4096));
        assertEquals(2, vcmm.whoMaps(base.physicalAddress(100)).size());
        assertEquals(1, base.backingCount());
        // a device of another format associated now builds its table with the bindings
        Device cpu = vcmm.device("x86", X86_64Format.INSTANCE);
        vcmm.assoc(vcm, cpu).activate();
        byte[] c = new byte[(int) (128 * KIB)];
        cpu.read(r.address() + 512 * KIB, c, 0, c.length);
        byte[] expect = slice(o, 64 * KIB, 128 * KIB);
        expect[0] = 42;
        assertArrayEquals(expect, c);
        // binding the range back to the base releases other
        r.remap(512 * KIB, 128 * KIB, base, 512 * KIB);
        assertEquals(0, other.backingCount());
        assertEquals(List.of(), vcmm.reservationsOf(other));
        other.free();
        r.unback();
        assertEquals(0, base.backingCount());
        assertNull(r.backingMemory());
    }

    @Test
    void shouldRefuseBadSubRangesAndChangeNothing() {
        Reservation r = block(1);
        PhysMem other = filledMemory(64 * (int) KIB, 2);
        assertThrows(IllegalArgumentException.class, () -> r.unback(1, 4096));
        assertThrows(IllegalArgumentException.class, () -> r.unback(0, 0));
        assertThrows(IllegalArgumentException.class, () -> r.unback(LEN - 4096, 8192));
        assertThrows(IllegalArgumentException.class, () -> r.unback(-4096, 8192));
        assertThrows(IllegalArgumentException.class, () -> r.remap(0, 128 * KIB, other, 0), "too little memory");
        assertThrows(IllegalArgumentException.class, () -> r.remap(0, 4096, other, 100));
        assertThrows(IllegalArgumentException.class, () -> r.remap(4096, LEN, other, 0));
        Vcmm foreign = TestGraphs.graph().ddr(0x8000_0000L, 16 * MIB).pageTables(4 * MIB).build();
        try {
            PhysMem alien = foreign.physAlloc("ddr", 4096, ChunkPolicy.PAGES_4K);
            assertThrows(IllegalArgumentException.class, () -> r.remap(0, 4096, alien, 0));
        } finally {
            foreign.close();
        }
        PhysMem freed = vcmm.physAlloc("ddr", 4096, ChunkPolicy.PAGES_4K);
        freed.free();
        assertThrows(IllegalStateException.class, () -> r.remap(0, 4096, freed, 0));
        Reservation idle = vcm.reserve(64 * KIB, ReservationAttributes.RW);
        assertThrows(IllegalStateException.class, () -> idle.unback(0, 4096));
        assertThrows(IllegalStateException.class, () -> idle.remap(0, 4096, other, 0));
        Vcm oneToOne = vcmm.createOneToOneVcm(vcmm.memoryType("ddr"));
        PhysMem at = vcmm.physAlloc("ddr", 64 * KIB, ChunkPolicy.VCMM);
        Reservation direct = oneToOne.reserveAt(at.physicalAddress(0), 64 * KIB, ReservationAttributes.RW).back(at);
        assertThrows(IllegalArgumentException.class, () -> direct.unback(0, 4096));
        // nothing changed
        assertArrayEquals(pattern(LEN, 1), read(r.address(), LEN));
        assertEquals(0, other.backingCount());
        assertEquals(r.backingMemory().physicalAddress(0), r.physicalAddress(r.address()));
        assertTrue(direct.isBacked());
        assertFalse(idle.isBacked());
    }

    /**
     * Readers on two devices read the whole reservation while the main thread remaps a sub-range back and forth between
     * two allocations: the pages outside the range never fault and always read their bytes; the range reads one
     * allocation's bytes or the other's, page by page, and never faults. The unback guarantee holds too: once a remap
     * away from an allocation returns, no writer's burst lands in it.
     */
    @Test
    void shouldKeepEveryPageReachableWhileASubRangeIsRemapped() throws Exception {
        Device dma = vcmm.device("dma", Arm64Lpae4kFormat.INSTANCE);
        vcmm.assoc(vcm, dma).activate();
        Reservation r = block(1);
        long from = 256 * KIB;
        long n = 64 * KIB;
        PhysMem[] pms = {filledMemory((int) n, 100), filledMemory((int) n, 200)};
        byte[][] expect = {pattern((int) n, 100), pattern((int) n, 200)};
        byte[] all = pattern(LEN, 1);
        AtomicBoolean stop = new AtomicBoolean();
        AtomicBoolean remapping = new AtomicBoolean();
        AtomicLong overlaps = new AtomicLong();
        AtomicLong reads = new AtomicLong();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        CyclicBarrier start = new CyclicBarrier(3);
        List<Thread> readers = new ArrayList<>();
        for (Device d : List.of(gpu, dma)) {
            Thread t = new Thread(() -> {
                byte[] page = new byte[4096];
                try {
                    start.await();
                    for (int i = 0; !stop.get(); i++) {
                        long o = (i * 4096L * 7) % LEN;
                        boolean during = remapping.get();
                        d.read(r.address() + o, page, 0, 4096);
                        if (o >= from && o < from + n) {
                            byte[] a = slice(expect[0], o - from, 4096);
                            byte[] b = slice(expect[1], o - from, 4096);
                            byte[] base = slice(all, o, 4096);
                            if (!Arrays.equals(page, a) && !Arrays.equals(page, b) && !Arrays.equals(page, base)) {
                                throw new AssertionError("page 0x" + Long.toHexString(o) + " read neither memory");
                            }
                        } else if (!Arrays.equals(page, slice(all, o, 4096))) {
                            throw new AssertionError("page 0x" + Long.toHexString(o) + " outside the range changed");
                        }
                        if (during && remapping.get()) {
                            overlaps.incrementAndGet();
                        }
                        reads.incrementAndGet();
                    }
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            });
            t.start();
            readers.add(t);
        }
        start.await();
        int rounds = Boolean.getBoolean("vcmm.long") ? 20_000 : 300;
        // at least `rounds`, then on until a read overlapped a remap (bounded): under load readers may start late
        for (int round = 0; failure.get() == null && (round < rounds || overlaps.get() == 0 && round < rounds * 500);
             round++) {
            remapping.set(true);
            r.remap(from, n, pms[round & 1], 0);
            remapping.set(false);
        }
        stop.set(true);
        for (Thread t : readers) {
            t.join();
        }
        if (failure.get() != null) {
            throw new AssertionError(failure.get());
        }
        assertTrue(overlaps.get() > 0, "some reads ran while a remap did: " + overlaps + " of " + reads);
        assertEquals(0, gpu.stats().failed() + dma.stats().failed());
        System.out.printf("SubRangeTest: %d reads, %d during a remap, %d rounds%n", reads.get(), overlaps.get(), rounds);
    }

    /** Writers hammer the range while it is remapped away from an allocation: once remap returns, the allocation stays as it was. */
    @Test
    void shouldNeverWriteTheOldMemoryAfterRemapReturns() throws Exception {
        Device slow = vcmm.device("slow", DeviceKind.IOMMU, Arm64Lpae4kFormat.INSTANCE, false, DeviceOptions.DEFAULT.withBurstBytes(256));
        vcmm.assoc(vcm, slow).activate();
        Reservation r = block(1);
        int n = 64 * (int) KIB;
        PhysMem[] pms = {filledMemory(n, 3), filledMemory(n, 4)};
        AtomicBoolean stop = new AtomicBoolean();
        AtomicLong attempts = new AtomicLong();
        CyclicBarrier start = new CyclicBarrier(3);
        List<Thread> writers = new ArrayList<>();
        for (int w = 0; w < 2; w++) {
            byte[] data = pattern(8192, 10 + w); // short transfers: many per round (the test memory copies byte by byte)
            Thread t = new Thread(() -> {
                try {
                    start.await();
                } catch (Exception e) {
                    throw new AssertionError(e);
                }
                while (!stop.get()) {
                    slow.write(r.address(), data, 0, data.length);
                    attempts.incrementAndGet();
                }
            });
            t.start();
            writers.add(t);
        }
        start.await();
        int rounds = Boolean.getBoolean("vcmm.long") ? 20_000 : 100;
        int violations = 0;
        long deadline = System.nanoTime() + 20_000_000_000L;
        int round = 0;
        for (; (round < rounds || slow.stats().syncWaits() == 0) && System.nanoTime() < deadline; round++) {
            PhysMem away = pms[round & 1];
            r.remap(0, n, away, 0);
            long seen = attempts.get();
            for (long spin = 0; attempts.get() < seen + 2 && spin < 10_000_000; spin++) {
                Thread.onSpinWait(); // the writers land bursts in `away`
            }
            r.remap(0, n, pms[(round + 1) & 1], 0); // away from it: no burst may land in it after this returns
            byte[] snapshot = page0(away);
            seen = attempts.get();
            for (long spin = 0; attempts.get() < seen + 2 && spin < 10_000_000; spin++) {
                Thread.onSpinWait();
            }
            if (!Arrays.equals(snapshot, page0(away))) {
                violations++;
            }
        }
        stop.set(true);
        for (Thread t : writers) {
            t.join();
        }
        assertEquals(0, violations, "old memory changed after remap returned, in " + violations + " of " + round + " rounds");
        assertTrue(slow.stats().syncWaits() > 0, "some remap found a burst in flight: " + slow.stats());
    }

    /** @return the first 4 KiB page of {@code pm}, read from physical memory in one copy */
    static byte[] page0(PhysMem pm) {
        byte[] b = new byte[4096];
        pm.memoryType().memory().copyOut(pm.physicalAddress(0), b, 0, 4096);
        return b;
    }
}
