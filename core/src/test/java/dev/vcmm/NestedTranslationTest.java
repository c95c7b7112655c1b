package dev.vcmm;

import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.Arm64Stage2Format;
import dev.vcmm.pagetable.FaultReason;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.pagetable.X86_64Format;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Nested translation: a guest VCM's stage 1 over its host VCM's stage 2, walked as hardware does (every stage-1
 * table read translated by stage 2), with faults that name the stage, combined IOTLB entries that an unback in
 * either stage removes, and a guest that cannot reach host memory it was not given.
 */
class NestedTranslationTest {

    static final long MIB = 1L << 20;
    static final long PAGE = 4096;
    /** IPAs 4 KiB past 64 KiB boundaries: with 64 KiB-aligned memory stage 2 maps single 4 KiB pages only. */
    static final long RAM_IPA = 0x4000_1000L;
    static final long POOL_IPA = 0x1000_1000L;
    static final long GUEST = 0x10_0000_0000L;
    static final ReservationAttributes RW_USER = ReservationAttributes.RW.withUser(true);
    static final Arm64Stage2Format S2 = Arm64Stage2Format.withIpaBits(48);

    Vcmm vcmm;
    Vcm host;
    Vcm guest;
    PhysMem ram;
    Reservation hostRam;
    Device gpu;

    @BeforeEach
    void open() {
        vcmm = TestGraphs.graph().ddr(0x8000_0000L, 128 * MIB).pageTables(16 * MIB).build();
        host = vcmm.createVcm(0, 1L << 36); // the guest's IPA space
        ram = vcmm.physAlloc("ddr", 4 * MIB, ChunkPolicy.PAGES_4K);
        hostRam = host.reserveAt(RAM_IPA, 4 * MIB, RW_USER).back(ram);
        Reservation pool = host.reserveAt(POOL_IPA, MIB, RW_USER).back(vcmm.physAlloc("ddr", MIB, ChunkPolicy.PAGES_4K));
        guest = vcmm.createGuestVcm(host, S2, pool, GUEST, 256 * MIB);
        gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        vcmm.assoc(guest, gpu).activate();
    }

    @AfterEach
    void close() {
        Device.burstHook = null;
        vcmm.close();
    }

    /** A guest reservation at {@code GUEST + 0x2000}, backed by {@code ram} from {@code offset}: stage 1 maps 4 KiB pages. */
    Reservation guestBuffer(long length, long offset) {
        return guest.reserveAt(GUEST + 0x2000 + offset, length, ReservationAttributes.RW).back(ram, offset);
    }

    @Test
    void shouldMoveBytesThroughBothStages() {
        Reservation r = guestBuffer(64 * 1024, 0);
        byte[] data = new byte[10_000];
        for (int i = 0; i < data.length; i++) {
            data[i] = (byte) (i * 7 + 3);
        }
        gpu.write(r.address() + 100, data, 0, data.length);
        byte[] back = new byte[data.length];
        gpu.read(r.address() + 100, back, 0, back.length);
        assertArrayEquals(data, back);
        // the bytes are where the host put the guest's RAM: byte 100 of ram
        byte[] physical = new byte[data.length];
        for (int i = 0; i < data.length; i++) {
            ram.memoryType().memory().copyOut(ram.physicalAddress(100 + i), physical, i, 1);
        }
        assertArrayEquals(data, physical);
        WalkResult.Translation t = assertInstanceOf(WalkResult.Translation.class, gpu.translate(r.address() + 0x1234));
        assertEquals(ram.physicalAddress(0x1234), t.pa());
        assertEquals(PAGE, t.leafSize());
        assertEquals(Vcm.Kind.GUEST, guest.kind());
        assertEquals(host, guest.host());
        assertEquals(List.of(guest), host.guests());
        assertTrue(host.formats().contains(S2), "the host has a stage-2 table");
    }

    @Test
    void shouldTranslateEveryStageOneTableReadThroughStageTwo() {
        Reservation r = guestBuffer(64 * 1024, 0);
        assertInstanceOf(WalkResult.Translation.class, gpu.translate(r.address()));
        // 4 stage-1 levels, each descriptor read after a 4-level stage-2 walk of its table's IPA, then a 4-level
        // stage-2 walk of the output IPA: 4 x (4 + 1) + 4
        assertEquals(24, Stage2Memory.lastWalkReads());
        // the guest's tables are in its memory: the root's IPA is in the pool, not in the page-table memory
        long root = guest.table(Arm64Lpae4kFormat.INSTANCE).root();
        assertTrue(root >= POOL_IPA && root < POOL_IPA + MIB, "root IPA 0x" + Long.toHexString(root));
    }

