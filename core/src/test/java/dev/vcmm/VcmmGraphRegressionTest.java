package dev.vcmm;

import dev.vcmm.pagetable.X86_64Format;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** Regressions found by the graph property test (property-tests: VcmmProperties). */
class VcmmGraphRegressionTest {

    static final long MIB = 1L << 20;

    Vcmm vcmm;

    @BeforeEach
    void open() {
        vcmm = TestGraphs.graph().pageTables(16 * MIB).ddr(64 * MIB).build();
    }

    @AfterEach
    void close() {
        vcmm.close();
    }

    @Test
    void shouldCreateNothingWhenCreateCpuVcmIsRefusedBecauseTheCpuIsBusy() {
        Device cpu = vcmm.cpu("cpu", X86_64Format.INSTANCE);
        Vcm first = vcmm.createCpuVcm(cpu, 0x1000_0000L, 64 * MIB);
        long tables = vcmm.pageTableMemory().stats().allocatedBytes();

        assertThrows(VcmmBusyException.class, () -> vcmm.createCpuVcm(cpu, 0x1000_0000L, 64 * MIB));

        assertEquals(List.of(first), vcmm.vcms(), "no half-made VCM left behind");
        assertEquals(1, cpu.associations().size(), "no inactive association left on the CPU");
        assertSame(first, cpu.activeLow().vcm());
        assertEquals(tables, vcmm.pageTableMemory().stats().allocatedBytes(), "no page table left behind");
    }
}
