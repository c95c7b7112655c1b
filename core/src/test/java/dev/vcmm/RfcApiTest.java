package dev.vcmm;

import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.List;

import static dev.vcmm.testing.TestGraphs.DDR_BASE;
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
 * The rest of the original VCMM interface: wrapping a physical range ({@code vcm_map_phys_addr}), bounds
 * ({@code vcm_create_bound}), one-call bindings and reference-counted reservations (VCM v2's {@code vcm_make_binding},
 * {@code vcm_map}, {@code vcm_ref_reserve}), prioritised pools ({@code memtype_t}). Each with its bad input: a clear
 * exception and nothing changed.
 */
class RfcApiTest {

    static final long VA = 0x4000_0000L;
    static final long SRAM_BASE = 0x0800_0000L;

    Vcmm vcmm;
    MemoryType ddr;
    Device gpu;

    @BeforeEach
    void open() {
        vcmm = TestGraphs.graph()
            .memory(MemoryType.builder("ddr").base(DDR_BASE).size(64 * MIB).threadCacheCapacity(0))
            .memory(MemoryType.builder("sram").base(SRAM_BASE).size(256 * 1024).threadCacheCapacity(0))
            .pageTables(16 * MIB).device("gpu", Arm64Lpae4kFormat.INSTANCE).build();
        ddr = vcmm.memoryType("ddr");
        gpu = vcmm.device("gpu");
    }

    @AfterEach
    void close() {
        vcmm.close();
    }

    long allocated(MemoryType m) {
        return m.stats().allocatedBytes();
    }

    // ---------------------------------------------------------------------------------------------
    // vcm_map_phys_addr

    @Test
    void shouldWrapAFixedPhysicalRangeKeepingItsContents() {
        long pa = DDR_BASE + 3 * MIB + 64 * 1024; // a frame buffer the firmware left there
        long len = MIB + 8192;
        byte[] logo = {1, 2, 3, 4};
        ddr.memory().copyIn(logo, 0, pa + 8192, logo.length);
        PhysMem fb = vcmm.physAllocAt(pa, len);
        assertSame(ddr, fb.memoryType());
        assertEquals(len, fb.length());
        assertTrue(fb.isContiguous());
        assertEquals(pa, fb.physicalAddress(0));
        assertEquals(len, allocated(ddr), "exactly the named blocks are taken");
        byte[] seen = new byte[4];
        ddr.memory().copyOut(pa + 8192, seen, 0, 4);
        assertArrayEquals(logo, seen, "not zeroed: wrapping is asking for what is there");

        // map it for a device, then give it back
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        Reservation r = vcm.reserve(len, ReservationAttributes.RW).back(fb);
        byte[] viaDma = new byte[4];
        gpu.read(r.address() + 8192, viaDma, 0, 4);
        assertArrayEquals(logo, viaDma);
        r.unback();
        fb.free();
        assertEquals(0, allocated(ddr));
    }

    @Test
    void shouldRefuseToWrapARangeAnyPartOfWhichIsTakenAndTakeNothing() {
        PhysMem other = ddr.physAllocAt(DDR_BASE + 2 * MIB + 4096, 4096);
        long before = allocated(ddr);
        assertThrows(VcmmBusyException.class, () -> ddr.physAllocAt(DDR_BASE, 4 * MIB));
        assertEquals(before, allocated(ddr), "the blocks before the taken one were given back");
        assertThrows(IllegalArgumentException.class, () -> ddr.physAllocAt(DDR_BASE + 100, 4096), "misaligned");
        assertThrows(IllegalArgumentException.class, () -> ddr.physAllocAt(DDR_BASE, 0));
        assertThrows(IllegalArgumentException.class, () -> ddr.physAllocAt(DDR_BASE + 64 * MIB - 4096, 8192), "leaves the type");
        assertThrows(IllegalArgumentException.class, () -> ddr.physAllocAt(Long.MAX_VALUE & -4096, 4096));
        assertThrows(IllegalArgumentException.class, () -> vcmm.physAllocAt(0x7000_0000L, 4096), "no memory type there");
        assertEquals(before, allocated(ddr));
        other.free();
        PhysMem whole = ddr.physAllocAt(DDR_BASE, 64 * MIB); // now all of it is free
        assertEquals(64 * MIB, allocated(ddr));
        whole.free();
    }

