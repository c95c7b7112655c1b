package dev.vcmm.bench;

import dev.vcmm.ChunkPolicy;
import dev.vcmm.Device;
import dev.vcmm.MemoryType;
import dev.vcmm.PhysMem;
import dev.vcmm.Reservation;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.Vcmm;
import dev.vcmm.pagetable.Attributes;
import dev.vcmm.pagetable.PageTable;
import dev.vcmm.pagetable.PageTableFormats;
import dev.vcmm.spi.BlockAllocator;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.util.concurrent.TimeUnit;

/**
 * The graph at scale: the cost of backing one buffer while {@code live} other buffers are backed in the same VCM.
 * One VCM with one arm64-4k device; every buffer is 64 KiB. The measured buffer is 16 scattered 4 KiB chunks (no two
 * physically adjacent, checked in setup), so the mapper writes 16 separate 4 KiB leaves; the {@code live} buffers
 * are 64 KiB allocations of 4 KiB chunks, each reserved and backed, placed before the measured one in the VCM.
 *
 * <ul>
 *   <li>{@code backUnback64k}: {@code back} + {@code unback} of the measured buffer through the graph (reverse map,
 *       page table, IOTLB invalidation and the device's DMA fence).</li>
 *   <li>{@code reserveUnreserve64k}: {@code reserve} + {@code unreserve} of 64 KiB among the {@code live}
 *       reservations (the range found is the one above the measured buffer's).</li>
 *   <li>{@code mapUnmapPages64k}: the floor: the same 16 pages mapped and unmapped one by one in a warm
 *       arm64-4k {@link PageTable} of its own, no graph.</li>
 *   <li>{@code allocFree64k}: {@code physAlloc} of 64 KiB in 4 KiB chunks + {@code free}, in the shipped
 *       configuration: the memory type zeroes on handoff.</li>
 *   <li>{@code allocFreeRaw16}: the allocator floor of {@code allocFree64k}, like for like: 16
 *       {@link BlockAllocator#alloc(int)} of order 0, each page zeroed through the memory as physAlloc zeroes it,
 *       and their frees, straight on the memory type's allocator.</li>
 * </ul>
 * Setup prints the heap bytes per live buffer (after a GC, before and after making them) and the off-heap page-table
 * bytes per live buffer (from the VCMM's stats); the frame table of the reverse map is on the heap (8 bytes per
 * 4 KiB frame of memory in use, in 4 KiB leaves), so it is in the heap figure. Results are ns per
 * operation. The 1,000,000 case backs 64 GiB of sparse simulated memory and needs about 2 GiB of heap.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "-Xmx6g"})
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@State(Scope.Thread)
public class GraphScaleBenchmark {

    private static final long KIB = 1L << 10;
    private static final long GIB = 1L << 30;
    private static final long BUFFER = 64 * KIB;
    private static final long PAGE = 4096;
    private static final long DDR_BASE = 0x10_0000_0000L;
    private static final long PT_BASE = 0x1000_0000L;
    private static final long VCM_START = 0x100_0000_0000L;

    @Param({"0", "100000", "1000000"})
    public int live;

    private Vcmm vcmm;
    private MemoryType ddr;
    private Vcm vcm;
    private Reservation measured;
    private PhysMem scattered;
    private PageTable floor;
    private long[] pages;
    private final long[] raw = new long[16];
    private final Attributes attributes = ReservationAttributes.RW.toPageAttributes();

    @Setup
    public void setUp() {
        long ddrSize = Math.max(4 * GIB, (live + 1024L) * BUFFER * 2);
        vcmm = Vcmm.builder()
            .memoryType(MemoryType.builder("ddr").base(DDR_BASE).size(ddrSize))
            .memoryType(MemoryType.builder("pt").base(PT_BASE).size(GIB))
            .pageTableMemory("pt")
            .build();
        ddr = vcmm.memoryType("ddr");
        Device gpu = vcmm.device("gpu", PageTableFormats.byName("arm64-4k"));
        vcm = vcmm.createVcm(VCM_START, Math.max(GIB, (live + 1024L) * BUFFER * 2));
        vcmm.assoc(vcm, gpu).activate();

        long before = usedHeap();
        long tablesBefore = tableBytes();
        for (int i = 0; i < live; i++) {
            vcm.reserve(BUFFER, ReservationAttributes.RW, BUFFER).back(ddr.physAlloc(BUFFER, ChunkPolicy.PAGES_4K));
        }
        if (live > 0) {
            double heap = (double) (usedHeap() - before) / live;
            double tables = (double) (tableBytes() - tablesBefore) / live;
            // one figure a line, "[source] key: N what", as the results table's reader (JmhResults.note) expects
            System.out.printf("%n[GraphScaleBenchmark] live=%d: %.0f heap bytes per live buffer%n", live, heap);
            System.out.printf("[GraphScaleBenchmark] live=%d: %.1f heap bytes per chunk%n", live, heap / 16);
            System.out.printf("[GraphScaleBenchmark] live=%d: %.0f off-heap page-table bytes per live buffer%n", live, tables);
        }

        // 16 isolated free pages: take 32, give back every other one; physAlloc then takes the isolated ones
        BlockAllocator a = ddr.allocator();
        long[] held = new long[32];
        for (int i = 0; i < held.length; i++) {
            held[i] = a.alloc(0);
        }
        for (int i = 0; i < held.length; i += 2) {
            a.free(held[i], 0);
        }
        scattered = ddr.physAlloc(BUFFER, ChunkPolicy.PAGES_4K);
        pages = new long[16];
        for (int i = 0; i < 16; i++) {
            pages[i] = scattered.chunks().get(i).pa();
        }
        for (int i = 0; i < 16; i++) {
            for (int j = 0; j < 16; j++) {
                if (pages[i] + PAGE == pages[j]) {
                    throw new IllegalStateException("the measured buffer is not scattered: " + scattered.chunks());
                }
            }
        }
        measured = vcm.reserve(BUFFER, ReservationAttributes.RW, BUFFER);

        floor = PageTable.create(PageTableFormats.byName("arm64-4k"), vcmm.pageTableMemory().memory(),
            vcmm.pageTableMemory().allocator());
        floor.map(0x2000_0000L + BUFFER, DDR_BASE, PAGE, attributes); // keeps the last-level table alive
    }

    /** {@return the page-table bytes of every VCM (off-heap, in the page-table memory type)} */
    private long tableBytes() {
        return vcmm.stats().vcms().stream().flatMap(v -> v.tableBytesByFormat().values().stream())
            .mapToLong(Long::longValue).sum();
    }

    private static long usedHeap() {
        Runtime rt = Runtime.getRuntime();
        for (int i = 0; i < 3; i++) {
            System.gc();
        }
        return rt.totalMemory() - rt.freeMemory();
    }

    @TearDown
    public void tearDown() {
        floor.close();
        vcmm.close();
    }

    /** Back + unback of a 64 KiB buffer of 16 scattered 4 KiB chunks with {@code live} other buffers backed. */
    @Benchmark
    public void backUnback64k() {
        measured.back(scattered);
        measured.unback();
    }

    /**
     * Reserve + unreserve of 64 KiB (aligned to 64 KiB) with {@code live} other reservations in the VCM: the
     * address-space allocator's first fit and the VCM's reservation index, no page table.
     */
    @Benchmark
    public void reserveUnreserve64k() {
        vcm.reserve(BUFFER, ReservationAttributes.RW, BUFFER).unreserve();
    }

    /** The page-table floor: the same 16 pages mapped and unmapped one by one in a warm table. */
    @Benchmark
    public long mapUnmapPages64k() {
        long va = 0x2000_0000L;
        for (int i = 0; i < 16; i++) {
            floor.map(va + i * PAGE, pages[i], PAGE, attributes);
        }
        return floor.unmap(va, BUFFER);
    }

    /** physAlloc of 64 KiB in 4 KiB chunks + free. */
    @Benchmark
    public void allocFree64k() {
        ddr.physAlloc(BUFFER, ChunkPolicy.PAGES_4K).free();
    }

    /** The allocator floor of {@link #allocFree64k}: 16 order-0 allocs (zeroed, as handoff does) and frees. */
    @Benchmark
    public long allocFreeRaw16() {
        BlockAllocator a = ddr.allocator();
        long sum = 0;
        for (int i = 0; i < 16; i++) {
            raw[i] = a.alloc(0);
            ddr.memory().zero(raw[i], PAGE);
        }
        for (int i = 0; i < 16; i++) {
            sum += raw[i];
            a.free(raw[i], 0);
        }
        return sum;
    }
}
