package dev.vcmm.cli;

import dev.vcmm.ChunkPolicy;
import dev.vcmm.MemoryType;
import dev.vcmm.PhysAllocOptions;
import dev.vcmm.PhysMem;
import dev.vcmm.spi.AllocatorStats;
import dev.vcmm.spi.BlockAllocator;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.StringJoiner;
import java.util.TreeMap;

/**
 * {@code vcmm alloc-demo}: allocates a few typical buffers from a simulated 4 GiB DDR under several chunk
 * policies, prints what each got, the allocator's statistics, then frees everything and checks that it
 * all coalesced back into the largest blocks.
 *
 * <p><b>Thread-safety:</b> stateless; {@link #run} uses only local state.
 */
final class AllocDemoCommand implements Command {

    private static final long BASE = 0x8000_0000L;
    private static final long SIZE = 4L << 30;

    private record Buffer(String name, long bytes) { }

    private record Variant(String label, ChunkPolicy policy, PhysAllocOptions options) { }

    private static final List<Buffer> BUFFERS = List.of(
        new Buffer("1080p ARGB frame", 1920L * 1080 * 4),
        new Buffer("4K UHD ARGB frame", 3840L * 2160 * 4),
        new Buffer("3 MiB", 3L << 20),
        new Buffer("100 KiB", 100L << 10));

    private static final List<Variant> VARIANTS = List.of(
        new Variant("4K pages only", ChunkPolicy.PAGES_4K, PhysAllocOptions.DEFAULT),
        new Variant("VCMM " + ChunkPolicy.VCMM, ChunkPolicy.VCMM, PhysAllocOptions.DEFAULT),
        new Variant("HUGE " + ChunkPolicy.HUGE, ChunkPolicy.HUGE, PhysAllocOptions.DEFAULT),
        new Variant("VCMM contiguous", ChunkPolicy.VCMM, PhysAllocOptions.CONTIGUOUS));

    @Override
    public String name() {
        return "alloc-demo";
    }

    @Override
    public String summary() {
        return "allocate typical buffers under several chunk policies and show the allocator at work";
    }

    @Override
    public int run(List<String> args, PrintStream out, PrintStream err) {
        if (!args.isEmpty()) {
            err.println("vcmm alloc-demo: takes no arguments, got " + args);
            return 2;
        }
        // thread caches off, so that every free reaches the shared pool and coalesces at once
        try (MemoryType ddr = MemoryType.builder("ddr").base(BASE).size(SIZE).threadCacheCapacity(0).build()) {
            out.printf("vcmm alloc-demo: memory type %s, %s of simulated DDR at %s (sparse: costs only what is touched)%n",
                ddr.name(), size(ddr.size()), hex(ddr.base()));
            out.printf("backend=%s, largest block %s (maxOrder=%d)%n%n", ddr.backendName(),
                size(BlockAllocator.orderSize(ddr.maxOrder())), ddr.maxOrder());

            String row = "%-20s %-18s %11s %6s  %-26s %s%n";
            out.printf(row, "policy", "buffer", "bytes", "chunks", "chunks by size", "first chunks (pa/size)");
            List<PhysMem> live = new ArrayList<>();
            for (Variant v : VARIANTS) {
                for (Buffer b : BUFFERS) {
                    PhysMem pm = ddr.physAlloc(b.bytes(), v.policy(), v.options());
                    live.add(pm);
                    out.printf(row, v.label(), b.name(), String.format("%,d", b.bytes()), pm.chunkCount(),
                        bySize(pm), firstChunks(pm, 3));
                }
            }
            long held = live.stream().mapToLong(PhysMem::length).sum();
            out.printf("%n%d allocations hold %,d bytes (%s)%n", live.size(), held, size(held));

            out.printf("%nallocator after allocating:%n");
            printStats(out, ddr.stats());

            live.forEach(PhysMem::free);
            AllocatorStats after = ddr.stats();
            out.printf("%nallocator after freeing everything:%n");
            printStats(out, after);

            long maxBlock = Math.min(BlockAllocator.orderSize(ddr.maxOrder()), Long.highestOneBit(ddr.size()));
            boolean coalesced = after.freeBytes() == after.totalBytes() && after.largestFreeBlock() == maxBlock;
            out.printf("%n%s%n", coalesced
                ? "OK: every block coalesced back; the largest free block is " + size(maxBlock) + " again"
                : "NOT COALESCED: expected all " + size(after.totalBytes()) + " free in blocks of " + size(maxBlock));
            return coalesced ? 0 : 1;
        }
    }

    private static void printStats(PrintStream out, AllocatorStats s) {
        String row = "  %-20s %,17d  %s%n";
        out.printf(row, "total", s.totalBytes(), size(s.totalBytes()));
        out.printf(row, "allocated", s.allocatedBytes(), size(s.allocatedBytes()));
        out.printf(row, "free", s.freeBytes(), size(s.freeBytes()));
        out.printf(row, "cached (per thread)", s.cachedBytes(), size(s.cachedBytes()));
        out.printf(row, "largest free block", s.largestFreeBlock(), size(s.largestFreeBlock()));
        StringJoiner blocks = new StringJoiner(" ");
        long[] byOrder = s.freeBlocksByOrder();
        for (int k = byOrder.length - 1; k >= 0; k--) {
            if (byOrder[k] != 0) {
                blocks.add(byOrder[k] + "x" + size(BlockAllocator.orderSize(k)));
            }
        }
        out.printf("  %-20s %s%n", "free blocks", blocks.length() == 0 ? "none" : blocks);
    }

    /** @return e.g. {@code 7x1M 14x64K 9x4K}. */
    static String bySize(PhysMem pm) {
        Map<Integer, Integer> counts = new TreeMap<>((a, b) -> b - a);
        for (PhysMem.Chunk c : pm.chunks()) {
            counts.merge(c.order(), 1, Integer::sum);
        }
        StringJoiner j = new StringJoiner(" ");
        counts.forEach((order, n) -> j.add(n + "x" + size(BlockAllocator.orderSize(order))));
        return j.toString();
    }

    private static String firstChunks(PhysMem pm, int n) {
        StringJoiner j = new StringJoiner(" ");
        List<PhysMem.Chunk> chunks = pm.chunks();
        for (int i = 0; i < Math.min(n, chunks.size()); i++) {
            j.add(hex(chunks.get(i).pa()) + "/" + size(chunks.get(i).size()));
        }
        return chunks.size() > n ? j + " ..." : j.toString();
    }

    /** @return {@code bytes} as {@code nG}, {@code nM}, {@code nK} when exact, else with one decimal, e.g. {@code 7.9M}. */
    static String size(long bytes) {
        String[] units = {"G", "M", "K"};
        for (int i = 0; i < units.length; i++) {
            long unit = 1L << (30 - 10 * i);
            if (bytes >= unit) {
                return bytes % unit == 0 ? bytes / unit + units[i] : String.format("%.1f%s", (double) bytes / unit, units[i]);
            }
        }
        return bytes + "B";
    }

    private static String hex(long value) {
        return "0x" + Long.toHexString(value);
    }
}