    // ---------------------------------------------------------------------------------------------
    // bounds

    @Test
    void shouldReserveFromABoundOnlyInsideItAndKeepOthersOut() {
        Vcm vcm = vcmm.createVcm(VA, 16 * MIB);
        Bound window = vcm.createBound(4 * MIB, 4 * MIB);
        assertEquals(0, window.start() & (4 * MIB - 1));
        assertEquals(List.of(window), vcm.bounds());
        assertEquals(12 * MIB, vcm.freeBytes(), "the bound's range left the VCM's free space");
        Reservation a = window.reserve(MIB, ReservationAttributes.RW, MIB);
        Reservation b = window.reserve(3 * MIB, ReservationAttributes.RW);
        for (Reservation r : List.of(a, b)) {
            assertTrue(r.address() >= window.start() && r.address() + r.length() <= window.start() + window.length(), r.toString());
            assertSame(window, r.bound());
            assertSame(r, vcm.reservationAt(r.address()), "a bound's reservation is the VCM's too");
        }
        assertEquals(0, window.freeBytes());
        assertThrows(VcmmOutOfMemoryException.class, () -> window.reserve(4096, ReservationAttributes.RW), "the bound is full");
        Reservation outside = vcm.reserve(12 * MIB, ReservationAttributes.RW); // the rest of the VCM, none of the bound
        assertNull(outside.bound());
        assertThrows(IllegalStateException.class, () -> vcm.reserveAt(window.start(), 4096, ReservationAttributes.RW),
            "the bound's range is not the VCM's to hand out");

        assertThrows(VcmmBusyException.class, window::free, "freed only when empty");
        assertFalse(window.isFreed());
        a.unreserve();
        assertEquals(MIB, window.freeBytes(), "unreserve returns the range to the bound");
        assertEquals(0, vcm.freeBytes());
        b.unreserve();
        outside.unreserve();
        assertThrows(VcmmBusyException.class, vcm::free, "a VCM with a bound is not empty");
        window.free();
        assertTrue(window.isFreed());
        assertEquals(16 * MIB, vcm.freeBytes());
        assertThrows(IllegalStateException.class, window::free, "already freed");
        assertThrows(IllegalStateException.class, () -> window.reserve(4096, ReservationAttributes.RW), "use after free");
        vcm.free();
    }

    @Test
    void shouldRefuseBadBoundsAndChangeNothing() {
        Vcm vcm = vcmm.createVcm(VA, 4 * MIB);
        assertThrows(VcmmOutOfMemoryException.class, () -> vcm.createBound(8 * MIB, 4096));
        assertThrows(IllegalArgumentException.class, () -> vcm.createBound(0, 4096));
        assertThrows(IllegalArgumentException.class, () -> vcm.createBound(4096, 3000));
        assertEquals(4 * MIB, vcm.freeBytes());
        assertEquals(List.of(), vcm.bounds());
        Bound b = vcm.createBound(MIB, 4096);
        assertThrows(VcmmOutOfMemoryException.class, () -> b.reserve(2 * MIB, ReservationAttributes.RW));
        assertThrows(IllegalArgumentException.class, () -> b.reserve(4096, ReservationAttributes.RW, 5));
        assertEquals(MIB, b.freeBytes());
        assertEquals(List.of(), b.reservations());
    }

    // ---------------------------------------------------------------------------------------------
    // bindings and reference-counted reservations

