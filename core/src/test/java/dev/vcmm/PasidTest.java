package dev.vcmm;

import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.FaultReason;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import static dev.vcmm.DeviceDmaTest.pattern;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** PASIDs: one device, many address spaces at once, tagged IOTLB entries, invalidation by PASID. */
class PasidTest {

    static final long MIB = 1L << 20;
    static final long VA = 0x1000_0000L;

    Vcmm vcmm;
    Device gpu;

    @BeforeEach
    void open() {
        vcmm = TestGraphs.graph().ddr(0x8000_0000L, 256 * MIB).pageTables(16 * MIB).build();
        gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
    }

    @AfterEach
    void close() {
        vcmm.close();
    }

    /** A VCM at {@link #VA} with one 64 KiB reservation backed and filled with {@code pattern(seed)} by {@code gpu}. */
    Reservation filled(Vcm vcm, int pasid, int seed) {
        Reservation r = vcm.reserveAt(VA, 64 << 10, ReservationAttributes.RW).back(vcmm.physAlloc("ddr", 64 << 10, ChunkPolicy.VCMM));
        byte[] data = pattern(64 << 10, seed);
        gpu.write(pasid, VA, data, 0, data.length);
        return r;
    }

    byte[] read(int pasid, long va, int n) {
        byte[] b = new byte[n];
        gpu.read(pasid, va, b, 0, n);
        return b;
    }

    @Test
    void shouldReachEachVcmThroughItsOwnPasidAtTheSameAddress() {
        Vcm def = vcmm.createVcm(VA, 16 * MIB);
        Vcm one = vcmm.createVcm(VA, 16 * MIB);
        Vcm two = vcmm.createVcm(VA, 16 * MIB);
        vcmm.assoc(def, gpu).activate();
        Association a1 = vcmm.assoc(one, gpu, 1).activate();
        Association a2 = vcmm.assoc(two, gpu, 77).activate();
        assertEquals(1, a1.pasid());
        assertSame(a2, gpu.activeFor(77));
        Reservation r0 = filled(def, 0, 0);
        Reservation r1 = filled(one, 1, 1);
        Reservation r2 = filled(two, 77, 2);
        assertArrayEquals(pattern(64 << 10, 0), read(0, VA, 64 << 10));
        assertArrayEquals(pattern(64 << 10, 1), read(1, VA, 64 << 10));
        assertArrayEquals(pattern(64 << 10, 2), read(77, VA, 64 << 10));
        byte[] plain = new byte[16];
        gpu.read(VA, plain, 0, 16); // the calls without a PASID are PASID 0
        assertArrayEquals(java.util.Arrays.copyOf(pattern(64 << 10, 0), 16), plain);
        WalkResult.Translation t1 = assertInstanceOf(WalkResult.Translation.class, gpu.translate(1, VA, Access.READ, false));
        assertEquals(r1.backingMemory().physicalAddress(0), t1.pa());
        assertEquals(r2.backingMemory().physicalAddress(0),
            ((WalkResult.Translation) gpu.translate(77, VA, null, false)).pa());
        assertEquals(r0.backingMemory().physicalAddress(0), ((WalkResult.Translation) gpu.translate(VA)).pa());
        // a PASID with nothing programmed faults
        DeviceFaultException e = assertThrows(DeviceFaultException.class, () -> read(5, VA, 1));
        assertEquals(FaultReason.TRANSLATION, e.fault().reason());
    }

    @Test
    void shouldKeepOtherPasidsCachedWhenOneIsDeactivated() {
        Vcm one = vcmm.createVcm(VA, 16 * MIB);
        Vcm two = vcmm.createVcm(VA, 16 * MIB);
        Association a1 = vcmm.assoc(one, gpu, 1).activate();
        vcmm.assoc(two, gpu, 2).activate();
        filled(one, 1, 1);
        filled(two, 2, 2);
        read(1, VA, 64 << 10);
        read(2, VA, 64 << 10);
        IotlbStats before = gpu.iotlb();
        int each = before.valid() / 2; // the two PASIDs map alike: as many entries each
        assertEquals(2 * each, before.valid(), "both PASIDs cached: " + before);
        a1.deactivate();
        IotlbStats after = gpu.iotlb();
        assertEquals(each, after.valid(), "only PASID 1's entries went: " + after);
        assertEquals(before.flushes(), after.flushes());
        assertEquals(before.pasidInvalidations() + 1, after.pasidInvalidations());
        assertArrayEquals(pattern(64 << 10, 2), read(2, VA, 64 << 10));
        IotlbStats warm = gpu.iotlb();
        assertEquals(after.misses(), warm.misses(), "PASID 2 still hits after PASID 1 went: " + warm);
        assertEquals(FaultReason.TRANSLATION, assertThrows(DeviceFaultException.class, () -> read(1, VA, 1)).fault().reason());
    }

