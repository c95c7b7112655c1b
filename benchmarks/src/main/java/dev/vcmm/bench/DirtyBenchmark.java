package dev.vcmm.bench;

import dev.vcmm.ChunkPolicy;
import dev.vcmm.Device;
import dev.vcmm.DeviceKind;
import dev.vcmm.DirtyBitmap;
import dev.vcmm.DirtyTracking;
import dev.vcmm.MemoryType;
import dev.vcmm.PhysAllocOptions;
import dev.vcmm.PhysMem;
import dev.vcmm.Reservation;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.Vcmm;
import dev.vcmm.ffm.SegmentPhysicalMemory;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.PageTableFormats;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.spi.PhysicalMemory;
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
import java.nio.ByteOrder;
import java.util.concurrent.TimeUnit;

/**
 * Dirty tracking of 1 GiB of 4 KiB mappings with 1% of the pages dirty: {@link DirtyTracking#readAndClear} against
 * a plain scan of as many page-table entries.
 *
 * <p>Setup: a {@link Vcmm} on the ffm backend, one IOMMU device of {@code @Param format}, 1 GiB of memory (one
 * contiguous chunk) reserved at a device address 4 KiB past a 64 KiB boundary, so every leaf is a single 4 KiB
 * page: 262,144 last-level entries in 512 tables (setup checks the first and last pages' leaf size). Tracking is
 * enabled. Before every invocation (not timed) the device writes 8 bytes into every 100th page (2,622 pages), each a
 * walk that makes the entry dirty.
 *
 * <p>Methods (ms per call):
 * <ul>
 *   <li>{@code readAndClear}: {@code readAndClear} of the whole 1 GiB: the walk of the tables, 2,622 compare-and-sets
 *       of dirty entries, the bitmap, and the IOTLB invalidation and burst sync the clear needs. Checks in tear-down
 *       that the last call reported 2,622 pages.</li>
 *   <li>{@code bitmapScanLimit}: the baseline: the 262,144 entries read straight from the page-table memory's
 *       {@link MemorySegment} (the 512 last-level tables, found once in setup), one dirty-bit test and one bitmap bit
 *       set per entry; nothing cleaned, nothing invalidated. The physical limit of a scan; the issue asks for
 *       {@code readAndClear} at 0.25x its speed or better.</li>
 * </ul>
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@State(Scope.Thread)
public class DirtyBenchmark {

    private static final long DDR = 0x1_0000_0000L;
    private static final long PT = 0x1000_0000L;
    private static final long MIB = 1L << 20;
    private static final long GIB = 1L << 30;
    private static final long PAGE = 4096;
    private static final long VA = 0x40_0000_0000L;
    private static final int PAGES = (int) (GIB / PAGE);
    private static final int STRIDE = 100;
    private static final ValueLayout.OfLong PTE = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    @Param({"x86-64", "arm64-4k"})
    public String format;

    private Vcmm vcmm;
    private Device device;
    private DirtyTracking tracking;
    private long address;
    private final byte[] word = new byte[8];
    private int lastDirtyPages;
    /** Baseline: the page-table memory and the offsets in it of the 512 last-level tables, and the dirty-bit mask. */
    private MemorySegment tables;
    private long[] lastLevelTables;
    private long dirtyMask;
    private long dirtyValue;
    private long[] bitmap;

    @Setup(Level.Trial)
    public void setUp() {
        vcmm = Vcmm.builder()
            .memoryType(MemoryType.builder("ddr").base(DDR).size(2 * GIB))
            .memoryType(MemoryType.builder("pt").base(PT).size(16 * MIB))
            .pageTableMemory("pt")
            .build();
        PageTableFormat f = PageTableFormats.byName(format);
        device = vcmm.device("dma", DeviceKind.IOMMU, f, false);
        Vcm vcm = vcmm.createVcm(VA, 2 * GIB);
        vcmm.assoc(vcm, device).activate();
        PhysMem pm = vcmm.physAlloc(vcmm.memoryType("ddr"), GIB, ChunkPolicy.HUGE, PhysAllocOptions.CONTIGUOUS);
        Reservation r = vcm.reserveAt(VA + PAGE, GIB, ReservationAttributes.RW).back(pm);
        address = r.address();
        for (long va : new long[] {address, address + GIB - PAGE}) {
            if (!(device.translate(va) instanceof WalkResult.Translation t) || t.leafSize() != PAGE) {
                throw new IllegalStateException(format + ": 0x" + Long.toHexString(va) + " is not a 4 KiB leaf: " + device.translate(va));
            }
        }
        tracking = vcm.dirtyTracking();
        tracking.enable();

        if (!(vcmm.memoryType("pt").memory() instanceof SegmentPhysicalMemory spm)) {
            throw new IllegalStateException("expected the ffm backend");
        }
        tables = spm.segment();
        PhysicalMemory pt = spm;
        long root = vcm.table(f).root();
        lastLevelTables = new long[PAGES / 512];
        for (int i = 0; i < lastLevelTables.length; i++) {
            long va = address + (long) i * 512 * PAGE;
            long table = root;
            for (int level = 0; level < f.levels() - 1; level++) {
                long index = (va >>> f.levelShift(level)) & ((1L << f.levelBits(level)) - 1);
                table = f.tableAddress(level, pt.laLong(table + index * 8));
            }
            lastLevelTables[i] = table - PT;
        }
        // the dirty test of the baseline: x86 R/W and D set; arm64 AP[2] clear
        dirtyMask = format.startsWith("x86") ? 0x42 : 0x80;
        dirtyValue = format.startsWith("x86") ? 0x42 : 0;
        bitmap = new long[PAGES / 64];
    }

    @Setup(Level.Invocation)
    public void dirtyOnePercent() {
        for (int p = 0; p < PAGES; p += STRIDE) {
            device.write(address + (long) p * PAGE, word, 0, 8);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        int expected = (PAGES + STRIDE - 1) / STRIDE;
        vcmm.close();
        if (lastDirtyPages != 0 && lastDirtyPages != expected) {
            throw new IllegalStateException("readAndClear reported " + lastDirtyPages + " pages, expected " + expected);
        }
    }

    @Benchmark
    public DirtyBitmap readAndClear() {
        DirtyBitmap b = tracking.readAndClear(address, GIB);
        lastDirtyPages = b.dirtyPages();
        return b;
    }

    @Benchmark
    public long[] bitmapScanLimit() {
        final MemorySegment s = tables;
        final long[] bits = bitmap;
        final long mask = dirtyMask;
        final long value = dirtyValue;
        int page = 0;
        for (long table : lastLevelTables) {
            for (int i = 0; i < 512; i++, page++) {
                long e = s.get(PTE, table + 8L * i);
                if (e != 0 && (e & mask) == value) {
                    bits[page >>> 6] |= 1L << page;
                }
            }
        }
        return bits;
    }
}