    @Test
    void shouldMakeAndDestroyABindingInOneCall() {
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        Binding b = Binding.make(vcm, ddr, 3 * MIB, ChunkPolicy.VCMM, ReservationAttributes.RW);
        assertTrue(b.ownsMemory());
        assertSame(b.memory(), b.reservation().backingMemory());
        assertEquals(0, b.address() & (MIB - 1), "aligned to the largest chunk: the tables can use blocks");
        gpu.write(b.address() + 5, new byte[] {9}, 0, 1);
        WalkResult.Translation t = assertInstanceOf(WalkResult.Translation.class, gpu.translate(b.address() + 5));
        assertEquals(b.memory().physicalAddress(5), t.pa());
        b.close();
        assertTrue(b.reservation().isReleased());
        assertTrue(b.memory().isFreed());
        assertEquals(0, allocated(ddr));
        assertTrue(vcm.reservations().isEmpty());
        assertThrows(IllegalStateException.class, b::close, "every reference closed already");
    }

    @Test
    void shouldPlaceAOneToOneBindingAtItsMemory() {
        Device dsp = vcmm.oneToOneDevice("dsp");
        Vcm vcm = vcmm.createOneToOneVcm(ddr);
        vcmm.assoc(vcm, dsp).activate();
        Binding b = Binding.make(vcm, ddr, 100_000, ChunkPolicy.VCMM, ReservationAttributes.RW);
        assertTrue(b.memory().isContiguous());
        assertEquals(b.memory().physicalAddress(0), b.address());
        dsp.write(b.address() + 99_999, new byte[] {4}, 0, 1);
        b.close();
        assertEquals(0, allocated(ddr));
    }

    @Test
    void shouldUndoEveryStepOfAFailedBinding() {
        Vcm small = vcmm.createVcm(VA, MIB);
        assertThrows(VcmmOutOfMemoryException.class, () -> Binding.make(small, ddr, 2 * MIB, ChunkPolicy.VCMM, ReservationAttributes.RW));
        assertEquals(0, allocated(ddr), "the memory it allocated was freed");
        assertTrue(small.reservations().isEmpty());
        Vcm vcm = vcmm.createVcm(VA + 16 * MIB, 16 * MIB);
        MemoryType secure = vcmm.memoryTypes().stream().filter(m -> m.name().equals("sram")).findFirst().orElseThrow();
        assertThrows(IllegalArgumentException.class, () -> Binding.make(vcm, ddr, -1, ChunkPolicy.VCMM, ReservationAttributes.RW));
        PhysMem pm = secure.physAlloc(8192, ChunkPolicy.VCMM);
        pm.free();
        assertThrows(IllegalStateException.class, () -> Binding.map(vcm, pm, ReservationAttributes.RW), "freed memory");
        assertTrue(vcm.reservations().isEmpty());
        try (Vcmm other = TestGraphs.ddrAndTables(8 * MIB)) {
            assertThrows(IllegalArgumentException.class,
                () -> Binding.make(vcm, other.memoryType("ddr"), 4096, ChunkPolicy.VCMM, ReservationAttributes.RW), "foreign");
        }
        Vcm o2o = vcmm.createOneToOneVcm(ddr);
        PhysMem scattered = ddr.physAllocAt(DDR_BASE + 4 * MIB, 4096);
        PhysMem scattered2 = ddr.physAllocAt(DDR_BASE + 8 * MIB, 4096);
        scattered2.free();
        assertTrue(scattered.isContiguous());
        Binding fine = Binding.map(o2o, scattered, ReservationAttributes.RW);
        assertEquals(DDR_BASE + 4 * MIB, fine.address());
        assertThrows(IllegalStateException.class, () -> Binding.map(o2o, scattered, ReservationAttributes.RW),
            "backed at its address already: the range is taken; nothing left");
        assertEquals(1, o2o.reservations().size());
        fine.close();
        assertFalse(scattered.isFreed(), "a mapped binding leaves the memory to its owner");
        scattered.free();
    }

