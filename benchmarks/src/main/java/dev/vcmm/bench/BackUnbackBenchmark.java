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
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.PageTableFormats;
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

import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The VCMM graph's whole buffer life cycle (reserve, physAlloc, back, unback, unreserve, physFree) in a VCM
 * associated with 1, 3 or 100 devices, against the page-table work it cannot avoid. Device {@code i} walks
 * tables of {@code FORMATS[i % 3]} (arm64-4k, armv7-short, x86-64), so 1 device means one format and both
 * 3 and 100 devices mean three: a VCM keeps one table per distinct format, so the cost should follow the
 * formats, not the devices.
 *
 * <p>The buffer is allocated with {@link ChunkPolicy#VCMM} (16M+1M+64K+4K), so a 1m buffer is one 1 MiB chunk
 * and a 16m buffer one 16 MiB chunk, and reserved aligned to 1 MiB; first fit puts it at the VCM's start
 * (16 MiB aligned), so each format uses its largest leaf: 1m is 16 contiguous 64 KiB runs (256 PTEs) in
 * arm64-4k, one section in armv7-short and 256 PTEs in x86-64; 16m is eight 2 MiB blocks in arm64-4k and
 * x86-64 and one supersection (16 replicated entries) in armv7-short. A 4 KiB anchor mapped just after the
 * buffer keeps the intermediate tables alive across unmaps in every table, as in {@link MapUnmapBenchmark},
 * so steady state allocates no tables.
 *
 * <ul>
 *   <li>{@code backUnback}: the graph: reserve + physAlloc + back + unback + unreserve + physFree.</li>
 *   <li>{@code mapUnmapPerFormat}: the page-table limit of {@code backUnback}: map + unmap of the same chunks
 *       directly in one warm table per distinct format of the devices (1 or 3 tables), no graph, no
 *       reservation, no allocation.</li>
 *   <li>{@code mapUnmapOneFormat}: map + unmap of the same chunks in one warm arm64-4k table; independent of
 *       {@code devices} (the three rows per size are repeats of one measurement).</li>
 * </ul>
 * Results are ns per life cycle.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@State(Scope.Thread)
public class BackUnbackBenchmark {

    private static final long MIB = 1L << 20;
    private static final long PAGE = 4096;
    private static final long DDR_BASE = 0x8000_0000L;
    private static final long DDR_SIZE = 256 * MIB;
    private static final long PT_BASE = 0x4000_0000L;
    private static final long PT_SIZE = 64 * MIB;
    private static final long VCM_START = 0x1000_0000L;
    private static final long VCM_LENGTH = 256 * MIB;
    private static final List<PageTableFormat> FORMATS = List.of(PageTableFormats.byName("arm64-4k"),
        PageTableFormats.byName("armv7-short"), PageTableFormats.byName("x86-64"));

    @Param({"1m", "16m"})
    public String size;

    @Param({"1", "3", "100"})
    public int devices;

    private Vcmm vcmm;
    private MemoryType ddr;
    private Vcm vcm;
    private long bytes;
    /** The chunks of a buffer allocated once, for the direct baselines: {pa, size} pairs. */
    private long[] chunks;
    private PageTable[] direct;
    private PageTable one;

    @Setup
    public void setUp() {
        bytes = switch (size) {
            case "1m" -> MIB;
            case "16m" -> 16 * MIB;
            default -> throw new IllegalArgumentException("size=" + size);
        };
        vcmm = Vcmm.builder()
            .memoryType(MemoryType.builder("ddr").base(DDR_BASE).size(DDR_SIZE))
            .memoryType(MemoryType.builder("pt").base(PT_BASE).size(PT_SIZE))
            .pageTableMemory("pt")
            .build();
        ddr = vcmm.memoryType("ddr");
        vcm = vcmm.createVcm(VCM_START, VCM_LENGTH);
        for (int i = 0; i < devices; i++) {
            Device d = vcmm.device("dev" + i, FORMATS.get(i % FORMATS.size()));
            vcmm.assoc(vcm, d).activate();
        }
        int formats = Math.min(devices, FORMATS.size());
        if (vcm.formats().size() != formats) {
            throw new IllegalStateException("expected " + formats + " page tables, the VCM has " + vcm.formats());
        }
        // the anchor: 4 KiB backed just after the buffer keeps the tables above the buffer's leaves alive
        Reservation anchor = vcm.reserveAt(VCM_START + bytes, PAGE, ReservationAttributes.RW);
        anchor.back(ddr.physAlloc(PAGE, ChunkPolicy.VCMM));

        PhysMem pm = ddr.physAlloc(bytes, ChunkPolicy.VCMM);
        chunks = new long[pm.chunkCount() * 2];
        int k = 0;
        for (PhysMem.Chunk c : pm.chunks()) {
            chunks[k++] = c.pa();
            chunks[k++] = c.size();
        }
        if (pm.chunkCount() != 1) {
            throw new IllegalStateException("expected one chunk for " + size + ", got " + pm.chunks());
        }
        direct = new PageTable[formats];
        for (int i = 0; i < formats; i++) {
            direct[i] = newAnchoredTable(FORMATS.get(i));
        }
        one = newAnchoredTable(FORMATS.get(0));
        // check the graph's placement once: first fit at the VCM's start
        Reservation r = vcm.reserve(bytes, ReservationAttributes.RW, MIB);
        if (r.address() != VCM_START) {
            throw new IllegalStateException("expected the reservation at 0x" + Long.toHexString(VCM_START) + ", got " + r);
        }
        r.unreserve();
        pm.free(); // its chunk comes straight back to backUnback's first physAlloc
    }

    private PageTable newAnchoredTable(PageTableFormat f) {
        PageTable t = PageTable.create(f, vcmm.pageTableMemory().memory(), vcmm.pageTableMemory().allocator());
        t.map(VCM_START + bytes, DDR_BASE, PAGE, Attributes.RW);
        return t;
    }

    @TearDown
    public void tearDown() {
        for (PageTable t : direct) {
            t.close();
        }
        one.close();
        vcmm.close();
    }

    @Benchmark
    public long backUnback() {
        Reservation r = vcm.reserve(bytes, ReservationAttributes.RW, MIB);
        PhysMem pm = ddr.physAlloc(bytes, ChunkPolicy.VCMM);
        r.back(pm);
        r.unback();
        long address = r.address();
        r.unreserve();
        pm.free();
        return address;
    }

    @Benchmark
    public long mapUnmapPerFormat() {
        long n = 0;
        for (PageTable t : direct) {
            n += mapUnmap(t);
        }
        return n;
    }

    @Benchmark
    public long mapUnmapOneFormat() {
        return mapUnmap(one);
    }

    private long mapUnmap(PageTable t) {
        long[] c = chunks;
        long va = VCM_START;
        for (int i = 0; i < c.length; i += 2) {
            t.map(va, c[i], c[i + 1], Attributes.RW);
            va += c[i + 1];
        }
        return t.unmap(VCM_START, bytes);
    }
}
