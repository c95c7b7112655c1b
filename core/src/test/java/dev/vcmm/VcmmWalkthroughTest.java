package dev.vcmm;

import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.Armv7ShortFormat;
import dev.vcmm.pagetable.FaultReason;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.pagetable.X86_64Format;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The original VCMM RFC's walk-through and its "Mapping IOMMU, one-to-one and VMM reservations" example,
 * executable: one physical allocation backed into VCMs seen by an arm64-4k device, an armv7-short device,
 * a one-to-one device and the CPU; every device's translation reaches the same physical bytes.
 */
class VcmmWalkthroughTest {

    static final long DDR = 0x8000_0000L;
    static final long MIB = 1L << 20;

    Vcmm vcmm;

    @BeforeEach
    void open() {
        vcmm = TestGraphs.graph().ddr(DDR, 256 * MIB).pageTables(16 * MIB).secure(16 * MIB).build();
    }

    @AfterEach
    void close() {
        vcmm.close();
    }

    static long pa(WalkResult r) {
        return assertInstanceOf(WalkResult.Translation.class, r, () -> "expected a translation, got " + r).pa();
    }

    @Test
    void shouldWalkThroughTheRfcSequence() {
        Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        Vcm vcm = vcmm.createVcm(0x1000_0000L, 256 * MIB);            // vcm = vcm_create(start, len)
        Association assoc = vcmm.assoc(vcm, gpu);                       // avcm = vcm_assoc(vcm, dev, attr)
        assoc.activate();                                               // vcm_activate(avcm)
        Reservation res = vcm.reserve(5 * MIB, ReservationAttributes.RW, MIB); // res = vcm_reserve(vcm, len, attr)
        PhysMem phys = vcmm.physAlloc("ddr", 5 * MIB, ChunkPolicy.VCMM); // phys = vcm_phys_alloc(memtype, len, attr)
        res.back(phys);                                                 // vcm_back(res, phys)
        for (long off = 0; off < 5 * MIB; off += 64 * 1024 + 4096) {
            assertEquals(phys.physicalAddress(off), pa(gpu.translate(res.address() + off)));
        }
        assertEquals(List.of(res), vcmm.reservationsOf(phys));
        res.unback();                                                   // vcm_unback(res)
        assertFalse(gpu.translate(res.address()).isMapped());
        res.unreserve();                                                // vcm_unreserve(res)
        phys.free();                                                    // vcm_phys_free(phys)
        assoc.deactivate();                                             // vcm_deactivate(avcm)
        assoc.deassoc();                                                // vcm_deassoc(avcm)
        vcm.free();                                                     // vcm_free(vcm)
        assertEquals(0, vcmm.memoryType("ddr").stats().allocatedBytes());
        assertEquals(0, vcmm.pageTableMemory().stats().allocatedBytes(), "every page table was freed");
    }

