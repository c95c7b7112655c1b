package dev.vcmm.property.graph;

import dev.vcmm.AssociationMode;
import dev.vcmm.Caching;
import dev.vcmm.ChunkPolicy;
import dev.vcmm.DeviceKind;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcmm;
import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.Armv7ShortFormat;
import dev.vcmm.pagetable.RiscvSv39Format;
import dev.vcmm.pagetable.RiscvSv48Format;
import dev.vcmm.pagetable.X86_64Format;
import dev.vcmm.testing.TestGraphs;

import java.util.List;

/**
 * The simulated SoC the graph properties run on, and the values their operations choose from: four memory types
 * (page tables, DDR, SRAM, secure), devices of every 4K-granule format (two sharing the arm64 table, two secure), two
 * one-to-one devices and a CPU; VCM ranges chosen to sit inside some formats' input spaces and outside others'.
 */
final class GraphShape {

    static final long PAGE = 4096;
    static final long MIB = TestGraphs.MIB;

    static final long PT_BASE = 0x0100_0000L;
    static final long DDR_BASE = 0x4000_0000L;
    static final long DDR_SIZE = 64 * MIB;
    static final long SRAM_BASE = 0x3000_0000L;
    static final long SRAM_SIZE = 2 * MIB;
    static final long SECURE_BASE = 0x3800_0000L;
    static final long SECURE_SIZE = 8 * MIB;
    static final String[] DATA_TYPES = {"ddr", "sram", "secure"};

    /** The devices in pick order (an op's {@code device % DEVICES.size()}); {@link #CPU} is the CPU. */
    static final List<String> DEVICES = List.of("a64", "a64b", "v7", "x86", "sv39", "sv48", "display", "dsp", "cpu");
    static final String CPU = "cpu";

    /**
     * Virtual VCM ranges: low for every format; low for the 39/48-bit formats but high (bit 31) for armv7;
     * the canonical upper half (x86-64, Sv39, Sv48 only); bit 47 set (arm64's high half, invalid elsewhere);
     * a tiny one that fills up.
     */
    static final long[][] REGIONS = {
        {0x1000_0000L, 64 * MIB},
        {0x9000_0000L, 32 * MIB},
        {0xFFFF_FFFF_C000_0000L, 32 * MIB},
        {0x0000_8000_0000_0000L, 16 * MIB},
        {0x2000_0000L, 2 * MIB},
    };

    static final ReservationAttributes[] ATTRIBUTES = {
        ReservationAttributes.RW,
        ReservationAttributes.RO,
        ReservationAttributes.RW.withUser(true),
        ReservationAttributes.RW.withExecute(true),
        ReservationAttributes.RW.with(Caching.WRITE_THROUGH),                  // refused by RISC-V tables
        ReservationAttributes.RW.withSecure(true),
        ReservationAttributes.RO.withSecure(true).with(Caching.NON_CACHED),
        new ReservationAttributes(false, false, true, false, true, false, Caching.WRITE_BACK_WRITE_ALLOCATE), // x only: RISC-V only
        ReservationAttributes.RW.with(Caching.DEVICE),
    };

    static final ChunkPolicy[] POLICIES = {
        ChunkPolicy.VCMM, ChunkPolicy.HUGE, ChunkPolicy.PAGES_4K, ChunkPolicy.of(64L << 10, 4L << 10), ChunkPolicy.of(1L << 20, 4L << 10),
    };

    static final long[] ALIGNS = {PAGE, 64L << 10, MIB, 2 * MIB};
    static final AssociationMode[] MODES = {AssociationMode.WHOLE, AssociationMode.WHOLE, AssociationMode.USE_LOW, AssociationMode.USE_HIGH};

    private GraphShape() {
    }

    /** @return a fresh VCMM of this shape, its devices created in {@link #DEVICES} order */
    static Vcmm build() {
        return TestGraphs.graph()
            .pageTables(PT_BASE, 16 * MIB)
            .ddr(DDR_BASE, DDR_SIZE)
            .memory("sram", SRAM_BASE, SRAM_SIZE)
            .secure(SECURE_BASE, SECURE_SIZE)
            .device("a64", Arm64Lpae4kFormat.INSTANCE)
            .device("a64b", Arm64Lpae4kFormat.INSTANCE)   // shares the arm64 table
            .device("v7", Armv7ShortFormat.INSTANCE)
            .device("x86", DeviceKind.IOMMU, X86_64Format.INSTANCE, true)
            .device("sv39", RiscvSv39Format.INSTANCE)
            .device("sv48", DeviceKind.IOMMU, RiscvSv48Format.INSTANCE, true)
            .oneToOneDevice("display")
            .device("dsp", DeviceKind.ONE_TO_ONE, null, true)
            .cpu(CPU, X86_64Format.INSTANCE)
            .build();
    }

    static boolean isSecurePa(long pa) {
        return pa >= SECURE_BASE && pa < SECURE_BASE + SECURE_SIZE;
    }
}