    @Test
    void shouldRefuseMemoryTheGuestWasNotGivenAndChangeNothing() {
        PhysMem other = vcmm.physAlloc("ddr", MIB, ChunkPolicy.PAGES_4K);
        Reservation r = guest.reserve(MIB, ReservationAttributes.RW);
        assertThrows(IllegalArgumentException.class, () -> r.back(other));
        assertFalse(r.isBacked());
        assertThrows(IllegalArgumentException.class, () -> r.back(ram, 3 * MIB + PAGE), "sticks out of the host's mapping");
        assertFalse(r.isBacked());
        assertEquals(0, other.backingCount());
        // bad creations change nothing
        int before = vcmm.vcms().size();
        Reservation notBacked = host.reserve(MIB, RW_USER);
        assertThrows(IllegalArgumentException.class,
            () -> vcmm.createGuestVcm(host, S2, notBacked, GUEST, MIB), "pool not backed");
        assertThrows(IllegalArgumentException.class,
            () -> vcmm.createGuestVcm(guest, S2, hostRam, GUEST, MIB), "a guest as host");
        assertThrows(IllegalArgumentException.class,
            () -> vcmm.createGuestVcm(host, Arm64Stage2Format.withIpaBits(32), hostRam, GUEST, MIB), "IPA space too small");
        Vcm privileged = vcmm.createVcm(0, 1L << 32);
        Reservation pp = privileged.reserve(MIB, ReservationAttributes.RW).back(vcmm.physAlloc("ddr", MIB, ChunkPolicy.PAGES_4K));
        assertThrows(IllegalArgumentException.class,
            () -> vcmm.createGuestVcm(privileged, Arm64Stage2Format.INSTANCE, pp, GUEST, MIB), "stage 2 needs user mappings");
        assertEquals(before + 1, vcmm.vcms().size(), "only the VCM made here for the last check");
        assertTrue(privileged.guests().isEmpty());
        assertTrue(privileged.formats().isEmpty(), "no stage-2 table left behind");
    }

    @Test
    void shouldNameTheStageAndLevelOfAFault() {
        Reservation r = guestBuffer(64 * 1024, 0);
        // stage 1: an address the guest did not map
        DeviceFault f1 = assertThrows(DeviceFaultException.class, () -> gpu.read(GUEST + 128 * MIB, new byte[8], 0, 8)).fault();
        assertEquals(1, f1.stage());
        assertEquals(FaultReason.TRANSLATION, f1.reason());
        // stage 2 on the output address: the host takes the guest's RAM away
        List<DeviceFault> seen = new ArrayList<>();
        gpu.hook(f -> {
            seen.add(f);
            return FaultAction.TERMINATE;
        });
        gpu.read(r.address(), new byte[8], 0, 8); // fills the IOTLB with the combined entry
        hostRam.unback();
        assertEquals(0, gpu.iotlb().valid(), "a stage-2 unback flushed the guest's devices' combined entries");
        assertThrows(DeviceFaultException.class, () -> gpu.read(r.address(), new byte[8], 0, 8));
        DeviceFault f2 = seen.getLast();
        assertEquals(2, f2.stage());
        assertEquals(-1, f2.stage1Level(), "the output address");
        assertEquals(RAM_IPA, f2.ipa());
        assertEquals(FaultReason.TRANSLATION, f2.reason());
        assertTrue(f2.toString().contains("stage 2"), f2.toString());
    }

    @Test
    void shouldFaultInStageTwoWhileReadingAStageOneTable() {
        Reservation r = guestBuffer(64 * 1024, 0);
        Reservation pool = host.reservationAt(POOL_IPA);
        PhysMem poolMemory = pool.backingMemory();
        pool.unback(); // the guest's tables are no longer in memory the host maps
        WalkResult.PageFault f = assertInstanceOf(WalkResult.PageFault.class, gpu.translate(r.address()));
        assertEquals(2, f.stage());
        assertEquals(0, f.stage1Level(), "reading the stage-1 root");
        long root = guest.table(Arm64Lpae4kFormat.INSTANCE).root();
        assertEquals(root & -PAGE, f.ipa() & -PAGE);
        pool.back(poolMemory); // the host gives it back: the same tables work again
        assertInstanceOf(WalkResult.Translation.class, gpu.translate(r.address()));
    }