    @Test
    void shouldReachTheSameBytesFromIommuOneToOneAndCpuMappings() {
        Device smmu64 = vcmm.device("video", Arm64Lpae4kFormat.INSTANCE);
        Device smmu7 = vcmm.device("camera", Armv7ShortFormat.INSTANCE);
        Device display = vcmm.oneToOneDevice("display");
        Device cpu = vcmm.cpu("cpu", X86_64Format.INSTANCE);

        PhysMem frame = vcmm.physAlloc(vcmm.memoryType("ddr"), 3 * MIB, ChunkPolicy.VCMM, PhysAllocOptions.CONTIGUOUS);
        long framePa = frame.physicalAddress(0);

        Vcm iommuVcm = vcmm.createVcm(0x4000_0000L, 64 * MIB);
        vcmm.assoc(iommuVcm, smmu64).activate();
        vcmm.assoc(iommuVcm, smmu7).activate();
        Reservation iommuRes = iommuVcm.reserve(3 * MIB, ReservationAttributes.RW, MIB);
        iommuRes.back(frame);

        Vcm oneToOne = vcmm.createOneToOneVcm(vcmm.memoryType("ddr"));
        vcmm.assoc(oneToOne, display).activate();
        Reservation displayRes = oneToOne.reserveAt(framePa, 3 * MIB, ReservationAttributes.RO);
        displayRes.back(frame);

        Vcm cpuVcm = vcmm.createCpuVcm(cpu, 0x7f00_0000_0000L, 1L << 30);
        Reservation cpuRes = cpuVcm.reserve(3 * MIB, ReservationAttributes.RW.withUser(true), MIB);
        cpuRes.back(frame);

        assertEquals(2, iommuVcm.formats().size(), "one table per distinct format");
        byte[] message = "one buffer, four views".getBytes(StandardCharsets.UTF_8);
        long offset = 2 * MIB + 12345;
        frame.memoryType().memory().copyIn(message, 0, frame.physicalAddress(offset), message.length);
        for (WalkResult r : List.of(smmu64.translate(iommuRes.address() + offset), smmu7.translate(iommuRes.address() + offset),
            display.translate(framePa + offset), cpu.translate(cpuRes.address() + offset))) {
            long pa = pa(r);
            assertEquals(frame.physicalAddress(offset), pa);
            byte[] read = new byte[message.length];
            vcmm.memoryTypeAt(pa).memory().copyOut(pa, read, 0, read.length);
            assertArrayEquals(message, read);
        }
        assertEquals(3, vcmm.whoMaps(frame.physicalAddress(offset)).size());
        assertEquals(cpuRes.address() + offset, vcmm.translate(iommuVcm, iommuRes.address() + offset, cpuVcm).orElseThrow());
        assertEquals(framePa + offset, vcmm.translate(cpuVcm, cpuRes.address() + offset, oneToOne).orElseThrow());
        assertEquals(FaultReason.PERMISSION, ((WalkResult.PageFault) display.translate(framePa, Access.WRITE, false)).reason(),
            "the display's reservation is read-only");
        assertThrows(VcmmBusyException.class, frame::free, "still backs three reservations");
        assertEquals(3, frame.backingCount());
    }

    @Test
    void shouldBuildANewFormatsTableFromTheCurrentMappings() {
        Device a = vcmm.device("a", Arm64Lpae4kFormat.INSTANCE);
        Device b = vcmm.device("b", Armv7ShortFormat.INSTANCE);
        Vcm vcm = vcmm.createVcm(0x1000_0000L, 64 * MIB);
        vcmm.assoc(vcm, a).activate();
        Reservation r = vcm.reserve(2 * MIB, ReservationAttributes.RW, MIB);
        PhysMem pm = vcmm.physAlloc("ddr", 2 * MIB, ChunkPolicy.VCMM);
        r.back(pm);
        Association late = vcmm.assoc(vcm, b).activate();
        assertEquals(pm.physicalAddress(MIB + 8), pa(b.translate(r.address() + MIB + 8)));
        late.deactivate();
        late.deassoc();
        assertEquals(List.of(Arm64Lpae4kFormat.INSTANCE), vcm.formats(), "the last armv7 association took its table with it");
    }

    @Test
    void shouldKeepSecureMemoryForSecureReservationsAndDevices() {
        Device plain = vcmm.device("plain", Arm64Lpae4kFormat.INSTANCE);
        Device trusted = vcmm.device("trusted", DeviceKind.IOMMU, Arm64Lpae4kFormat.INSTANCE, true);
        Vcm vcm = vcmm.createVcm(0x1000_0000L, 64 * MIB);
        vcmm.assoc(vcm, plain).activate();
        vcmm.assoc(vcm, trusted).activate();
        PhysMem secret = vcmm.physAlloc("secure", MIB, ChunkPolicy.VCMM);
        Reservation open = vcm.reserve(MIB, ReservationAttributes.RW);
        assertThrows(IllegalArgumentException.class, () -> open.back(secret), "secure memory into a non-secure reservation");
        assertFalse(open.isBacked());
        Reservation sealed = vcm.reserve(MIB, ReservationAttributes.RW.withSecure(true));
        sealed.back(secret);
        assertEquals(secret.physicalAddress(0), pa(trusted.translate(sealed.address())));
        assertEquals(FaultReason.SECURE, ((WalkResult.PageFault) plain.translate(sealed.address())).reason());
    }

