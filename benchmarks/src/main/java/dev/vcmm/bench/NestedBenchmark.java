package dev.vcmm.bench;

import dev.vcmm.ChunkPolicy;
import dev.vcmm.Device;
import dev.vcmm.DeviceKind;
import dev.vcmm.DeviceOptions;
import dev.vcmm.IotlbStats;
import dev.vcmm.MemoryType;
import dev.vcmm.PhysMem;
import dev.vcmm.Reservation;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.Vcmm;
import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.Arm64Stage2Format;
import dev.vcmm.pagetable.WalkResult;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.util.Arrays;
import java.util.concurrent.TimeUnit;

/**
 * Nested (two-stage) DMA against single-stage DMA: a device reads 1 MiB of 4 KiB pages through its IOTLB, warm and
 * cold, with {@code @Param stages} choosing the translation of the same device and the same memory.
 *
 * <p>Setup: a {@link Vcmm} on the ffm backend, one {@code arm64-4k} IOMMU device with an IOTLB of 512 entries, 8-way
 * (as {@link DmaBenchmark}: the 256 entries of the read all fit), 1 MiB of {@link ChunkPolicy#PAGES_4K} memory.
 * <ul>
 *   <li>{@code single}: a VIRTUAL VCM maps the 1 MiB at a device address 4 KiB off a 64 KiB boundary from the
 *       memory: 256 separate 4 KiB leaves in a 4-level table (checked).</li>
 *   <li>{@code nested}: a host VCM (IPA space, {@code arm64-s2-4k-ipa48}: 4 levels) maps the 1 MiB at an IPA 4 KiB off
 *       a 64 KiB boundary (4 KiB stage-2 pages) and a 1 MiB table pool; a guest VCM maps the 1 MiB of guest addresses
 *       to it, again in 4 KiB leaves: a cold walk makes 24 memory reads (4 x (4 + 1) + 4) where the single-stage one
 *       makes 4. The combined translation is one 4 KiB IOTLB entry per page (checked).</li>
 * </ul>
 *
 * <p>Methods (ns per 1 MiB read; the same bytes checked equal in setup):
 * <ul>
 *   <li>{@code dmaWarm}: every page hits the IOTLB, nothing is walked. The issue asks nested within 1.2x of single.</li>
 *   <li>{@code dmaCold}: {@code flushIotlb()} then the read: 256 walks (nested: 256 nested walks), reported.</li>
 * </ul>
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@State(Scope.Thread)
public class NestedBenchmark {

    private static final long DDR = 0x8000_0000L;
    private static final long PT = 0x1000_0000L;
    private static final long MIB = 1L << 20;
    private static final long PAGE = 4096;
    private static final int LENGTH = (int) MIB;
    private static final long GUEST = 0x10_0000_0000L;
    private static final DeviceOptions IOTLB = DeviceOptions.iotlb(512, 8);

    @Param({"single", "nested"})
    public String stages;

    private Vcmm vcmm;
    private Device device;
    private long address;
    private byte[] dst;

    @Setup(Level.Trial)
    public void setUp() {
        vcmm = Vcmm.builder()
            .memoryType(MemoryType.builder("ddr").base(DDR).size(64 * MIB))
            .memoryType(MemoryType.builder("pt").base(PT).size(16 * MIB))
            .pageTableMemory("pt")
            .build();
        device = vcmm.device("dma", DeviceKind.IOMMU, Arm64Lpae4kFormat.INSTANCE, false, IOTLB);
        PhysMem pm = vcmm.physAlloc("ddr", MIB, ChunkPolicy.PAGES_4K);
        long offset = ((pm.physicalAddress(0) & 0xFFFF) + PAGE) & 0xFFFF; // 4 KiB off the memory's 64 KiB phase
        Reservation r;
        switch (stages) {
            case "single" -> {
                Vcm vcm = vcmm.createVcm(GUEST, 256 * MIB);
                vcmm.assoc(vcm, device).activate();
                r = vcm.reserveAt(GUEST + 2 * MIB + offset, MIB, ReservationAttributes.RW).back(pm);
            }
            case "nested" -> {
                ReservationAttributes rwUser = ReservationAttributes.RW.withUser(true);
                Vcm host = vcmm.createVcm(0, 1L << 36);
                host.reserveAt(0x4000_0000L + offset, MIB, rwUser).back(pm);
                Reservation pool = host.reserveAt(0x1000_1000L, MIB, rwUser).back(vcmm.physAlloc("ddr", MIB, ChunkPolicy.PAGES_4K));
                Vcm guest = vcmm.createGuestVcm(host, Arm64Stage2Format.withIpaBits(48), pool, GUEST, 256 * MIB);
                vcmm.assoc(guest, device).activate();
                // guest address - IPA == 4 KiB (mod 64 KiB): stage 1 maps single 4 KiB pages too
                r = guest.reserveAt(GUEST + 2 * MIB + offset + PAGE, MIB, ReservationAttributes.RW).back(pm);
            }
            default -> throw new IllegalArgumentException("stages=" + stages);
        }
        address = r.address();
        for (long va = address; va < address + MIB; va += PAGE) {
            if (!(device.translate(va) instanceof WalkResult.Translation t) || t.leafSize() != PAGE
                || t.pa() != pm.physicalAddress(va - address)) {
                throw new IllegalStateException(stages + ": 0x" + Long.toHexString(va) + " translates to " + device.translate(va));
            }
        }
        byte[] pattern = new byte[LENGTH];
        for (int i = 0; i < LENGTH; i++) {
            pattern[i] = (byte) (i * 31 + (i >>> 12));
        }
        device.write(address, pattern, 0, LENGTH);
        dst = new byte[LENGTH];
        device.read(address, dst, 0, LENGTH);
        if (!Arrays.equals(pattern, dst)) {
            throw new IllegalStateException("the device read other bytes than it wrote");
        }
        IotlbStats s = device.iotlb();
        if (s.valid() != LENGTH / PAGE) {
            throw new IllegalStateException(stages + ": " + s.valid() + " valid IOTLB entries, expected " + LENGTH / PAGE);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        vcmm.close();
    }

    @Benchmark
    public byte[] dmaWarm() {
        device.read(address, dst, 0, LENGTH);
        return dst;
    }

    @Benchmark
    public byte[] dmaCold() {
        device.flushIotlb();
        device.read(address, dst, 0, LENGTH);
        return dst;
    }
}
