package dev.vcmm;

import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.Armv7ShortFormat;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Failures half-way through a graph operation leave nothing half-done: unback never wedges its reservation,
 * cloneVcm is all or nothing, assoc refuses a VCM its device could never translate.
 */
class GraphFailureTest {

    static final long MIB = 1L << 20;

    Vcmm vcmm;

    @BeforeEach
    void open() {
        vcmm = TestGraphs.graph().pageTables(16 * MIB).ddr(64 * MIB).build();
    }

    @AfterEach
    void close() {
        Vcm.unbackHook = null;
        Vcmm.cloneHook = null;
        vcmm.close();
    }

    @Test
    void shouldLeaveTheReservationBackedAndRetryableWhenUnbackFailsHalfWay() {
        Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        Vcm vcm = vcmm.createVcm(0x4000_0000L, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        PhysMem pm = vcmm.physAlloc("ddr", MIB, ChunkPolicy.VCMM);
        Reservation r = vcm.reserve(MIB, ReservationAttributes.RW, MIB).back(pm);
        Vcm.unbackHook = () -> {
            throw new IllegalStateException("injected: the IOTLB invalidation failed");
        };

        IllegalStateException e = assertThrows(IllegalStateException.class, r::unback);
        assertTrue(e.getMessage().contains("injected"), e.getMessage());
        assertTrue(r.isBacked(), "not wedged half-way: the reservation is still backed");
        assertEquals(1, pm.backingCount(), "its memory is not released");

        Vcm.unbackHook = null;
        r.unback(); // a retry finishes
        assertFalse(r.isBacked());
        assertEquals(0, pm.backingCount());
        assertInstanceOf(WalkResult.PageFault.class, gpu.translate(r.address()));
        r.back(pm); // and the reservation is usable again
        assertEquals(pm.physicalAddress(0), ((WalkResult.Translation) gpu.translate(r.address())).pa());
    }

    @Test
    void shouldUndoEverythingWhenCloneVcmFailsHalfWay() {
        Vcm vcm = vcmm.createVcm(0x4000_0000L, 64 * MIB);
        PhysMem a = vcmm.physAlloc("ddr", MIB, ChunkPolicy.VCMM);
        PhysMem b = vcmm.physAlloc("ddr", MIB, ChunkPolicy.VCMM);
        Reservation ra = vcm.reserve(MIB, ReservationAttributes.RW, MIB).back(a);
        Reservation rb = vcm.reserve(MIB, ReservationAttributes.RW, MIB).back(b);
        vcm.reserve(MIB, ReservationAttributes.RW, MIB); // unbacked, copied as a reservation
        List<Vcm> before = vcmm.vcms();
        AtomicInteger step = new AtomicInteger();
        Vcmm.cloneHook = () -> {
            if (step.incrementAndGet() == 2) { // after the first backing was copied: the second one's owner lets go
                rb.unback();
                b.free();
            }
        };

        assertThrows(IllegalStateException.class, () -> vcmm.cloneVcm(vcm));

        assertEquals(before, vcmm.vcms(), "no half-filled copy left registered");
        assertEquals(1, a.backingCount(), "the copy's backing of the first allocation was undone");
        assertTrue(ra.isBacked());
        Vcmm.cloneHook = null;
        Vcm copy = vcmm.cloneVcm(vcm);
        assertEquals(3, copy.reservations().size(), "a retry copies what is there now (rb stays reserved, unbacked)");
        assertEquals(2, a.backingCount(), "the retry backs the copy of ra with the same memory");
    }

    @Test
    void shouldRefuseToAssociateAVcmOutsideTheFormatsAddressSpace() {
        Device camera = vcmm.device("camera", Armv7ShortFormat.INSTANCE); // 32-bit input addresses
        Vcm high = vcmm.createVcm(0x1_0000_0000L, 64 * MIB);
        long tables = vcmm.pageTableMemory().stats().allocatedBytes();

        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> vcmm.assoc(high, camera));
        assertTrue(e.getMessage().contains("32-bit"), e.getMessage());
        assertTrue(camera.associations().isEmpty(), "nothing associated");
        assertEquals(tables, vcmm.pageTableMemory().stats().allocatedBytes(), "no table built");

        Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        Vcm low = vcmm.createVcm(0x4000_0000L, 64 * MIB);
        assertThrows(IllegalArgumentException.class, () -> vcmm.assoc(low, gpu, AssociationMode.USE_HIGH),
            "a low VCM programmed into the high table could never be reached");
        vcmm.assoc(low, gpu, AssociationMode.USE_LOW).activate();
    }

    @Test
    void shouldLeaveAMemoryTypeOpenWhenItsMemoryRefusesToCloseAndCloseItOnRetry() {
        dev.vcmm.testing.StallingMemory.Backend backend = new dev.vcmm.testing.StallingMemory.Backend();
        MemoryType t = MemoryType.builder("sram").base(0x9000_0000L).size(16 * MIB).backend(backend).build();
        backend.memory().refuseCloseOnce();
        assertThrows(IllegalStateException.class, t::close);
        assertFalse(t.isClosed(), "a refused close changes nothing");
        t.physAlloc(MIB, ChunkPolicy.VCMM).free(); // still usable
        t.close();
        assertTrue(t.isClosed());
        assertTrue(backend.memory().isClosed());
        t.close(); // idempotent
    }

    @Test
    void shouldRefuseADeviceWhoseSmallestPageIsLargerThanTheGraphsGranule() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
            () -> vcmm.device("gpu16k", dev.vcmm.pagetable.PageTableFormats.byName("arm64-16k")));
        assertTrue(e.getMessage().contains("4 KiB granules"), e.getMessage());
        assertTrue(vcmm.devices().isEmpty(), "nothing registered");
    }
}
