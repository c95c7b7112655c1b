package dev.vcmm;

import dev.vcmm.pagetable.Armv7ShortFormat;
import dev.vcmm.pagetable.FaultReason;
import dev.vcmm.pagetable.Walker;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.pagetable.X86_64Format;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import static dev.vcmm.testing.TestGraphs.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Association attributes after creation ({@code vcm_set_assoc_attr}: {@code VCM_USE_LOW_BASE} / {@code HIGH_BASE}), a
 * split set as the hardware sets it ({@code VCM_SPLIT}: Armv7 TTBCR.N, Arm64 TCR.T0SZ/T1SZ), and each association's
 * table root ({@code vcm_get_pgtbl_pa}) checked by walking it from the root alone.
 */
class SplitTest {

    Vcmm vcmm;

    @BeforeEach
    void open() {
        vcmm = TestGraphs.graph().ddr(64 * MIB).pageTables(16 * MIB)
            .device("v7", Armv7ShortFormat.INSTANCE).device("x86", X86_64Format.INSTANCE).build();
    }

    @AfterEach
    void close() {
        vcmm.close();
    }

    /** Backs one page at the start of {@code vcm} and returns its physical address. */
    long backFirstPage(Vcm vcm) {
        PhysMem pm = vcmm.physAlloc("ddr", 4096, ChunkPolicy.VCMM);
        vcm.reserveAt(vcm.start(), 4096, ReservationAttributes.RW).back(pm);
        return pm.physicalAddress(0);
    }

    @Test
    void shouldSplitAnArmv7DeviceWhereTtbcrNSays() {
        Device v7 = vcmm.device("v7");
        Vcm user = vcmm.createVcm(0x1000_0000L, 16 * MIB);   // below 1 GiB
        Vcm kernel = vcmm.createVcm(0x4000_0000L, 16 * MIB); // at 1 GiB: bit 31 clear, low under the default split
        assertSame(Split.TOP_BIT, v7.split());
        assertThrows(IllegalArgumentException.class, () -> vcmm.assoc(kernel, v7, AssociationMode.USE_HIGH),
            "the top bit says low");
        v7.setSplit(Split.ttbcr(2)); // TTBR0 below 2^30, TTBR1 from 2^30
        Association low = vcmm.assoc(user, v7, AssociationMode.USE_LOW).activate();
        Association high = vcmm.assoc(kernel, v7, AssociationMode.USE_HIGH).activate();
        long userPa = backFirstPage(user);
        long kernelPa = backFirstPage(kernel);
        assertEquals(userPa + 5, ((WalkResult.Translation) v7.translate(user.start() + 5)).pa());
        assertEquals(kernelPa + 5, ((WalkResult.Translation) v7.translate(kernel.start() + 5)).pa());
        // each association's root, walked from the root alone, gives the same translation as the device
        assertNotEquals(0, low.root());
        assertEquals(user.table(v7.format()).root(), low.root());
        assertEquals(userPa + 5, ((WalkResult.Translation) Walker.translate(v7.format(),
            vcmm.pageTableMemory().memory(), low.root(), user.start() + 5)).pa());
        assertEquals(kernelPa + 5, ((WalkResult.Translation) Walker.translate(v7.format(),
            vcmm.pageTableMemory().memory(), high.root(), kernel.start() + 5)).pa());
        assertThrows(VcmmBusyException.class, () -> v7.setSplit(Split.TOP_BIT), "active associations");
        assertEquals(Split.ttbcr(2).toString(), v7.split().toString());
        low.deactivate();
        high.deactivate();
        assertThrows(IllegalArgumentException.class, () -> v7.setSplit(Split.ttbcr(0)),
            "N=0 sends everything low: the high association would not fit");
        assertEquals(Split.ttbcr(2).toString(), v7.split().toString(), "nothing changed");
    }

