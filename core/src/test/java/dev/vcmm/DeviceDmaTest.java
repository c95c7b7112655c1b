package dev.vcmm;

import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.Armv7ShortFormat;
import dev.vcmm.pagetable.FaultReason;
import dev.vcmm.pagetable.X86_64Format;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Devices at work: DMA through the IOTLB and the walker, invalidation on unback and deactivate, faults with
 * handlers, crash and reset, and isolation throughout.
 */
class DeviceDmaTest {

    static final long DDR = 0x8000_0000L;
    static final long KIB = 1L << 10;
    static final long MIB = 1L << 20;
    static final long VA = 0x1000_0000L;

    Vcmm vcmm;

    @BeforeEach
    void open() {
        vcmm = TestGraphs.graph().ddr(DDR, 256 * MIB).pageTables(16 * MIB).secure(16 * MIB).build();
    }

    @AfterEach
    void close() {
        vcmm.close();
    }

    static byte[] pattern(int length, int seed) {
        byte[] b = new byte[length];
        for (int i = 0; i < length; i++) {
            b[i] = (byte) (i * 31 + seed * 17 + (i >>> 8));
        }
        return b;
    }

    static byte[] read(Device d, long address, int length) {
        byte[] b = new byte[length];
        d.read(address, b, 0, length);
        return b;
    }

    /** @return the bytes of {@code pm} at {@code offset}, read directly from physical memory */
    static byte[] physical(PhysMem pm, long offset, int length) {
        byte[] b = new byte[length];
        for (int i = 0; i < length; i++) {
            pm.memoryType().memory().copyOut(pm.physicalAddress(offset + i), b, i, 1);
        }
        return b;
    }

    static DeviceFault fault(Runnable dma) {
        return assertThrows(DeviceFaultException.class, dma::run).fault();
    }

    Reservation backed(Vcm vcm, long length, ChunkPolicy policy) {
        return vcm.reserve(length, ReservationAttributes.RW, Math.min(length, 2 * MIB)).back(vcmm.physAlloc("ddr", length, policy));
    }

    // ---------------------------------------------------------------------------------------------
    // sharing

    @Test
    void shouldReadWhatOneDeviceWroteFromEveryDeviceThatMapsIt() {
        Device smmu64 = vcmm.device("video", Arm64Lpae4kFormat.INSTANCE);
        Device smmu7 = vcmm.device("camera", Armv7ShortFormat.INSTANCE);
        Device display = vcmm.oneToOneDevice("display");
        Device cpu = vcmm.cpu("cpu", X86_64Format.INSTANCE);
        PhysMem frame = vcmm.physAlloc(vcmm.memoryType("ddr"), 3 * MIB, ChunkPolicy.VCMM, PhysAllocOptions.CONTIGUOUS);

        Vcm iommuVcm = vcmm.createVcm(0x4000_0000L, 64 * MIB);
        vcmm.assoc(iommuVcm, smmu64).activate();
        vcmm.assoc(iommuVcm, smmu7).activate();
        Reservation iommuRes = iommuVcm.reserve(3 * MIB, ReservationAttributes.RW, MIB).back(frame);
        Vcm oneToOne = vcmm.createOneToOneVcm(vcmm.memoryType("ddr"));
        vcmm.assoc(oneToOne, display).activate();
        Reservation displayRes = oneToOne.reserveAt(frame.physicalAddress(0), 3 * MIB, ReservationAttributes.RW).back(frame);
        Vcm cpuVcm = vcmm.createCpuVcm(cpu, 0x7f00_0000_0000L, 1L << 30);
        Reservation cpuRes = cpuVcm.reserve(3 * MIB, ReservationAttributes.RW.withUser(true), MIB).back(frame);

        Map<Device, Long> base = new LinkedHashMap<>();
        base.put(smmu64, iommuRes.address());
        base.put(smmu7, iommuRes.address());
        base.put(display, displayRes.address());
        base.put(cpu, cpuRes.address());
        long offset = MIB - 1000; // across a 1M chunk (and leaf) boundary
        int seed = 0;
        for (Device writer : base.keySet()) {
            byte[] data = pattern(70_000, ++seed);
            if (seed % 2 == 0) {
                writer.write(base.get(writer) + offset, ByteBuffer.wrap(data));
            } else {
                writer.write(base.get(writer) + offset, data, 0, data.length);
            }
            assertArrayEquals(data, physical(frame, offset, data.length), writer.name() + " wrote the frame");
            for (Device reader : base.keySet()) {
                ByteBuffer direct = ByteBuffer.allocateDirect(data.length);
                reader.read(base.get(reader) + offset, direct);
                assertEquals(data.length, direct.position(), "the buffer is filled");
                byte[] got = new byte[data.length];
                direct.flip().get(got);
                assertArrayEquals(data, got, reader.name() + " reads what " + writer.name() + " wrote");
            }
        }
        for (Device d : base.keySet()) {
            assertEquals(4 * 70_000, d.stats().bytesRead());
            assertEquals(70_000, d.stats().bytesWritten());
            assertEquals(0, d.stats().faults());
        }
    }