    @Test
    void shouldInvalidateOnlyTheUnbackedPasidsEntries() {
        Vcm one = vcmm.createVcm(VA, 16 * MIB);
        Vcm two = vcmm.createVcm(VA, 16 * MIB);
        vcmm.assoc(one, gpu, 1).activate();
        vcmm.assoc(two, gpu, 2).activate();
        Reservation r1 = filled(one, 1, 1);
        filled(two, 2, 2);
        read(1, VA, 64 << 10);
        read(2, VA, 64 << 10);
        int valid = gpu.iotlb().valid();
        r1.unback(); // same device addresses as PASID 2's: only PASID 1's entries may go
        assertEquals(valid / 2, gpu.iotlb().valid());
        long misses = gpu.iotlb().misses();
        assertArrayEquals(pattern(64 << 10, 2), read(2, VA, 64 << 10));
        assertEquals(misses, gpu.iotlb().misses());
        assertThrows(DeviceFaultException.class, () -> read(1, VA, 1));
    }

    @Test
    void shouldRefuseBadPasidsAndChangeNothing() {
        Vcm one = vcmm.createVcm(VA, 16 * MIB);
        Vcm two = vcmm.createVcm(VA, 16 * MIB);
        assertThrows(IllegalArgumentException.class, () -> vcmm.assoc(one, gpu, 0));
        assertThrows(IllegalArgumentException.class, () -> vcmm.assoc(one, gpu, -1));
        assertThrows(IllegalArgumentException.class, () -> vcmm.assoc(one, gpu, Association.MAX_PASID + 1));
        Device dsp = vcmm.oneToOneDevice("dsp");
        assertThrows(IllegalArgumentException.class, () -> vcmm.assoc(one, dsp, 3));
        assertEquals(0, gpu.associations().size());
        assertEquals(0, one.associations().size());
        Association a1 = vcmm.assoc(one, gpu, 9).activate();
        assertThrows(IllegalArgumentException.class, () -> vcmm.assoc(one, gpu, 10), "one association per device and VCM");
        Association b = vcmm.assoc(two, gpu, 9);
        assertThrows(VcmmBusyException.class, b::activate);
        assertSame(a1, gpu.activeFor(9));
        assertEquals(false, b.isActive());
        assertThrows(IllegalArgumentException.class, () -> gpu.read(-1, VA, new byte[1], 0, 1));
        assertThrows(IllegalArgumentException.class, () -> gpu.translate(Association.MAX_PASID + 1, VA, null, false));
        a1.deactivate();
        a1.deassoc();
        b.activate();
        assertSame(b, gpu.activeFor(9));
        assertNull(gpu.activeFor(10));
        assertNull(gpu.activeLow(), "a PASID association takes no slot");
        assertTrue(GraphExport.toDot(vcmm).contains("pasid 9, active"), "the picture labels PASID associations");
    }

    @Test
    void shouldTagEntriesSoThatALookupMatchesItsOwnPasidOnly() {
        Iotlb t = new Iotlb(64, 4, 4096);
        Iotlb.Entry e = new Iotlb.Entry(0x1000, 4096, 0x8000_0000L, 3, dev.vcmm.pagetable.Attributes.RW);
        t.insert(3, e, t.generation());
        assertNull(t.lookup(0, 0x1000));
        assertSame(e, t.lookup(3, 0x1000));
        t.invalidate(4, 0, 1L << 40);
        assertSame(e, t.lookup(3, 0x1000), "another PASID's range invalidation leaves it");
        t.invalidatePasid(3);
        assertNull(t.lookup(3, 0x1000));
    }
}