    @Test
    void shouldRefuseBusyStateChangesAndChangeNothing() {
        Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        Vcm vcm = vcmm.createVcm(0x1000_0000L, 64 * MIB);
        Association a = vcmm.assoc(vcm, gpu).activate();
        Reservation r = vcm.reserve(MIB, ReservationAttributes.RW);
        PhysMem pm = vcmm.physAlloc("ddr", MIB, ChunkPolicy.VCMM);
        r.back(pm);
        assertThrows(VcmmBusyException.class, vcm::free);
        assertThrows(VcmmBusyException.class, r::unreserve);
        assertThrows(VcmmBusyException.class, a::deassoc);
        assertThrows(VcmmBusyException.class, pm::free);
        assertThrows(IllegalStateException.class, () -> r.back(pm), "already backed");
        assertTrue(a.isActive());
        assertEquals(pm.physicalAddress(0), pa(gpu.translate(r.address())), "still mapped");
        r.unback();
        assertThrows(IllegalStateException.class, r::unback, "not backed");
        r.unreserve();
        assertThrows(IllegalStateException.class, r::unreserve);
        assertThrows(IllegalStateException.class, () -> r.back(pm), "use after unreserve");
        a.deactivate();
        a.deassoc();
        vcm.free();
        assertThrows(IllegalStateException.class, () -> vcm.reserve(MIB, ReservationAttributes.RW), "use after free");
        pm.free();
    }

    @Test
    void shouldRefuseBadReservationsAndBackings() {
        Vcm vcm = vcmm.createVcm(0x1000_0000L, 64 * MIB);
        Reservation r = vcm.reserveAt(0x1010_0000L, MIB, ReservationAttributes.RW);
        assertThrows(IllegalArgumentException.class, () -> vcm.reserveAt(0x1010_0800L, MIB, ReservationAttributes.RW), "misaligned");
        assertThrows(IllegalStateException.class, () -> vcm.reserveAt(0x1018_0000L, MIB, ReservationAttributes.RW), "overlapping");
        assertThrows(IllegalArgumentException.class, () -> vcm.reserveAt(0x0FFF_F000L, MIB, ReservationAttributes.RW), "outside");
        assertThrows(IllegalArgumentException.class, () -> vcm.reserve(0, ReservationAttributes.RW));
        assertThrows(VcmmOutOfMemoryException.class, () -> vcm.reserve(128 * MIB, ReservationAttributes.RW));
        assertEquals(List.of(r), vcm.reservations(), "nothing reserved by refused calls");
        PhysMem small = vcmm.physAlloc("ddr", 512 * 1024, ChunkPolicy.VCMM);
        assertThrows(IllegalArgumentException.class, () -> r.back(small), "too little memory");
        assertThrows(IllegalArgumentException.class, () -> r.back(small, 4096 + 1), "misaligned offset");
        try (Vcmm other = Vcmm.builder().memoryType(MemoryType.builder("ddr").base(DDR).size(16 * MIB)).build()) {
            PhysMem foreign = other.physAlloc("ddr", MIB, ChunkPolicy.VCMM);
            assertThrows(IllegalArgumentException.class, () -> r.back(foreign), "foreign physical memory");
            Vcm otherVcm = other.createVcm(0, 16 * MIB);
            assertThrows(IllegalArgumentException.class, () -> vcmm.cloneVcm(otherVcm), "foreign VCM");
        }
        assertFalse(r.isBacked());
        assertEquals(0, small.backingCount());
    }