    @Test
    void shouldCopyTheBytesADeviceWroteBetweenReservations() {
        Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        Reservation src = backed(vcm, MIB, ChunkPolicy.PAGES_4K);
        Reservation dst = backed(vcm, MIB, ChunkPolicy.VCMM);
        byte[] data = pattern(10_000, 7);
        gpu.write(src.address() + 5000, data, 0, data.length);
        vcmm.copy(dst, 70_000, src, 5000, data.length);
        assertArrayEquals(data, read(gpu, dst.address() + 70_000, data.length));
        assertArrayEquals(new byte[100], read(gpu, dst.address() + 70_000 - 100, 100), "nothing before the copy");
    }

    // ---------------------------------------------------------------------------------------------
    // the IOTLB

    @Test
    void shouldHitTheIotlbOnASecondReadOfTheSamePage() {
        Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        Reservation r = backed(vcm, 64 * KIB, ChunkPolicy.PAGES_4K);
        read(gpu, r.address() + 100, 100);
        assertEquals(0, gpu.stats().iotlb().hits());
        assertEquals(1, gpu.stats().iotlb().misses());
        read(gpu, r.address() + 3000, 1000);
        IotlbStats s = gpu.stats().iotlb();
        assertEquals(1, s.hits());
        assertEquals(1, s.misses());
        assertEquals(1, s.valid());
        assertEquals(64, s.entries());
        assertEquals(4, s.ways());
    }

    @Test
    void shouldMissFarLessPerMibWith2MiBLeavesThanWith4KLeaves() {
        Device huge = vcmm.device("huge", Arm64Lpae4kFormat.INSTANCE);
        Device small = vcmm.device("small", Arm64Lpae4kFormat.INSTANCE);
        Vcm hugeVcm = vcmm.createVcm(VA, 64 * MIB);
        Vcm smallVcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(hugeVcm, huge).activate();
        vcmm.assoc(smallVcm, small).activate();
        Reservation h = backed(hugeVcm, 4 * MIB, ChunkPolicy.HUGE);
        // scatter the 4K pages: take 8 MiB of single pages, give back every other one, then allocate from the holes
        List<PhysMem> pages = new ArrayList<>();
        for (int i = 0; i < 2048; i++) {
            pages.add(vcmm.physAlloc("ddr", 4 * KIB, ChunkPolicy.PAGES_4K));
        }
        for (int i = 0; i < pages.size(); i += 2) {
            pages.get(i).free();
        }
        PhysMem scattered = vcmm.physAlloc("ddr", 4 * MIB, ChunkPolicy.PAGES_4K);
        Reservation s = smallVcm.reserve(4 * MIB, ReservationAttributes.RW, 2 * MIB).back(scattered);

        byte[] buffer = new byte[(int) (4 * MIB)];
        huge.read(h.address(), buffer, 0, buffer.length);
        small.read(s.address(), buffer, 0, buffer.length);
        long hugeMisses = huge.stats().iotlb().misses();
        long smallMisses = small.stats().iotlb().misses();
        assertEquals(2, hugeMisses, "one miss per 2 MiB block");
        assertTrue(smallMisses >= 512, "4K leaves miss about once per page: " + smallMisses);
        assertTrue(smallMisses > 100 * hugeMisses, smallMisses + " vs " + hugeMisses);
    }

