package dev.vcmm;

import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.Armv7ShortFormat;
import dev.vcmm.pagetable.CachePolicy;
import dev.vcmm.pagetable.FaultReason;
import dev.vcmm.pagetable.RiscvSv39Format;
import dev.vcmm.pagetable.WalkResult;
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

import static dev.vcmm.testing.TestGraphs.MIB;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link Reservation#setAttributes} (the RFC's {@code vcm_set_res_attr}): permissions and caching of a backed
 * reservation change in place in every format's table, the IOTLBs forget the old ones, DMA in flight is waited for,
 * and what a format cannot express is refused with nothing changed.
 */
class ResAttrTest {

    static final long VA = 0x4000_0000L;
    static final ReservationAttributes RO = ReservationAttributes.RO;
    static final ReservationAttributes RW = ReservationAttributes.RW;

    Vcmm vcmm;
    Device arm;
    Device v7;
    Device x86;

    @BeforeEach
    void open() {
        vcmm = TestGraphs.graph().ddr(64 * MIB).pageTables(16 * MIB).secure(8 * MIB)
            .device("arm", Arm64Lpae4kFormat.INSTANCE).device("v7", Armv7ShortFormat.INSTANCE)
            .device("x86", X86_64Format.INSTANCE).build();
        arm = vcmm.device("arm");
        v7 = vcmm.device("v7");
        x86 = vcmm.device("x86");
    }

    @AfterEach
    void close() {
        vcmm.close();
    }

    Vcm vcmWithAll() {
        Vcm vcm = vcmm.createVcm(VA, 256 * MIB);
        for (Device d : List.of(arm, v7, x86)) {
            vcmm.assoc(vcm, d).activate();
        }
        return vcm;
    }

    static void write(Device d, long address, int value) {
        d.write(address, new byte[] {(byte) value}, 0, 1);
    }

    static byte read(Device d, long address) {
        byte[] b = new byte[1];
        d.read(address, b, 0, 1);
        return b[0];
    }

    @Test
    void shouldChangePermissionsInPlaceInEveryFormatAndDropTheIotlbEntries() {
        Vcm vcm = vcmWithAll();
        long len = 2 * MIB + 64 * 1024 + 4096; // blocks, 64K runs and pages
        Reservation r = vcm.reserve(len, RW, 2 * MIB);
        PhysMem pm = vcmm.physAlloc("ddr", len, ChunkPolicy.of(2 * MIB, 64 * 1024, 4096));
        r.back(pm);
        long[] samples = {r.address(), r.address() + 2 * MIB + 100, r.address() + len - 1};
        List<WalkResult.Translation> before = new ArrayList<>();
        for (Device d : List.of(arm, v7, x86)) {
            for (long a : samples) {
                write(d, a, 7); // the IOTLB now holds a writable entry
                before.add((WalkResult.Translation) d.translate(a));
            }
        }
        assertSame(r, r.setAttributes(RO));
        assertEquals(RO, r.attributes());
        int i = 0;
        for (Device d : List.of(arm, v7, x86)) {
            for (long a : samples) {
                DeviceFaultException e = assertThrows(DeviceFaultException.class, () -> write(d, a, 8), d + " still writes");
                assertEquals(FaultReason.PERMISSION, e.fault().reason());
                assertEquals(7, read(d, a), "reads still work and the byte is unchanged");
                WalkResult.Translation t = (WalkResult.Translation) d.translate(a);
                WalkResult.Translation old = before.get(i++);
                assertEquals(old.pa(), t.pa(), "same memory");
                assertEquals(old.leafSize(), t.leafSize(), "same leaf: changed in place, not remapped");
                assertFalse(t.attributes().write());
            }
        }
        r.setAttributes(RW);
        for (Device d : List.of(arm, v7, x86)) {
            write(d, samples[1], 9);
            assertEquals(9, read(d, samples[1]));
        }
        r.unback();
        r.unreserve();
        pm.free();
    }

    @Test
    void shouldCarryTheCachePolicyToTheMappings() {
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(vcm, arm).activate();
        Reservation r = vcm.reserve(64 * 1024, RW);
        r.back(vcmm.physAlloc("ddr", 64 * 1024, ChunkPolicy.VCMM));
        assertEquals(CachePolicy.WRITE_BACK, ((WalkResult.Translation) arm.translate(r.address())).attributes().cache());
        r.setAttributes(RW.with(Caching.NON_CACHED));
        assertEquals(CachePolicy.NON_CACHEABLE, ((WalkResult.Translation) arm.translate(r.address())).attributes().cache());
        r.setAttributes(RW.with(Caching.DEVICE));
        assertEquals(CachePolicy.DEVICE, ((WalkResult.Translation) arm.translate(r.address() + 4096)).attributes().cache());
    }

