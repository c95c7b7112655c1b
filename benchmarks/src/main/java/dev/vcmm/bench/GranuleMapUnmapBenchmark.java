package dev.vcmm.bench;

import dev.vcmm.ffm.FfmMemoryBackend;
import dev.vcmm.ffm.LockFreeBuddyAllocator;
import dev.vcmm.pagetable.Attributes;
import dev.vcmm.pagetable.PageTable;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.PageTableFormats;
import dev.vcmm.spi.MemorySpec;
import dev.vcmm.spi.PhysicalMemory;
import org.agrona.collections.Long2LongHashMap;
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

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.TimeUnit;

/**
 * Map + unmap in the formats whose smallest page is not a privileged 4 KiB page ({@link MapUnmapBenchmark} maps
 * those): the arm64 16 KiB and 64 KiB granules, and Arm stage 2 (4 KiB pages, but no privileged-only mappings: it
 * maps user read-write). Each against the physical limit and Agrona's primitive map in the same run.
 *
 * <ul>
 *   <li>{@code mapUnmapOne}: one smallest page at a rotating address in a warm table.</li>
 *   <li>{@code mapUnmapRange}: 512 smallest pages (2 MiB of 4 KiB, 8 MiB of 16 KiB, 32 MiB of 64 KiB), the physical
 *       address offset by one page so no larger leaf or contiguous run fits; the pages around it keep its tables
 *       warm.</li>
 *   <li>{@code rawStoreLimit}: 512 words stored and cleared in a MemorySegment, one read back (not dead code).</li>
 *   <li>{@code agronaOne} and {@code agronaRange}: the same on a {@code Long2LongHashMap} of pages.</li>
 * </ul>
 * Results are ns per operation (one map + one unmap).
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@State(Scope.Thread)
public class GranuleMapUnmapBenchmark {

    private static final long PT_BASE = 0x4000_0000L;
    private static final long PT_SIZE = 256L << 20;
    private static final long VA_BASE = 0x4000_0000L;
    private static final int SLOTS = 64;
    private static final int PAGES = 512;

    @Param({"arm64-16k", "arm64-64k", "arm64-s2-4k"})
    public String format;

    private PhysicalMemory memory;
    private LockFreeBuddyAllocator allocator;
    private PageTable table;
    private Attributes rw;
    private long page;
    private int shift;
    private long rangeVa;
    private long rangePa;
    private int slot;
    private Long2LongHashMap agronaTable;
    private Arena arena;
    private MemorySegment raw;

    @Setup
    public void setUp() {
        PageTableFormat f = PageTableFormats.byName(format);
        MemorySpec spec = new MemorySpec("pt", PT_BASE, PT_SIZE, false, 12, 0);
        memory = new FfmMemoryBackend().openMemory(spec);
        allocator = LockFreeBuddyAllocator.create(spec);
        table = PageTable.create(f, memory, allocator);
        page = f.leafSizes().getLast().size();
        shift = Long.numberOfTrailingZeros(page);
        rw = Attributes.RW.withUser(format.contains("-s2"));
        long range = PAGES * page;
        // warm: pages just outside each region keep its tables alive across the unmaps
        table.map(VA_BASE - page, 0, page, rw);
        table.map(VA_BASE + SLOTS * page, 0, page, rw);
        rangeVa = VA_BASE + 2 * range;
        rangePa = 0x8000_0000L + page;
        table.map(rangeVa - page, 0, page, rw);
        table.map(rangeVa + range, 0, page, rw);
        agronaTable = new Long2LongHashMap(-1L);
        arena = Arena.ofConfined();
        raw = arena.allocate(PAGES * Long.BYTES, 64);
    }

    @TearDown
    public void tearDown() {
        table.close();
        allocator.close();
        memory.close();
        arena.close();
    }

    @Benchmark
    public long mapUnmapOne() {
        long va = VA_BASE + (slot++ & (SLOTS - 1)) * page;
        table.map(va, 0x8000_0000L + va - VA_BASE, page, rw);
        return table.unmap(va, page);
    }

    @Benchmark
    public long mapUnmapRange() {
        table.map(rangeVa, rangePa, PAGES * page, rw);
        return table.unmap(rangeVa, PAGES * page);
    }

    @Benchmark
    public long rawStoreLimit() {
        MemorySegment s = raw;
        for (long i = 0; i < PAGES; i++) {
            s.setAtIndex(ValueLayout.JAVA_LONG, i, (rangePa + i * page) | 0x703L);
        }
        long check = s.getAtIndex(ValueLayout.JAVA_LONG, slot++ & (PAGES - 1)); // read back: the stores happened
        for (long i = 0; i < PAGES; i++) {
            s.setAtIndex(ValueLayout.JAVA_LONG, i, 0L);
        }
        return PAGES + check;
    }

    @Benchmark
    public long agronaOne() {
        long va = VA_BASE + (slot++ & (SLOTS - 1)) * page;
        return agronaUpdate(va, 0x8000_0000L + va - VA_BASE, page);
    }

    @Benchmark
    public long agronaRange() {
        return agronaUpdate(rangeVa, rangePa, PAGES * page);
    }

    private long agronaUpdate(long va, long pa, long length) {
        Long2LongHashMap h = agronaTable;
        for (long off = 0; off < length; off += page) {
            h.put((va + off) >>> shift, (pa + off) | 0x703L);
        }
        long n = 0;
        for (long off = 0; off < length; off += page) {
            if (h.remove((va + off) >>> shift) != -1L) {
                n += page;
            }
        }
        return n;
    }
}