    @Test
    void shouldServeManyThreadsThroughOneSmallIotlb() throws Exception {
        Device gpu = vcmm.device("gpu", DeviceKind.IOMMU, Arm64Lpae4kFormat.INSTANCE, false, DeviceOptions.iotlb(8, 2));
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        int threads = 8;
        int region = (int) (64 * KIB);
        Reservation r = backed(vcm, (long) threads * region, ChunkPolicy.PAGES_4K);
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        try {
            List<Future<?>> futures = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int id = t;
                futures.add(pool.submit(() -> {
                    long at = r.address() + (long) id * region;
                    for (int round = 0; round < 50; round++) {
                        byte[] data = pattern(region, id * 1000 + round);
                        gpu.write(at, data, 0, data.length);
                        assertArrayEquals(data, read(gpu, at, region));
                    }
                    return null;
                }));
            }
            for (Future<?> f : futures) {
                f.get(60, TimeUnit.SECONDS);
            }
        } finally {
            pool.shutdownNow();
        }
        IotlbStats s = gpu.stats().iotlb();
        assertTrue(s.valid() <= 8);
        assertEquals(2L * threads * 50 * region, gpu.stats().bytesRead() + gpu.stats().bytesWritten());
    }

    // ---------------------------------------------------------------------------------------------
    // invalidation

    @Test
    void shouldFaultAfterUnbackEvenWithAWarmIotlbAndFlushEachDeviceOnce() {
        Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        Device cam = vcmm.device("cam", Armv7ShortFormat.INSTANCE);
        Device idle = vcmm.device("idle", Arm64Lpae4kFormat.INSTANCE);
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        vcmm.assoc(vcm, cam).activate();
        vcmm.assoc(vcm, idle); // associated, never active
        PhysMem pm = vcmm.physAlloc("ddr", 3 * MIB + 68 * KIB, ChunkPolicy.VCMM); // several chunk and leaf sizes
        Reservation r = vcm.reserve(pm.length(), ReservationAttributes.RW, MIB).back(pm);
        Reservation neighbour = backed(vcm, 64 * KIB, ChunkPolicy.PAGES_4K);
        byte[] data = pattern((int) pm.length(), 3);
        gpu.write(r.address(), data, 0, data.length);
        for (Device d : List.of(gpu, cam)) {
            assertArrayEquals(data, read(d, r.address(), data.length));
            read(d, neighbour.address(), 10);
            read(d, r.address(), 1);
            assertTrue(d.stats().iotlb().hits() > 0, "warm");
        }
        long[] before = {gpu.stats().iotlb().rangeInvalidations(), cam.stats().iotlb().rangeInvalidations()};

        r.unback();

        byte[] zeros = new byte[data.length];
        for (Device d : List.of(gpu, cam)) {
            for (long off : new long[] {0, 4096, MIB, 3 * MIB + 64 * KIB}) {
                assertEquals(FaultReason.TRANSLATION, fault(() -> read(d, r.address() + off, 1)).reason(), d + " at +" + off);
                assertEquals(FaultReason.TRANSLATION, fault(() -> d.write(r.address() + off, zeros, 0, 1)).reason());
            }
            read(d, neighbour.address(), 10); // the neighbour stays mapped
        }
        assertArrayEquals(data, physical(pm, 0, data.length), "no write after unback reached the memory");
        assertEquals(before[0] + 1, gpu.stats().iotlb().rangeInvalidations(), "one flush per device per unback");
        assertEquals(before[1] + 1, cam.stats().iotlb().rangeInvalidations());
        assertEquals(0, idle.stats().iotlb().rangeInvalidations(), "an inactive device holds nothing to flush");
    }

    @Test
    void shouldFaultAfterDeactivateEvenWithAWarmIotlb() {
        Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        Association a = vcmm.assoc(vcm, gpu).activate();
        Reservation r = backed(vcm, 2 * MIB, ChunkPolicy.HUGE);
        byte[] data = pattern(4096, 1);
        gpu.write(r.address(), data, 0, data.length);
        read(gpu, r.address(), 4096);
        long pasidInvalidations = gpu.stats().iotlb().pasidInvalidations();
        a.deactivate();
        assertEquals(FaultReason.TRANSLATION, fault(() -> read(gpu, r.address(), 1)).reason());
        assertEquals(FaultReason.TRANSLATION, fault(() -> gpu.write(r.address(), new byte[1], 0, 1)).reason());
        assertEquals(pasidInvalidations + 1, gpu.stats().iotlb().pasidInvalidations()); // its PASID (0) only
        assertEquals(0, gpu.stats().iotlb().valid());
        a.activate();
        assertArrayEquals(data, read(gpu, r.address(), 4096));
    }

    @Test
    void shouldNeverLeaveAStaleEntryWhenWalksRaceWithUnback() throws Exception {
        Device gpu = vcmm.device("gpu", DeviceKind.IOMMU, Arm64Lpae4kFormat.INSTANCE, false, DeviceOptions.iotlb(4, 4));
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        Reservation r = vcm.reserve(16 * KIB, ReservationAttributes.RW);
        PhysMem pm = vcmm.physAlloc("ddr", 16 * KIB, ChunkPolicy.PAGES_4K);
        AtomicBoolean stop = new AtomicBoolean();
        AtomicReference<Throwable> unexpected = new AtomicReference<>();
        Thread[] readers = new Thread[3];
        for (int t = 0; t < readers.length; t++) {
            int id = t;
            readers[t] = Thread.ofPlatform().start(() -> {
                byte[] b = new byte[8];
                while (!stop.get()) {
                    try {
                        gpu.read(r.address() + (id * 4096L) % (16 * KIB), b, 0, b.length);
                    } catch (DeviceFaultException expected) {
                        // not backed at this moment
                    } catch (Throwable e) {
                        unexpected.set(e);
                        return;
                    }
                }
            });
        }
        try {
            for (int i = 0; i < 2000; i++) {
                r.back(pm);
                Thread.onSpinWait();
                r.unback();
                for (long off = 0; off < 16 * KIB; off += 4096) {
                    long at = r.address() + off;
                    assertEquals(FaultReason.TRANSLATION, fault(() -> read(gpu, at, 1)).reason(), "round " + i);
                }
            }
        } finally {
            stop.set(true);
            for (Thread t : readers) {
                t.join();
            }
        }
        assertEquals(null, unexpected.get());
    }

    // ---------------------------------------------------------------------------------------------
    // isolation, permissions, secure

    @Test
    void shouldNeverReachABytePastItsOwnActiveMappings() {
        Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        Device cam = vcmm.device("cam", Armv7ShortFormat.INSTANCE);
        Vcm gpuVcm = vcmm.createVcm(VA, 64 * MIB);
        Vcm camVcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(gpuVcm, gpu).activate();
        vcmm.assoc(camVcm, cam).activate();
        Reservation g = gpuVcm.reserveAt(VA, MIB, ReservationAttributes.RW).back(vcmm.physAlloc("ddr", MIB, ChunkPolicy.VCMM));
        Reservation c = camVcm.reserveAt(VA + 2 * MIB, MIB, ReservationAttributes.RW).back(vcmm.physAlloc("ddr", MIB, ChunkPolicy.VCMM));
        byte[] ones = new byte[(int) MIB];
        Arrays.fill(ones, (byte) 1);
        gpu.write(g.address(), ones, 0, ones.length); // warms the gpu's IOTLB with a 1M-sized... set of leaves
        byte[] twos = new byte[(int) MIB];
        Arrays.fill(twos, (byte) 2);
        cam.write(c.address(), twos, 0, twos.length);

        assertEquals(FaultReason.TRANSLATION, fault(() -> read(gpu, c.address(), 1)).reason(), "the cam's address is not the gpu's");
        assertEquals(FaultReason.TRANSLATION, fault(() -> read(cam, g.address(), 1)).reason());
        assertEquals(FaultReason.TRANSLATION, fault(() -> read(gpu, g.address() + MIB, 1)).reason(), "one past the end, warm IOTLB");
        ByteBuffer straddle = ByteBuffer.allocate(8192);
        DeviceFault f = fault(() -> gpu.read(g.address() + MIB - 4096, straddle));
        assertEquals(g.address() + MIB, f.address());
        assertEquals(4096, straddle.position(), "only the bytes before the fault were read");
        assertEquals(FaultReason.TRANSLATION, fault(() -> gpu.write(g.address() + MIB - 10, new byte[20], 0, 20)).reason());
        Arrays.fill(ones, ones.length - 10, ones.length, (byte) 0); // the 10 bytes before the fault were written
        assertArrayEquals(twos, read(cam, c.address(), twos.length), "the gpu never reached the cam's memory");
        assertArrayEquals(ones, read(gpu, g.address(), ones.length));
        assertEquals(FaultReason.ADDRESS_SIZE, fault(() -> read(gpu, 1L << 50, 1)).reason());
    }

    @Test
    void shouldEnforcePermissionsOnWalksAndOnIotlbHits() {
        Device warm = vcmm.device("warm", Arm64Lpae4kFormat.INSTANCE);
        Device cold = vcmm.device("cold", X86_64Format.INSTANCE);
        Device display = vcmm.oneToOneDevice("display");
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(vcm, warm).activate();
        vcmm.assoc(vcm, cold).activate();
        PhysMem pm = vcmm.physAlloc(vcmm.memoryType("ddr"), MIB, ChunkPolicy.VCMM, PhysAllocOptions.CONTIGUOUS);
        Reservation ro = vcm.reserve(MIB, ReservationAttributes.RO).back(pm);
        Vcm oneToOne = vcmm.createOneToOneVcm(vcmm.memoryType("ddr"));
        vcmm.assoc(oneToOne, display).activate();
        Reservation dro = oneToOne.reserveAt(pm.physicalAddress(0), MIB, ReservationAttributes.RO).back(pm);

        read(warm, ro.address(), 16);
        long hits = warm.stats().iotlb().hits();
        DeviceFault f = fault(() -> warm.write(ro.address() + 8, new byte[] {9}, 0, 1));
        assertEquals(FaultReason.PERMISSION, f.reason());
        assertEquals(Access.WRITE, f.access());
        assertEquals(hits + 1, warm.stats().iotlb().hits(), "refused by the cached entry");
        assertEquals(FaultReason.PERMISSION, fault(() -> cold.write(ro.address(), new byte[1], 0, 1)).reason(), "refused by the walk");
        assertEquals(FaultReason.PERMISSION, fault(() -> display.write(dro.address(), new byte[1], 0, 1)).reason(), "one-to-one");
        assertArrayEquals(new byte[16], physical(pm, 0, 16), "nothing written");
        assertEquals(1, warm.stats().faults());
        assertEquals(1, warm.stats().failed());
    }

    @Test
    void shouldKeepNonSecureDevicesOutOfSecureMemory() {
        Device plain = vcmm.device("plain", Arm64Lpae4kFormat.INSTANCE);
        Device trusted = vcmm.device("trusted", DeviceKind.IOMMU, Arm64Lpae4kFormat.INSTANCE, true);
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(vcm, plain).activate();
        vcmm.assoc(vcm, trusted).activate();
        Reservation sealed = vcm.reserve(MIB, ReservationAttributes.RW.withSecure(true)).back(vcmm.physAlloc("secure", MIB, ChunkPolicy.VCMM));
        byte[] secret = pattern(1000, 42);
        trusted.write(sealed.address(), secret, 0, secret.length);
        assertArrayEquals(secret, read(trusted, sealed.address(), secret.length));
        assertEquals(FaultReason.SECURE, fault(() -> read(plain, sealed.address(), 1)).reason());
        assertEquals(FaultReason.SECURE, fault(() -> plain.write(sealed.address(), new byte[1], 0, 1)).reason());
        assertEquals(0, plain.stats().iotlb().valid(), "a refused translation is not cached");
        assertArrayEquals(secret, read(trusted, sealed.address(), secret.length));
    }

    // ---------------------------------------------------------------------------------------------
    // faults

    @Test
    void shouldFailWithAMessageThatSaysWhatHappenedWithoutAHandler() {
        Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        DeviceFaultException e = assertThrows(DeviceFaultException.class, () -> read(gpu, VA + 0x1234, 4));
        String m = e.getMessage();
        for (String s : List.of("device gpu", "READ", "0x10001234", "TRANSLATION", "at L", "no fault handler")) {
            assertTrue(m.contains(s), m + " should say " + s);
        }
        assertEquals(gpu, e.fault().device());
        assertEquals(1, gpu.stats().faults());
    }

    @Test
    void shouldTerminateWhenTheHandlerSaysSo() {
        Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        List<DeviceFault> seen = new ArrayList<>();
        gpu.hook(f -> {
            seen.add(f);
            return FaultAction.TERMINATE;
        });
        DeviceFaultException e = assertThrows(DeviceFaultException.class, () -> gpu.write(VA, new byte[4], 0, 4));
        assertTrue(e.getMessage().contains("terminated"), e.getMessage());
        assertEquals(1, seen.size());
        assertEquals(new DeviceFault(gpu, VA, Access.WRITE, FaultReason.TRANSLATION, seen.getFirst().level(), seen.getFirst().detail()),
            seen.getFirst());
    }

    @Test
    void shouldBoundTheRetries() {
        Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        AtomicInteger calls = new AtomicInteger();
        gpu.hook(f -> {
            calls.incrementAndGet();
            return FaultAction.RETRY;
        });
        DeviceFaultException e = assertThrows(DeviceFaultException.class, () -> read(gpu, VA, 1));
        assertTrue(e.getMessage().contains("after 8 retries"), e.getMessage());
        assertEquals(8, calls.get());
        assertEquals(9, gpu.stats().faults());
        assertEquals(8, gpu.stats().retries());
    }

    @Test
    void shouldPageInOnDemandFromTheFaultHandler() {
        Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        List<Reservation> paged = new ArrayList<>();
        gpu.hook(f -> {
            if (f.reason() != FaultReason.TRANSLATION || vcm.reservationAt(f.address()) != null) {
                return FaultAction.TERMINATE;
            }
            Reservation r = vcm.reserveAt(f.address() & -4096L, 4096, ReservationAttributes.RW);
            r.back(vcmm.physAlloc("ddr", 4096, ChunkPolicy.PAGES_4K));
            paged.add(r);
            return FaultAction.RETRY;
        });
        byte[] data = pattern(3 * 4096 + 100, 5);
        long at = VA + 0x10_0000L + 4000;
        gpu.write(at, data, 0, data.length);
        assertEquals(5, paged.size(), "pages 0..4 of the span were paged in");
        assertArrayEquals(data, read(gpu, at, data.length));
        assertEquals(5, gpu.stats().faults());
        assertEquals(5, gpu.stats().retries());
        assertEquals(0, gpu.stats().failed());
        for (Reservation r : paged) {
            PhysMem pm = r.backingMemory();
            r.unback();
            r.unreserve();
            pm.free();
        }
    }

    // ---------------------------------------------------------------------------------------------
    // crash and reset

    @Test
    void shouldFindTheMemoryIntactAfterCrashAndReset() {
        Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        Association a = vcmm.assoc(vcm, gpu).activate();
        Reservation r = backed(vcm, 2 * MIB, ChunkPolicy.VCMM);
        byte[] data = pattern((int) (2 * MIB), 9);
        gpu.write(r.address(), data, 0, data.length);
        long allocated = vcmm.memoryType("ddr").stats().allocatedBytes();

        gpu.crash();

        assertTrue(gpu.isCrashed());
        assertFalse(a.isActive());
        assertEquals(0, gpu.stats().iotlb().valid());
        assertEquals(1, gpu.stats().crashes());
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> read(gpu, r.address(), 1));
        assertTrue(e.getMessage().contains("device gpu crashed"), e.getMessage());
        assertThrows(IllegalStateException.class, a::activate, "no activation while crashed");
        assertTrue(r.isBacked());
        assertFalse(r.backingMemory().isFreed());
        assertEquals(allocated, vcmm.memoryType("ddr").stats().allocatedBytes(), "a crash frees nothing");

        gpu.reset();
        assertFalse(gpu.isCrashed());
        assertEquals(FaultReason.TRANSLATION, fault(() -> read(gpu, r.address(), 1)).reason(), "still inactive after reset");
        a.activate();
        assertArrayEquals(data, read(gpu, r.address(), data.length));
    }

    @Test
    void shouldFailDmaInFlightInAnotherThreadWhenTheDeviceCrashes() throws Exception {
        Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        Reservation r = vcm.reserveAt(VA, 8 * KIB, ReservationAttributes.RW).back(vcmm.physAlloc("ddr", 8 * KIB, ChunkPolicy.PAGES_4K));
        CountDownLatch faulted = new CountDownLatch(1);
        CountDownLatch crashed = new CountDownLatch(1);
        gpu.hook(f -> { // stalls the DMA at the third page, as an SMMU stalls a transaction, until the crash
            faulted.countDown();
            try {
                crashed.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            return FaultAction.RETRY;
        });
        ByteBuffer dst = ByteBuffer.allocate((int) (12 * KIB));
        AtomicReference<Throwable> outcome = new AtomicReference<>();
        Thread dma = Thread.ofPlatform().start(() -> {
            try {
                gpu.read(r.address(), dst);
            } catch (Throwable t) {
                outcome.set(t);
            }
        });
        assertTrue(faulted.await(10, TimeUnit.SECONDS));
        gpu.crash();
        crashed.countDown();
        dma.join(10_000);
        IllegalStateException e = assertInstanceOf(IllegalStateException.class, outcome.get());
        assertTrue(e.getMessage().contains("device gpu crashed"), e.getMessage());
        assertEquals(8 * KIB, dst.position(), "the pages before the crash were read");
    }

    static <T> T assertInstanceOf(Class<T> type, Object o) {
        return org.junit.jupiter.api.Assertions.assertInstanceOf(type, o, () -> "got " + o);
    }
}