    @Test
    void shouldLeaveTheGapOfAnArm64StyleSplitUntranslated() {
        Device x86 = vcmm.device("x86");
        x86.setSplit(Split.tcr(20, 30)); // low [0, 2^44), high [2^64 - 2^34, 2^64)
        Vcm low = vcmm.createVcm(0x1000_0000L, 16 * MIB);
        Vcm high = vcmm.createVcm(-(1L << 33), 16 * MIB);
        Vcm gap = vcmm.createVcm(1L << 45, 16 * MIB); // valid for x86-64, low under the top bit, in neither half here
        vcmm.assoc(low, x86, AssociationMode.USE_LOW).activate();
        vcmm.assoc(high, x86, AssociationMode.USE_HIGH).activate();
        assertThrows(IllegalArgumentException.class, () -> vcmm.assoc(gap, x86, AssociationMode.USE_LOW));
        assertThrows(IllegalArgumentException.class, () -> vcmm.assoc(gap, x86, AssociationMode.USE_HIGH));
        long pa = backFirstPage(high);
        assertEquals(pa, ((WalkResult.Translation) x86.translate(high.start())).pa());
        WalkResult.PageFault f = assertInstanceOf(WalkResult.PageFault.class, x86.translate(1L << 45));
        assertEquals(FaultReason.TRANSLATION, f.reason());
        assertThrows(IllegalArgumentException.class, () -> Split.tcr(0, 16));
        assertThrows(IllegalArgumentException.class, () -> Split.ttbcr(8));
        assertThrows(IllegalArgumentException.class, () -> vcmm.oneToOneDevice("d").setSplit(Split.ttbcr(1)));
    }

    @Test
    void shouldChangeAnInactiveAssociationsMode() {
        Device v7 = vcmm.device("v7");
        Vcm kernel = vcmm.createVcm(0x8000_0000L, 16 * MIB); // bit 31 set: the high half
        Association a = vcmm.assoc(kernel, v7, AssociationMode.WHOLE);
        assertThrows(IllegalArgumentException.class, () -> a.setMode(AssociationMode.USE_LOW));
        assertEquals(AssociationMode.WHOLE, a.mode(), "nothing changed");
        assertSame(a, a.setMode(AssociationMode.USE_HIGH));
        a.activate();
        assertSame(a, v7.activeHigh());
        assertEquals(null, v7.activeLow(), "USE_HIGH programs the high slot only");
        assertThrows(VcmmBusyException.class, () -> a.setMode(AssociationMode.WHOLE), "active (-EBUSY)");
        a.deactivate();
        a.setMode(AssociationMode.WHOLE);
        a.deassoc();
        assertThrows(IllegalStateException.class, () -> a.setMode(AssociationMode.USE_HIGH));
        assertTrue(a.isRemoved());
    }

    /** VCM_EXT_KERNEL and VCM_EXT_USER: one kernel VCM in the high half, user VCMs switched in the low half. */
    @Test
    void shouldGiveACpuAKernelHalfAndSwitchedUserHalves() {
        Device cpu = vcmm.cpu("cpu", X86_64Format.INSTANCE);
        Vcm kernel = vcmm.createCpuVcm(cpu, -(1L << 30), 64 * MIB, AssociationMode.USE_HIGH);
        Vcm userA = vcmm.createCpuVcm(cpu, 0x40_0000L, 64 * MIB, AssociationMode.USE_LOW);
        assertThrows(VcmmBusyException.class, () -> vcmm.createCpuVcm(cpu, 0x40_0000L, 64 * MIB, AssociationMode.USE_LOW),
            "the low slot is taken");
        assertThrows(IllegalArgumentException.class, () -> vcmm.createCpuVcm(cpu, 0x40_0000L, 64 * MIB, AssociationMode.USE_HIGH),
            "not in the high half");
        int vcms = vcmm.vcms().size();
        long kPa = backFirstPage(kernel);
        long aPa = backFirstPage(userA);
        assertEquals(kPa, ((WalkResult.Translation) cpu.translate(kernel.start())).pa());
        assertEquals(aPa, ((WalkResult.Translation) cpu.translate(userA.start())).pa());
        // a context switch: the user half changes, the kernel half stays
        Association a = userA.associations().getFirst();
        a.deactivate();
        Vcm userB = vcmm.createCpuVcm(cpu, 0x40_0000L, 64 * MIB, AssociationMode.USE_LOW);
        long bPa = backFirstPage(userB);
        assertEquals(bPa, ((WalkResult.Translation) cpu.translate(userB.start())).pa());
        assertEquals(kPa, ((WalkResult.Translation) cpu.translate(kernel.start())).pa());
        assertEquals(vcms + 1, vcmm.vcms().size(), "the refused creations left no VCM behind");
    }