    @Test
    void shouldSelectTheLowOrHighTableByTheTopAddressBit() {
        Device dev = vcmm.device("dev", X86_64Format.INSTANCE);
        Vcm low = vcmm.createVcm(0x1000_0000L, 64 * MIB);
        Vcm high = vcmm.createVcm(0xFFFF_8000_0000_0000L, 64 * MIB);
        Association lowAssoc = vcmm.assoc(low, dev, AssociationMode.USE_LOW).activate();
        vcmm.assoc(high, dev, AssociationMode.USE_HIGH).activate();
        PhysMem a = vcmm.physAlloc("ddr", MIB, ChunkPolicy.VCMM);
        PhysMem b = vcmm.physAlloc("ddr", MIB, ChunkPolicy.VCMM);
        Reservation lr = low.reserve(MIB, ReservationAttributes.RW).back(a);
        Reservation hr = high.reserve(MIB, ReservationAttributes.RW).back(b);
        assertEquals(a.physicalAddress(0), pa(dev.translate(lr.address())));
        assertEquals(b.physicalAddress(0), pa(dev.translate(hr.address())));
        Vcm third = vcmm.createVcm(0x2000_0000L, 64 * MIB);
        Association conflict = vcmm.assoc(third, dev, AssociationMode.USE_LOW);
        assertThrows(VcmmBusyException.class, conflict::activate, "the low slot is taken");
        lowAssoc.deactivate();
        conflict.activate();
        assertFalse(dev.translate(lr.address()).isMapped());
    }

    @Test
    void shouldCopyBytesCloneAndCopyMappings() {
        Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        Vcm vcm = vcmm.createVcm(0x1000_0000L, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        Reservation src = vcm.reserve(MIB, ReservationAttributes.RW).back(vcmm.physAlloc("ddr", MIB, ChunkPolicy.PAGES_4K));
        Reservation dst = vcm.reserve(MIB, ReservationAttributes.RW).back(vcmm.physAlloc("ddr", MIB, ChunkPolicy.VCMM));
        byte[] data = new byte[10_000];
        for (int i = 0; i < data.length; i++) {
            data[i] = (byte) (i * 31);
        }
        PhysMem sm = src.backingMemory();
        for (int i = 0; i < data.length; i++) { // byte by byte through the scattered 4K chunks
            sm.memoryType().memory().copyIn(data, i, sm.physicalAddress(5000 + i), 1);
        }
        vcmm.copy(dst, 70_000, src, 5000, data.length);
        byte[] back = new byte[data.length];
        PhysMem dm = dst.backingMemory();
        for (int i = 0; i < back.length; i++) {
            dm.memoryType().memory().copyOut(dm.physicalAddress(70_000 + i), back, i, 1);
        }
        assertArrayEquals(data, back);
        assertThrows(IndexOutOfBoundsException.class, () -> vcmm.copy(dst, MIB - 10, src, 0, 20));

        Vcm clone = vcmm.cloneVcm(vcm);
        assertEquals(2, clone.reservations().size());
        assertEquals(vcm.reservations().get(0).address(), clone.reservations().get(0).address());
        assertEquals(2, vcmm.reservationsOf(sm).size(), "the clone shares the physical memory");
        Vcm part = vcmm.createVcm(0x1000_0000L, 64 * MIB);
        List<Reservation> copied = vcmm.copyMappings(vcm, src.address() + 4096 * 3, 4096 * 2, part);
        assertEquals(1, copied.size());
        assertEquals(src.address() + 4096 * 3, copied.getFirst().address());
        assertEquals(4096 * 2, copied.getFirst().length());
        assertEquals(sm.physicalAddress(4096 * 3), vcmm.whoMaps(sm.physicalAddress(4096 * 3)).stream()
            .filter(m -> m.reservation().vcm() == part).findFirst().map(m -> sm.physicalAddress(4096 * 3)).orElseThrow());
    }
}
