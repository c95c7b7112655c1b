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
import java.util.HashMap;
import java.util.concurrent.TimeUnit;

/**
 * Map + unmap in a page table of each hardware format, against the physical limit (plain
 * stores of as many 8-byte words into a MemorySegment) and two naive page tables: Agrona's primitive
 * {@code Long2LongHashMap} (the fair baseline: no boxing, no allocation) and a boxed
 * {@code HashMap<Long, Long>}.
 *
 * <ul>
 *   <li>{@code mapUnmapOne}: maps then unmaps one mapping of {@code size} bytes at a rotating, size-aligned
 *       address in a warm table (its tables exist; nothing is allocated in steady state). The mapper uses
 *       the largest leaf the format has: a 1m mapping is one 1 MiB section in {@code armv7-short}, sixteen
 *       64 KiB contiguous runs in {@code arm64-4k}, 256 pages in {@code x86-64}.</li>
 *   <li>{@code mapUnmapRange4k}: maps then unmaps a 2 MiB range made of 4 KiB pages (the physical address
 *       is offset by 4 KiB so no larger leaf fits): 512 PTEs written and cleared. The range starts 1 MiB into
 *       a 2 MiB-aligned span, so it never covers a whole 2 MiB last-level table and its tables stay warm; in
 *       {@code armv7-short}, whose level-2 tables span 1 MiB, it is two whole tables, freed and allocated again
 *       every time.</li>
 *   <li>{@code rawStoreLimit}: stores 512 words and clears them again in a MemorySegment: the physical limit
 *       of {@code mapUnmapRange4k}. Not dead code: one stored word (a rotating index) is read back between
 *       the loops and returned, so the JIT must perform the stores (and the clears, to memory that outlives
 *       the call).</li>
 *   <li>{@code rawOneLimit}: the physical limit of {@code mapUnmapOne} at 4 KiB: one word of a MemorySegment
 *       read (is it free?), stored, read (was it mapped?) and cleared, at a rotating index.</li>
 *   <li>{@code agronaOne} and {@code agronaRange4k}: the same operations on an Agrona
 *       {@code Long2LongHashMap} page table of 4 KiB pages (one put and one remove per page): the naive
 *       baseline the results are reported against.</li>
 *   <li>{@code hashMapOne} and {@code hashMapRange4k}: the same on a boxed {@code HashMap<Long, Long>}
 *       (allocates a {@code Long} and a node per put), kept for comparison with earlier results.</li>
 * </ul>
 * Results are ns per operation (one map + one unmap). {@code x86-64-5level} and {@code riscv-sv57} walk one
 * level more than their 4-level siblings. The 16 KiB / 64 KiB granules and Arm stage 2 are not in the list: the
 * warm-up pages here are 4 KiB privileged mappings, which those formats cannot express.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@State(Scope.Thread)
public class MapUnmapBenchmark {

    private static final long PT_BASE = 0x4000_0000L;
    private static final long PT_SIZE = 256L << 20;
    private static final long VA_BASE = 0x4000_0000L;
    private static final int SLOTS = 64;
    private static final long PAGE = 4096;
    private static final long RANGE = 2L << 20;

    @Param({"arm64-4k", "armv7-short", "x86-64", "x86-64-5level", "riscv-sv39", "riscv-sv48", "riscv-sv57"})
    public String format;

    @Param({"4k", "64k", "1m", "2m"})
    public String size;

    private PhysicalMemory memory;
    private LockFreeBuddyAllocator allocator;
    private PageTable table;
    private long bytes;
    private long rangeVa;
    private long rangePa;
    private int slot;
    private HashMap<Long, Long> hashTable;
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
        bytes = switch (size) {
            case "4k" -> 4L << 10;
            case "64k" -> 64L << 10;
            case "1m" -> 1L << 20;
            case "2m" -> 2L << 20;
            default -> throw new IllegalArgumentException("size=" + size);
        };
        // warm: a page just below each region keeps its tables alive across the unmaps
        table.map(VA_BASE - PAGE, 0, PAGE, Attributes.RW);
        table.map(VA_BASE + SLOTS * bytes, 0, PAGE, Attributes.RW);
        // the range starts half-way into a last-level table of 2 MiB span, so it covers parts of two tables and
        // never a whole one: the pages below and above keep both tables alive and the run measures a warm table,
        // not a table allocated, zeroed and freed every time (armv7-short's tables span 1 MiB: there the range is
        // two whole tables, and the cost of freeing and allocating them is part of what it measures)
        rangeVa = VA_BASE + (SLOTS + 1) * bytes + RANGE - ((VA_BASE + (SLOTS + 1) * bytes) & (RANGE - 1)) + RANGE / 2;
        rangePa = 0x8000_0000L + PAGE;
        table.map(rangeVa - PAGE, 0, PAGE, Attributes.RW);
        table.map(rangeVa + RANGE, 0, PAGE, Attributes.RW);
        hashTable = new HashMap<>();
        agronaTable = new Long2LongHashMap(-1L);
        arena = Arena.ofConfined();
        raw = arena.allocate(RANGE / PAGE * Long.BYTES, 64);
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
        long va = VA_BASE + (slot++ & (SLOTS - 1)) * bytes;
        table.map(va, 0x8000_0000L + va - VA_BASE, bytes, Attributes.RW);
        return table.unmap(va, bytes);
    }

    @Benchmark
    public long mapUnmapRange4k() {
        table.map(rangeVa, rangePa, RANGE, Attributes.RW);
        return table.unmap(rangeVa, RANGE);
    }

    @Benchmark
    public long rawStoreLimit() {
        MemorySegment s = raw;
        long n = RANGE / PAGE;
        for (long i = 0; i < n; i++) {
            s.setAtIndex(ValueLayout.JAVA_LONG, i, (rangePa + i * PAGE) | 0x703L);
        }
        long check = s.getAtIndex(ValueLayout.JAVA_LONG, slot++ & (n - 1)); // read back: the stores happened
        for (long i = 0; i < n; i++) {
            s.setAtIndex(ValueLayout.JAVA_LONG, i, 0L);
        }
        return n + check;
    }

    @Benchmark
    public long rawOneLimit() {
        MemorySegment s = raw;
        long index = slot++ & (SLOTS - 1);
        long off = index * Long.BYTES;
        if (s.get(ValueLayout.JAVA_LONG, off) != 0) {
            throw new IllegalStateException("already mapped");
        }
        s.set(ValueLayout.JAVA_LONG, off, (0x8000_0000L + index * PAGE) | 0x703L);
        long n = s.get(ValueLayout.JAVA_LONG, off) != 0 ? PAGE : 0;
        s.set(ValueLayout.JAVA_LONG, off, 0L);
        return n;
    }

    @Benchmark
    public long hashMapOne() {
        long va = VA_BASE + (slot++ & (SLOTS - 1)) * bytes;
        return hashMapUpdate(va, 0x8000_0000L + va - VA_BASE, bytes);
    }

    @Benchmark
    public long hashMapRange4k() {
        return hashMapUpdate(rangeVa, rangePa, RANGE);
    }

    @Benchmark
    public long agronaOne() {
        long va = VA_BASE + (slot++ & (SLOTS - 1)) * bytes;
        return agronaUpdate(va, 0x8000_0000L + va - VA_BASE, bytes);
    }

    @Benchmark
    public long agronaRange4k() {
        return agronaUpdate(rangeVa, rangePa, RANGE);
    }

    private long agronaUpdate(long va, long pa, long length) {
        Long2LongHashMap h = agronaTable;
        for (long off = 0; off < length; off += PAGE) {
            h.put((va + off) >>> 12, (pa + off) | 0x703L);
        }
        long n = 0;
        for (long off = 0; off < length; off += PAGE) {
            if (h.remove((va + off) >>> 12) != -1L) {
                n += PAGE;
            }
        }
        return n;
    }

    private long hashMapUpdate(long va, long pa, long length) {
        HashMap<Long, Long> h = hashTable;
        for (long off = 0; off < length; off += PAGE) {
            h.put((va + off) >>> 12, (pa + off) | 0x703L);
        }
        long n = 0;
        for (long off = 0; off < length; off += PAGE) {
            if (h.remove((va + off) >>> 12) != null) {
                n += PAGE;
            }
        }
        return n;
    }
}