    @Test
    void shouldRefuseWhatAFormatCannotExpressAndChangeNothing() {
        Vcm vcm = vcmWithAll();
        Device rv = vcmm.device("rv", RiscvSv39Format.INSTANCE);
        vcmm.assoc(vcm, rv).activate();
        Reservation r = vcm.reserve(64 * 1024, RW);
        PhysMem pm = vcmm.physAlloc("ddr", 64 * 1024, ChunkPolicy.VCMM);
        r.back(pm);
        write(arm, r.address(), 5);
        ReservationAttributes writeOnly = new ReservationAttributes(false, true, false, false, true, false,
            Caching.WRITE_BACK_WRITE_ALLOCATE);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> r.setAttributes(writeOnly));
        assertTrue(e.getMessage().contains("read"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> r.setAttributes(RW.with(Caching.WRITE_THROUGH)),
            "RISC-V has no write-through");
        assertEquals(RW, r.attributes());
        for (Device d : List.of(arm, v7, x86, rv)) {
            write(d, r.address() + 100, 6); // still writable everywhere
            assertTrue(((WalkResult.Translation) d.translate(r.address())).attributes().write());
        }
        assertThrows(NullPointerException.class, () -> r.setAttributes(null));
        assertEquals(RW, r.attributes());
    }

    @Test
    void shouldRefuseBadStatesAndChangeNothing() {
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(vcm, arm).activate();
        Reservation secure = vcm.reserve(4096, RW.withSecure(true));
        PhysMem sm = vcmm.physAlloc("secure", 4096, ChunkPolicy.VCMM);
        secure.back(sm);
        assertThrows(IllegalArgumentException.class, () -> secure.setAttributes(RO), "secure memory, non-secure attributes");
        assertEquals(RW.withSecure(true), secure.attributes());
        secure.setAttributes(RO.withSecure(true)); // still secure: allowed
        assertFalse(((WalkResult.Translation) vcm.table(arm.format()).translate(secure.address())).attributes().write());

        Reservation gone = vcm.reserve(4096, RW);
        gone.unreserve();
        assertThrows(IllegalStateException.class, () -> gone.setAttributes(RO));
        assertEquals(RW, gone.attributes());
    }

    @Test
    void shouldTakeNewAttributesForTheNextBackWhenUnbacked() {
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(vcm, arm).activate();
        Reservation r = vcm.reserve(4096, RW);
        r.setAttributes(RO);
        r.back(vcmm.physAlloc("ddr", 4096, ChunkPolicy.VCMM));
        assertThrows(DeviceFaultException.class, () -> write(arm, r.address(), 1));
    }

    @Test
    void shouldChangeAOneToOneReservationsPermissions() {
        Device dsp = vcmm.oneToOneDevice("dsp");
        MemoryType ddr = vcmm.memoryType("ddr");
        Vcm vcm = vcmm.createOneToOneVcm(ddr);
        vcmm.assoc(vcm, dsp).activate();
        PhysMem pm = ddr.physAlloc(8192, ChunkPolicy.VCMM, PhysAllocOptions.CONTIGUOUS);
        Reservation r = vcm.reserveAt(pm.physicalAddress(0), 8192, RW).back(pm);
        write(dsp, r.address(), 3);
        r.setAttributes(RO);
        assertEquals(FaultReason.PERMISSION,
            assertThrows(DeviceFaultException.class, () -> write(dsp, r.address(), 4)).fault().reason());
        assertEquals(3, read(dsp, r.address()));
    }

