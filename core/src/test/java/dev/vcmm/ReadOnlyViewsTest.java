package dev.vcmm;

import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.PageTable;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.pagetable.X86_64Format;
import org.junit.jupiter.api.Test;

import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.Arrays;
import java.util.Set;
import java.util.TreeSet;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** What the graph hands out about its page tables and IOTLBs can be read, never changed. */
class ReadOnlyViewsTest {

    private static final long DDR = 0x8000_0000L;
    private static final long VA = 0x1000_0000L;

    @Test
    void shouldOfferNoMutationOnAPageTableView() {
        Set<String> methods = publicMethods(PageTableView.class);
        assertEquals(new TreeSet<>(Set.of("format", "root", "walk", "translate", "tableCount", "tableBytes", "heldBytes",
            "retiredBytes", "isClosed")), methods, "only reads: no map, unmap, close, memory or forEachTable");
        for (Method m : PageTableView.class.getMethods()) {
            assertFalse(PageTable.class.isAssignableFrom(m.getReturnType()), m + " hands out the live table");
            assertFalse(dev.vcmm.spi.PhysicalMemory.class.isAssignableFrom(m.getReturnType()), m + " hands out table memory");
        }
        assertTrue(Modifier.isFinal(PageTableView.class.getModifiers()), "no subclass can add a door");
        assertEquals(0, Arrays.stream(PageTableView.class.getConstructors()).count(), "only the graph makes views");
    }

    @Test
    void shouldHandOutNoLiveIotlb() {
        assertFalse(Modifier.isPublic(Iotlb.class.getModifiers()), "the IOTLB is the device's own");
        for (Method m : Device.class.getMethods()) {
            assertFalse(Iotlb.class.isAssignableFrom(m.getReturnType()), m + " hands out the live IOTLB");
        }
        assertTrue(IotlbStats.class.isRecord(), "a snapshot");
    }

    @Test
    void shouldWalkTheVcmsTableThroughTheViewAndFaultOnceTheTableIsDropped() {
        try (Vcmm vcmm = Vcmm.builder().memoryType(MemoryType.builder("ddr").base(DDR).size(64L << 20)).build()) {
            Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
            Vcm vcm = vcmm.createVcm(VA, 16L << 20);
            assertNull(vcm.table(Arm64Lpae4kFormat.INSTANCE), "no device of the format: no table");
            Association a = vcmm.assoc(vcm, gpu);
            a.activate();
            PhysMem pm = vcmm.physAlloc("ddr", 1 << 20, ChunkPolicy.VCMM);
            Reservation r = vcm.reserve(1 << 20, ReservationAttributes.RW).back(pm);

            PageTableView view = vcm.table(Arm64Lpae4kFormat.INSTANCE);
            assertEquals(Arm64Lpae4kFormat.INSTANCE, view.format());
            assertEquals(a.root(), view.root());
            WalkResult.Translation t = assertInstanceOf(WalkResult.Translation.class, view.translate(r.address() + 42));
            assertEquals(pm.physicalAddress(42), t.pa());
            assertEquals(t.pa(), ((WalkResult.Translation) gpu.translate(r.address() + 42)).pa(), "the device walks the same table");
            assertInstanceOf(WalkResult.Translation.class, view.walk(r.address(), Access.WRITE, false));
            assertTrue(view.tableBytes() >= 4096 && view.heldBytes() >= view.tableBytes() && view.tableCount() >= 1);
            assertNull(vcm.table(X86_64Format.INSTANCE), "no device of that format");

            r.unback();
            assertInstanceOf(WalkResult.PageFault.class, view.translate(r.address()), "the view sees the unback");
            a.deactivate();
            a.deassoc();
            assertTrue(view.isClosed(), "the VCM dropped the table");
            assertInstanceOf(WalkResult.PageFault.class, view.translate(r.address()), "a dropped table walks nothing");
        }
    }

    @Test
    void shouldSnapshotAndFlushTheIotlbWithoutHandingItOut() {
        try (Vcmm vcmm = Vcmm.builder().memoryType(MemoryType.builder("ddr").base(DDR).size(64L << 20)).build()) {
            Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
            Device dma = vcmm.oneToOneDevice("dma");
            Vcm vcm = vcmm.createVcm(VA, 16L << 20);
            vcmm.assoc(vcm, gpu).activate();
            Reservation r = vcm.reserve(1 << 20, ReservationAttributes.RW).back(vcmm.physAlloc("ddr", 1 << 20, ChunkPolicy.PAGES_4K));
            byte[] b = new byte[4096];
            gpu.read(r.address(), b, 0, b.length);
            IotlbStats before = gpu.iotlb();
            assertEquals(1, before.valid());
            assertEquals(1, before.misses());
            gpu.flushIotlb();
            IotlbStats after = gpu.iotlb();
            assertEquals(0, after.valid(), "flushed");
            assertEquals(before.flushes() + 1, after.flushes());
            assertEquals(1, before.valid(), "a snapshot does not follow the IOTLB");
            gpu.read(r.address(), b, 0, b.length);
            assertEquals(2, gpu.iotlb().misses(), "the next burst walks again");
            assertEquals(IotlbStats.NONE, dma.iotlb(), "a one-to-one device has no IOTLB");
            dma.flushIotlb(); // a no-op, not an error
        }
    }

    private static Set<String> publicMethods(Class<?> c) {
        Set<String> out = new TreeSet<>();
        for (Method m : c.getDeclaredMethods()) {
            if (Modifier.isPublic(m.getModifiers()) && !Set.of("toString", "equals", "hashCode").contains(m.getName())) {
                out.add(m.getName());
            }
        }
        return out;
    }
}