    /** vcm_create_from_prebuilt: the CPU VCM maps into a table its owner built, and gives it back untouched. */
    @Test
    void shouldAdoptAPrebuiltTableAndGiveItBack() {
        Device cpu = vcmm.cpu("cpu", X86_64Format.INSTANCE);
        MemoryType pt = vcmm.pageTableMemory();
        dev.vcmm.pagetable.PageTable kernelTable = dev.vcmm.pagetable.PageTable.create(X86_64Format.INSTANCE, pt.memory(), pt.allocator());
        long text = -(1L << 30);                           // the kernel's own text, mapped before the VCM exists
        long textPa = TestGraphs.DDR_BASE + 32 * MIB;
        kernelTable.map(text, textPa, 2 * MIB, dev.vcmm.pagetable.Attributes.RWX);
        long tablesBefore = kernelTable.tableBytes();

        Vcm kernel = vcmm.createCpuVcm(cpu, kernelTable, -(1L << 30), 512 * MIB, AssociationMode.USE_HIGH);
        Association a = kernel.associations().getFirst();
        assertEquals(kernelTable.root(), a.root(), "the prebuilt root is what the CPU runs on");
        WalkResult tw = cpu.translate(text + 7);
        assertInstanceOf(WalkResult.Translation.class, tw, tw.toString());
        assertEquals(textPa + 7, ((WalkResult.Translation) tw).pa(), "its own mappings stay");
        Reservation over = kernel.reserveAt(text, 2 * MIB, ReservationAttributes.RW); // keeps the VCM's placements off the text
        PhysMem page = vcmm.physAlloc("ddr", 2 * MIB, ChunkPolicy.VCMM);
        assertThrows(dev.vcmm.pagetable.AlreadyMappedException.class, () -> over.back(page), "the text is mapped there");
        assertTrue(!over.isBacked());
        assertEquals(textPa, ((WalkResult.Translation) kernelTable.translate(text)).pa(), "nothing changed");
        Reservation buf = kernel.reserve(64 * 1024, ReservationAttributes.RW, 64 * 1024);
        PhysMem pm = vcmm.physAlloc("ddr", 64 * 1024, ChunkPolicy.VCMM);
        buf.back(pm);
        assertEquals(pm.physicalAddress(5), ((WalkResult.Translation) kernelTable.translate(buf.address() + 5)).pa(),
            "the VCM maps into the adopted table");
        assertThrows(IllegalArgumentException.class, () -> vcmm.createCpuVcm(vcmm.cpu("cpu2", X86_64Format.INSTANCE),
            kernelTable, -(1L << 30), 512 * MIB, AssociationMode.USE_HIGH), "adopted already");
        assertThrows(IllegalArgumentException.class, () -> vcmm.createCpuVcm(vcmm.cpu("cpu3", Armv7ShortFormat.INSTANCE),
            kernelTable, 0x1000_0000L, MIB, AssociationMode.WHOLE), "another format");

        buf.unback();
        buf.unreserve();
        over.unreserve();
        a.deactivate();
        a.deassoc();
        kernel.free();
        assertTrue(!kernelTable.isClosed(), "the VCM never closes what it borrowed");
        assertEquals(textPa + 7, ((WalkResult.Translation) kernelTable.translate(text + 7)).pa());
        assertInstanceOf(WalkResult.PageFault.class, kernelTable.translate(buf.address()), "the VCM's mapping is gone");
        assertTrue(kernelTable.tableBytes() >= tablesBefore, "the owner's tables are all there (the VCM's may stay, empty)");
        kernelTable.close();
    }
}
