package dev.vcmm.testing;

import dev.vcmm.Device;
import dev.vcmm.DeviceKind;
import dev.vcmm.MemoryType;
import dev.vcmm.Vcmm;
import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.X86_64Format;
import org.junit.jupiter.api.Test;

import java.util.List;

import static dev.vcmm.testing.TestGraphs.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TestGraphsTest {

    @Test
    void shouldBuildTheMemoryTypesInCallOrderAtTheUsualBases() {
        try (Vcmm vcmm = TestGraphs.graph().ddr(64 * MIB).pageTables(16 * MIB).secure(8 * MIB).memory("sram", 0x3000_0000L, 2 * MIB).build()) {
            assertEquals(List.of("ddr", "pt", "secure", "sram"), vcmm.memoryTypes().stream().map(MemoryType::name).toList());
            MemoryType ddr = vcmm.memoryType("ddr");
            assertEquals(TestGraphs.DDR_BASE, ddr.base());
            assertEquals(64 * MIB, ddr.size());
            assertFalse(ddr.isSecure());
            assertSame(vcmm.memoryType("pt"), vcmm.pageTableMemory(), "pageTables() names the page-table memory");
            assertEquals(TestGraphs.PT_BASE, vcmm.pageTableMemory().base());
            assertTrue(vcmm.memoryType("secure").isSecure());
            assertEquals(TestGraphs.SECURE_BASE, vcmm.memoryType("secure").base());
            assertEquals(0x3000_0000L, vcmm.memoryType("sram").base());
        }
        try (Vcmm vcmm = TestGraphs.ddrAndTables(32 * MIB)) {
            assertEquals(List.of("ddr", "pt"), vcmm.memoryTypes().stream().map(MemoryType::name).toList());
            assertEquals(32 * MIB, vcmm.memoryType("ddr").size());
            assertEquals(16 * MIB, vcmm.pageTableMemory().size());
        }
    }

    @Test
    void shouldTakePageTablesFromTheFirstTypeWhenNoneIsNamed() {
        try (Vcmm vcmm = TestGraphs.graph().ddr(0x4000_0000L, 16 * MIB).build()) {
            assertSame(vcmm.memoryType("ddr"), vcmm.pageTableMemory());
            assertEquals(0x4000_0000L, vcmm.memoryType("ddr").base());
        }
    }

    @Test
    void shouldCreateTheDevicesOfEveryKindInOrder() {
        try (Vcmm vcmm = TestGraphs.graph().ddr(16 * MIB).pageTables(4 * MIB)
                .device("gpu", Arm64Lpae4kFormat.INSTANCE)
                .device("tee", DeviceKind.IOMMU, X86_64Format.INSTANCE, true)
                .oneToOneDevice("display")
                .cpu("cpu", X86_64Format.INSTANCE)
                .build()) {
            Device gpu = vcmm.device("gpu");
            assertEquals(DeviceKind.IOMMU, gpu.kind());
            assertSame(Arm64Lpae4kFormat.INSTANCE, gpu.format());
            assertFalse(gpu.isSecure());
            Device tee = vcmm.device("tee");
            assertTrue(tee.isSecure());
            assertSame(X86_64Format.INSTANCE, tee.format());
            Device display = vcmm.device("display");
            assertEquals(DeviceKind.ONE_TO_ONE, display.kind());
            assertNull(display.format());
            assertEquals(DeviceKind.CPU, vcmm.device("cpu").kind());
            assertEquals(4, vcmm.devices().size());
        }
    }

    @Test
    void shouldRefuseABadDeviceAndASecondBuild() {
        TestGraphs.Builder twice = TestGraphs.graph().ddr(16 * MIB).device("gpu", Arm64Lpae4kFormat.INSTANCE).device("gpu", Arm64Lpae4kFormat.INSTANCE);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, twice::build);
        assertTrue(e.getMessage().contains("device=gpu exists already"), e.getMessage());
        IllegalStateException again = assertThrows(IllegalStateException.class, twice::build);
        assertTrue(again.getMessage().contains("built its Vcmm already"), again.getMessage());
    }
}