    @Test
    void shouldKeepAReferencedReservationUntilItsLastHolderLetsGo() {
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        PhysMem pm = ddr.physAlloc(64 * 1024, ChunkPolicy.VCMM);
        Binding b = Binding.map(vcm, pm, ReservationAttributes.RW);
        assertSame(b, b.ref());
        assertEquals(2, b.reservation().references());
        b.close(); // the first holder goes: the mapping stays for the second
        assertFalse(b.reservation().isReleased());
        assertTrue(b.reservation().isBacked());
        gpu.write(b.address(), new byte[] {1}, 0, 1);
        b.close();
        assertTrue(b.reservation().isReleased());
        assertEquals(0, pm.backingCount());
        pm.free();

        Reservation r = vcm.reserve(4096, ReservationAttributes.RW).ref().ref();
        assertEquals(3, r.references());
        r.back(ddr.physAlloc(4096, ChunkPolicy.VCMM));
        r.unreserve();
        r.unreserve(); // two holders dropped; the backing is untouched
        assertTrue(r.isBacked());
        assertThrows(VcmmBusyException.class, r::unreserve, "the last holder must unback first");
        assertEquals(1, r.references());
        PhysMem m = r.backingMemory();
        r.unback();
        r.unreserve();
        m.free();
        assertThrows(IllegalStateException.class, r::ref, "use after unreserve");
        assertThrows(IllegalStateException.class, r::unreserve);
    }

    @Test
    void shouldLetAClientDropItsReferenceWithoutUnbackingAnotherHoldersReservation() {
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        PhysMem pm = ddr.physAlloc(4096, ChunkPolicy.VCMM);
        Reservation r;
        try (Client c = vcmm.client("c")) {
            r = c.reserve(vcm, 4096, ReservationAttributes.RW, 4096);
            r.back(pm);
            r.ref(); // a second holder, outside the client
        }
        assertFalse(r.isReleased());
        assertTrue(r.isBacked(), "the client's release dropped its reference only");
        assertEquals(1, r.references());
        r.unback();
        r.unreserve();
        pm.free();
    }

    // ---------------------------------------------------------------------------------------------
    // memtype_t: prioritised pools

    @Test
    void shouldFallBackToTheNextPoolAllOrNothing() {
        MemoryType sram = vcmm.memoryType("sram");
        PrioritisedMemory fast = PrioritisedMemory.of("fast", sram, ddr);
        PhysMem a = fast.physAlloc(128 * 1024, ChunkPolicy.VCMM);
        assertSame(sram, a.memoryType(), "SRAM first");
        PhysMem b = fast.physAlloc(192 * 1024, ChunkPolicy.VCMM);
        assertSame(ddr, b.memoryType(), "SRAM has 128 KiB left: the whole allocation falls back to DDR");
        assertEquals(128 * 1024, allocated(sram), "nothing of b was left in SRAM");
        PhysMem c = fast.physAlloc(128 * 1024, ChunkPolicy.VCMM);
        assertSame(sram, c.memoryType());
        PhysMem big = fast.physAlloc(MIB, ChunkPolicy.VCMM);
        assertSame(ddr, big.memoryType(), "larger than SRAM: DDR");
        PhysMem rest = ddr.physAlloc(64 * MIB - MIB - 192 * 1024, ChunkPolicy.VCMM);
        VcmmOutOfMemoryException e = assertThrows(VcmmOutOfMemoryException.class, () -> fast.physAlloc(4096, ChunkPolicy.VCMM));
        assertEquals(2, e.getSuppressed().length, "each pool's answer: " + e);
        assertEquals(256 * 1024, allocated(sram));
        assertEquals(64 * MIB, allocated(ddr), "nothing held by the failed call");
        assertThrows(IllegalArgumentException.class, () -> PrioritisedMemory.of("none"));
        assertThrows(IllegalArgumentException.class, () -> PrioritisedMemory.of("twice", sram, sram));
        assertThrows(IllegalArgumentException.class, () -> fast.physAlloc(128 * MIB, ChunkPolicy.VCMM), "no pool can ever");
        for (PhysMem p : List.of(a, b, c, big, rest)) {
            p.free();
        }
        assertEquals(List.of(sram, ddr), fast.pools());
    }
}
