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
import dev.vcmm.ffm.SegmentPhysicalMemory;
import dev.vcmm.pagetable.Arm64Lpae4kFormat;
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

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;

/**
 * A device reads 1 MiB of physical memory through its IOTLB model and the hardware walker
 * ({@link Device#read(long, byte[], int, int)}), against a plain {@link MemorySegment#copy} of the same bytes.
 *
 * <p>Setup: a {@link Vcmm} on the ffm backend (memfd-backed {@link SegmentPhysicalMemory}), one {@code arm64-4k}
 * IOMMU device with an IOTLB of 512 entries, 8-way (64 sets): big enough to hold all 256 entries of the 4k case
 * (consecutive 4 KiB pages spread 4 per set), so a warm read never misses. The 1 MiB is read into the same
 * {@code byte[]} in every method; its bytes are written once in setup, so every page is resident.
 *
 * <p>{@code @Param leaf}:
 * <ul>
 *   <li>{@code 4k}: 1 MiB allocated with {@link ChunkPolicy#PAGES_4K} (256 chunks of 4 KiB) and reserved at a device
 *       address whose offset from the first chunk's physical address is 4 KiB modulo 64 KiB, so neither a 64 KiB
 *       contiguous run nor a 2 MiB block fits: the mapper writes 256 separate 4 KiB leaves (setup walks every
 *       page and fails unless each translates through a 4 KiB leaf), and a read takes 256 IOTLB lookups.</li>
 *   <li>{@code 2m}: 2 MiB allocated with {@link ChunkPolicy#HUGE} (one 2 MiB chunk) and reserved 2 MiB-aligned: one
 *       2 MiB block leaf (checked in setup), of which the read covers the first half with one lookup.</li>
 * </ul>
 *
 * <p>Methods (each reads the same 1 MiB; results are ns per 1 MiB read):
 * <ul>
 *   <li>{@code dmaWarm}: {@code device.read} with a warm IOTLB (every leaf hits; nothing is walked).</li>
 *   <li>{@code dmaCold}: {@code device.flushIotlb()} then {@code device.read}: every leaf misses and is walked
 *       (4 levels for 4k, 3 for 2m) and inserted. Includes the flush (a scan of 512 slots).</li>
 *   <li>{@code segmentCopyPerLeaf}: {@link MemorySegment#copy} from the physical memory's segment, one copy per
 *       leaf over the same physical chunks (256 x 4 KiB, or 1 x 1 MiB): the copy the DMA loop does, without the
 *       translation, checks and counters.</li>
 *   <li>{@code segmentCopyLimit}: one {@link MemorySegment#copy} of 1 MiB from the physical memory's segment at the
 *       first chunk's offset (the same bytes when the chunks are contiguous, which setup reports): the limit.</li>
 * </ul>
 * At the end of each trial the device's IOTLB counters are printed (hits and misses per read).
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@State(Scope.Thread)
public class DmaBenchmark {

    private static final long DDR = 0x8000_0000L;
    private static final long PT = 0x1000_0000L;
    private static final long MIB = 1L << 20;
    private static final long PAGE = 4096;
    private static final long VA = 0x4000_0000L;
    private static final int LENGTH = (int) MIB;
    /** 512 entries, 8-way: 64 sets; 256 consecutive 4 KiB pages take 4 ways of each set. */
    private static final DeviceOptions IOTLB = DeviceOptions.iotlb(512, 8);

    @Param({"4k", "2m"})
    public String leaf;

    private Vcmm vcmm;
    private Device device;
    private long address;
    private byte[] dst;
    private MemorySegment physical;
    /** Offset in {@link #physical} of the first byte the read reaches. */
    private long limitOffset;
    /** Offsets in {@link #physical} and lengths of the leaves the read goes through, in order. */
    private long[] leafOffsets;
    private int[] leafLengths;
    private long readsAtStart;
    private IotlbStats statsAtStart;

    @Setup(Level.Trial)
    public void setUp() {
        vcmm = Vcmm.builder()
            .memoryType(MemoryType.builder("ddr").base(DDR).size(64 * MIB))
            .memoryType(MemoryType.builder("pt").base(PT).size(16 * MIB))
            .pageTableMemory("pt")
            .build();
        MemoryType ddr = vcmm.memoryType("ddr");
        if (!(ddr.memory() instanceof SegmentPhysicalMemory spm)) {
            throw new IllegalStateException("expected the ffm backend, got " + ddr);
        }
        physical = spm.segment();
        device = vcmm.device("dma", DeviceKind.IOMMU, Arm64Lpae4kFormat.INSTANCE, false, IOTLB);
        Vcm vcm = vcmm.createVcm(VA, 256 * MIB);
        vcmm.assoc(vcm, device).activate();

        long leafSize;
        Reservation r;
        PhysMem pm;
        switch (leaf) {
            case "4k" -> {
                leafSize = PAGE;
                pm = vcmm.physAlloc("ddr", MIB, ChunkPolicy.PAGES_4K);
                // device address - physical address == 4 KiB (mod 64 KiB): no 64 KiB run and no 2 MiB block fits
                long pa0 = pm.physicalAddress(0);
                long at = VA + 2 * MIB + (((pa0 & 0xFFFF) + PAGE) & 0xFFFF);
                r = vcm.reserveAt(at, MIB, ReservationAttributes.RW).back(pm);
            }
            case "2m" -> {
                leafSize = 2 * MIB;
                pm = vcmm.physAlloc("ddr", 2 * MIB, ChunkPolicy.HUGE);
                r = vcm.reserve(2 * MIB, ReservationAttributes.RW, 2 * MIB).back(pm);
            }
            default -> throw new IllegalArgumentException("leaf=" + leaf);
        }
        address = r.address();

        // check the leaves the read goes through, and note their physical ranges
        int leaves = (int) ((LENGTH + leafSize - 1) / leafSize);
        leafOffsets = new long[leaves];
        leafLengths = new int[leaves];
        for (int i = 0; i < leaves; i++) {
            long va = address + i * leafSize;
            if (!(device.translate(va) instanceof WalkResult.Translation t) || t.leafSize() != leafSize) {
                throw new IllegalStateException("leaf=" + leaf + ": 0x" + Long.toHexString(va) + " translates to "
                    + device.translate(va) + ", not through a " + leafSize + "-byte leaf");
            }
            leafOffsets[i] = t.pa() - DDR;
            leafLengths[i] = (int) Math.min(leafSize, LENGTH - i * leafSize);
        }
        limitOffset = leafOffsets[0];

        // make every page resident with known bytes, then warm the IOTLB
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
        if (s.valid() != leaves) {
            throw new IllegalStateException("leaf=" + leaf + ": " + s.valid() + " valid IOTLB entries, expected " + leaves);
        }
        System.out.printf("%n[DmaBenchmark leaf=%s] %s; %s; device address 0x%x; %d leaves of %d bytes; %s%n", leaf, pm,
            pm.isContiguous() ? "contiguous: segmentCopyLimit reads the same bytes"
                : "scattered: segmentCopyLimit reads 1 MiB from the first chunk", address, leaves, leafSize, s);
        readsAtStart = device.stats().bytesRead() / LENGTH;
        statsAtStart = s;
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        IotlbStats s = device.iotlb();
        long reads = device.stats().bytesRead() / LENGTH - readsAtStart;
        if (reads > 0) {
            System.out.printf("%n[DmaBenchmark leaf=%s] %d DMA reads: %.1f IOTLB hits and %.1f misses per read; %s%n", leaf,
                reads, (double) (s.hits() - statsAtStart.hits()) / reads, (double) (s.misses() - statsAtStart.misses()) / reads, s);
        }
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

    @Benchmark
    public byte[] segmentCopyPerLeaf() {
        MemorySegment s = physical;
        byte[] d = dst;
        long[] offsets = leafOffsets;
        int[] lengths = leafLengths;
        int at = 0;
        for (int i = 0; i < offsets.length; i++) {
            MemorySegment.copy(s, ValueLayout.JAVA_BYTE, offsets[i], d, at, lengths[i]);
            at += lengths[i];
        }
        return d;
    }

    @Benchmark
    public byte[] segmentCopyLimit() {
        MemorySegment.copy(physical, ValueLayout.JAVA_BYTE, limitOffset, dst, 0, LENGTH);
        return dst;
    }
}
