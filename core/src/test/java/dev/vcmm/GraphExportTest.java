package dev.vcmm;

import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class GraphExportTest {

    @Test
    void shouldDrawEveryObjectAndEdge() {
        try (Vcmm vcmm = TestGraphs.graph().ddr(64L << 20).build()) {
            Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
            Device idle = vcmm.device("idle \"quoted\"", Arm64Lpae4kFormat.INSTANCE);
            Vcm vcm = vcmm.createVcm(0x1000_0000L, 16L << 20);
            vcmm.assoc(vcm, gpu).activate();
            vcmm.assoc(vcm, idle);
            PhysMem pm = vcmm.physAlloc("ddr", 1 << 20, ChunkPolicy.VCMM);
            vcm.reserve(1 << 20, ReservationAttributes.RW).back(pm);
            vcm.reserve(4096, ReservationAttributes.RO);
            String dot = GraphExport.toDot(vcmm);
            assertTrue(dot.startsWith("digraph vcmm {") && dot.strip().endsWith("}"), dot);
            assertTrue(dot.contains("\"dev:gpu\" -> \"vcm:" + vcm.name() + "\" [label=\"WHOLE, active\", penwidth=2]"), dot);
            assertTrue(dot.contains("[label=\"WHOLE\", style=dashed]"), "inactive association dashed: " + dot);
            assertTrue(dot.contains("idle \\\"quoted\\\""), "quotes escaped: " + dot);
            assertTrue(dot.contains("arm64-4k root 0x"), dot);
            assertTrue(dot.contains("backed by +0x0"), dot);
            assertEquals(2, dot.split("reserves", -1).length - 1, "two reservations");
            assertEquals(1, dot.split("label=\"from\"", -1).length - 1, "one physical allocation");
        }
    }

    @Test
    void shouldSnapshotAndPrintStatistics() {
        try (Vcmm vcmm = TestGraphs.graph().ddr(64L << 20).build()) {
            Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
            Vcm vcm = vcmm.createVcm(0x1000_0000L, 16L << 20);
            vcmm.assoc(vcm, gpu).activate();
            PhysMem pm = vcmm.physAlloc("ddr", 1 << 20, ChunkPolicy.VCMM);
            Reservation r = vcm.reserve(1 << 20, ReservationAttributes.RW).back(pm);
            vcm.reserve(4096, ReservationAttributes.RO);
            byte[] buf = new byte[4096];
            gpu.read(r.address(), buf, 0, buf.length);
            gpu.read(r.address(), buf, 0, buf.length);
            VcmmStats s = vcmm.stats();
            assertEquals(1, s.memoryTypes().size());
            assertTrue(s.memoryTypes().getFirst().allocator().allocatedBytes() >= (1 << 20));
            VcmmStats.VcmStats v = s.vcms().getFirst();
            assertEquals(2, v.reservations());
            assertEquals((1 << 20) + 4096, v.reservedBytes());
            assertEquals(1 << 20, v.backedBytes());
            assertEquals(1, v.activeAssociations());
            assertTrue(v.tableBytesByFormat().get("arm64-4k") >= 4096);
            DeviceStats d = s.devices().getFirst();
            assertEquals(8192, d.bytesRead());
            assertEquals(1, d.iotlb().misses());
            assertEquals(1, d.iotlb().hits());
            String text = s.toString();
            assertTrue(text.contains("memory type") && text.contains("gpu") && text.contains("arm64-4k="), text);
        }
    }
}