    /**
     * RW -> RO -> RW under a DMA writer and a reader: once RO returns, no write lands (the bytes of the memory stay
     * as they were until RW), and the reader never faults (the leaves were rewritten in place, never unmapped). The
     * writers start at a barrier; the count of syncs that found a burst in flight proves the overlap.
     */
    @Test
    void shouldLetNoWriteLandAfterReadOnlyReturnsUnderConcurrentDma() throws Exception {
        Device gpu = vcmm.device("gpu", DeviceKind.IOMMU, Arm64Lpae4kFormat.INSTANCE, false,
            DeviceOptions.DEFAULT.withBurstBytes(256));
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        int len = 16 * 1024;
        Reservation r = vcm.reserve(len, RW, len);
        PhysMem pm = vcmm.physAlloc("ddr", len, ChunkPolicy.VCMM);
        r.back(pm);
        MemoryType ddr = vcmm.memoryType("ddr");
        AtomicBoolean stop = new AtomicBoolean();
        AtomicLong attempts = new AtomicLong();
        AtomicLong readFaults = new AtomicLong();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        CyclicBarrier start = new CyclicBarrier(3);
        List<Thread> threads = new ArrayList<>();
        for (int w = 0; w < 1; w++) {
            byte[] data = new byte[len];
            threads.add(Thread.ofPlatform().start(() -> {
                try {
                    start.await();
                    for (int n = 1; !stop.get(); n++) {
                        Arrays.fill(data, (byte) n); // every transfer writes new bytes: a late one shows
                        try {
                            gpu.write(r.address(), data, 0, data.length);
                        } catch (DeviceFaultException readOnlyNow) {
                            // expected while RO
                        }
                        attempts.incrementAndGet();
                    }
                } catch (Throwable t) {
                    failure.set(t);
                }
            }));
        }
        threads.add(Thread.ofPlatform().start(() -> {
            byte[] buf = new byte[len];
            try {
                start.await();
                while (!stop.get()) {
                    try {
                        gpu.read(r.address(), buf, 0, len);
                    } catch (DeviceFaultException e) {
                        readFaults.incrementAndGet();
                    }
                }
            } catch (Throwable t) {
                failure.set(t);
            }
        }));
        start.await();
        int rounds = Boolean.getBoolean("vcmm.long") ? 20_000 : 20;
        long deadline = System.nanoTime() + 30_000_000_000L;
        int violations = 0;
        int round = 0;
        for (; (round < rounds || gpu.stats().syncWaits() == 0) && System.nanoTime() < deadline; round++) {
            long written = gpu.stats().bytesWritten();
            r.setAttributes(RW);
            for (long spin = 0; gpu.stats().bytesWritten() < written + 4 * 256 && spin < 10_000_000; spin++) {
                Thread.onSpinWait(); // let the writers land a few bursts
            }
            r.setAttributes(RO);
            byte[] snapshot = new byte[len];
            ddr.memory().copyOut(pm.physicalAddress(0), snapshot, 0, len);
            long seen = attempts.get();
            for (long spin = 0; attempts.get() < seen + 2 && spin < 10_000_000; spin++) {
                Thread.onSpinWait(); // every writer finished the transfer it was in
            }
            byte[] after = new byte[len];
            ddr.memory().copyOut(pm.physicalAddress(0), after, 0, len);
            if (!Arrays.equals(snapshot, after)) {
                violations++;
            }
        }
        stop.set(true);
        for (Thread t : threads) {
            t.join();
        }
        assertNull(failure.get());
        assertEquals(0, violations, "memory changed after RO returned, in " + violations + " of " + round + " rounds");
        assertEquals(0, readFaults.get(), "a read faulted: the leaves were not changed in place");
        assertTrue(gpu.stats().syncWaits() > 0, "some attribute change found a burst in flight: " + gpu.stats());
        assertTrue(gpu.stats().bytesWritten() > 0);
        byte[] check = new byte[len];
        ddr.memory().copyOut(pm.physicalAddress(0), check, 0, len);
        byte[] viaDevice = new byte[len];
        gpu.read(r.address(), viaDevice, 0, len);
        assertArrayEquals(check, viaDevice);
    }

    @Test
    void shouldReportTheMinimumPageSizeFromTheFormats() {
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        assertEquals(4096, vcm.minPageSize(), "no device: the 4 KiB granule");
        vcmm.assoc(vcm, arm);
        vcmm.assoc(vcm, v7);
        assertEquals(4096, vcm.minPageSize());
    }

    /** VCM_COHERENT: every table mapping of coherent memory is at most non-cached, whatever the reservation asks. */
    @Test
    void shouldMapCoherentMemoryNonCachedInEveryTable() {
        Vcm vcm = vcmWithAll();
        MemoryType ddr = vcmm.memoryType("ddr");
        PhysMem coherent = ddr.physAlloc(8192, ChunkPolicy.VCMM, PhysAllocOptions.DEFAULT.withCoherent(true));
        PhysMem plain = ddr.physAlloc(8192, ChunkPolicy.VCMM);
        assertTrue(coherent.options().coherent());
        assertTrue(coherent.options().toString().contains("coherent"));
        Reservation c = vcm.reserve(8192, RW).back(coherent);
        Reservation p = vcm.reserve(8192, RW).back(plain);
        Reservation dev = vcm.reserve(4096, RW.with(Caching.DEVICE));
        PhysMem devMem = ddr.physAlloc(4096, ChunkPolicy.VCMM, PhysAllocOptions.DEFAULT.withCoherent(true));
        dev.back(devMem);
        for (Device d : List.of(arm, v7, x86)) {
            assertEquals(CachePolicy.NON_CACHEABLE, ((WalkResult.Translation) d.translate(c.address())).attributes().cache(), d.toString());
            assertEquals(CachePolicy.WRITE_BACK, ((WalkResult.Translation) d.translate(p.address())).attributes().cache(), d.toString());
            assertEquals(CachePolicy.DEVICE, ((WalkResult.Translation) d.translate(dev.address())).attributes().cache(), d.toString());
        }
        c.setAttributes(RO.with(Caching.WRITE_THROUGH)); // still lowered: the memory is coherent
        assertEquals(CachePolicy.NON_CACHEABLE, ((WalkResult.Translation) arm.translate(c.address())).attributes().cache());
        assertEquals(RO.with(Caching.WRITE_THROUGH), c.attributes(), "the reservation keeps what it asked for");
        // a table built later (a new format joins) maps it the same way
        Device rv = vcmm.device("rv", RiscvSv39Format.INSTANCE);
        c.setAttributes(RW);
        vcmm.assoc(vcm, rv).activate();
        assertEquals(CachePolicy.NON_CACHEABLE, ((WalkResult.Translation) rv.translate(c.address() + 4096)).attributes().cache());
    }
}