    @Test
    void shouldWaitForANestedBurstInFlightBeforeAHostUnbackReturns() throws Exception {
        Reservation r = guestBuffer(16 * PAGE, 0);
        java.util.concurrent.CountDownLatch inBurst = new java.util.concurrent.CountDownLatch(1);
        java.util.concurrent.CountDownLatch release = new java.util.concurrent.CountDownLatch(1);
        Device.burstHook = (dev, va, pa, n, access) -> {
            if (access == Access.WRITE) {
                inBurst.countDown();
                try {
                    release.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        };
        java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(2);
        try {
            java.util.concurrent.Future<?> writer = pool.submit(() -> gpu.write(r.address(), new byte[64], 0, 64));
            assertTrue(inBurst.await(10, java.util.concurrent.TimeUnit.SECONDS));
            Device.burstHook = null;
            // the burst holds a combined translation through the host's RAM: the host's unback must wait for it
            java.util.concurrent.Future<?> unback = pool.submit(() -> { hostRam.unback(); });
            Thread.sleep(100);
            assertFalse(unback.isDone(), "a stage-2 unback returned while a nested burst that used it was in flight");
            release.countDown();
            writer.get(10, java.util.concurrent.TimeUnit.SECONDS);
            unback.get(10, java.util.concurrent.TimeUnit.SECONDS);
            assertEquals(2, assertThrows(DeviceFaultException.class, () -> gpu.write(r.address(), new byte[8], 0, 8)).fault().stage());
        } finally {
            Device.burstHook = null;
            release.countDown();
            pool.shutdownNow();
        }
    }

    @Test
    void shouldInvalidateCombinedEntriesOnAGuestUnback() {
        Reservation r = guestBuffer(64 * 1024, 0);
        gpu.read(r.address(), new byte[64], 0, 64);
        assertTrue(gpu.iotlb().valid() > 0);
        r.unback();
        DeviceFault f = assertThrows(DeviceFaultException.class, () -> gpu.read(r.address(), new byte[8], 0, 8)).fault();
        assertEquals(1, f.stage());
    }

    @Test
    void shouldTrackDirtyPagesInBothStages() {
        Reservation r = guestBuffer(16 * PAGE, 0);
        DirtyTracking hostDirty = host.dirtyTracking();
        hostDirty.enable();
        guest.dirtyTracking().enable();
        gpu.write(r.address() + 5 * PAGE, new byte[8], 0, 8);
        assertEquals(List.of(r.address() + 5 * PAGE), pages(guest.dirtyTracking().readAndClear(r.address(), r.length())));
        assertEquals(List.of(RAM_IPA + 5 * PAGE), pages(hostDirty.readAndClear(RAM_IPA, 4 * MIB)),
            "the host sees the write at the IPA: a VM with a nested device migrates live");
    }

    static List<Long> pages(DirtyBitmap b) {
        List<Long> out = new ArrayList<>();
        b.forEachDirtyPage(out::add);
        return out;
    }

    @Test
    void shouldShowBothStagesInThePicture() {
        guestBuffer(64 * 1024, 0);
        String dot = GraphExport.toDot(vcmm);
        assertTrue(dot.contains("GUEST"), dot);
        assertTrue(dot.contains("stage 2 of " + host.name()), dot);
        assertTrue(dot.contains("arm64-s2-4k-ipa48 root"), dot);
    }

    @Test
    void shouldFreeTheGuestBeforeTheHostAndDropTheStageTwoTable() {
        Vcm g2host = vcmm.createVcm(0, 1L << 32);
        Reservation pool = g2host.reserveAt(POOL_IPA, MIB, RW_USER).back(vcmm.physAlloc("ddr", MIB, ChunkPolicy.PAGES_4K));
        Vcm g2 = vcmm.createGuestVcm(g2host, Arm64Stage2Format.INSTANCE, pool, GUEST, MIB);
        Device dma = vcmm.device("dma", X86_64Format.INSTANCE);
        Association a = vcmm.assoc(g2, dma);
        a.activate();
        assertThrows(VcmmBusyException.class, g2host::free, "busy with its guest");
        a.deactivate();
        a.deassoc();
        g2.free();
        assertTrue(g2host.guests().isEmpty());
        assertTrue(g2host.formats().isEmpty(), "the stage-2 table went with the last guest");
        pool.unback();
        pool.unreserve();
        g2host.free();
    }
}
