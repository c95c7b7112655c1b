package dev.vcmm;

import dev.vcmm.spi.AllocatorStats;
import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemoryBackend;
import dev.vcmm.spi.MemorySpec;
import dev.vcmm.spi.PhysicalMemory;
import dev.vcmm.testing.SimpleBuddyAllocator;
import dev.vcmm.testing.SimplePhysicalMemory;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static dev.vcmm.TestMemoryTypes.BASE;
import static dev.vcmm.TestMemoryTypes.KIB;
import static dev.vcmm.TestMemoryTypes.MIB;
import static dev.vcmm.TestMemoryTypes.countByOrder;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** {@code physAlloc} takes the chunks of one size with {@link BlockAllocator#allocBulk}, in batches, not one search each. */
class PhysAllocBulkTest {

    /** The simple allocator, counting how it is called; allocBulk is the SPI's default (one alloc at a time). */
    static final class CountingAllocator implements BlockAllocator {
        final SimpleBuddyAllocator inner;
        final List<Integer> bulkCounts = new ArrayList<>();
        int singleAllocs;
        private boolean inBulk;

        CountingAllocator(MemorySpec spec) {
            inner = new SimpleBuddyAllocator(spec);
        }

        @Override
        public long alloc(int order) {
            if (!inBulk) {
                singleAllocs++;
            }
            return inner.alloc(order);
        }

        @Override
        public int allocBulk(int order, long[] out, int offset, int count) {
            bulkCounts.add(count);
            inBulk = true;
            try {
                return BlockAllocator.super.allocBulk(order, out, offset, count);
            } finally {
                inBulk = false;
            }
        }

        @Override
        public long base() {
            return inner.base();
        }

        @Override
        public long size() {
            return inner.size();
        }

        @Override
        public int maxOrder() {
            return inner.maxOrder();
        }

        @Override
        public boolean allocAt(long pa, int order) {
            return inner.allocAt(pa, order);
        }

        @Override
        public void free(long pa, int order) {
            inner.free(pa, order);
        }

        @Override
        public AllocatorStats stats() {
            return inner.stats();
        }

        @Override
        public boolean isClosed() {
            return inner.isClosed();
        }

        @Override
        public void close() {
            inner.close();
        }
    }

    private static CountingAllocator allocator;

    private static MemoryType counted(long size) {
        return MemoryType.builder("ddr").base(BASE).size(size).threadCacheCapacity(0).backend(new MemoryBackend() {
            @Override
            public String name() {
                return "counting";
            }

            @Override
            public int priority() {
                return 0;
            }

            @Override
            public PhysicalMemory openMemory(MemorySpec spec) {
                return new SimplePhysicalMemory(spec.base(), spec.size());
            }

            @Override
            public BlockAllocator openAllocator(MemorySpec spec) {
                allocator = new CountingAllocator(spec);
                return allocator;
            }
        }).build();
    }

    @Test
    void takesOneSizesChunksInOneBulkCall() {
        try (MemoryType ddr = counted(16 * MIB)) {
            PhysMem pm = ddr.physAlloc(64 * KIB, ChunkPolicy.PAGES_4K);
            assertEquals(Map.of(0, 16L), countByOrder(pm));
            assertEquals(List.of(16), allocator.bulkCounts, "one call for the 16 pages");
            assertEquals(0, allocator.singleAllocs);
            pm.free();
        }
    }

    @Test
    void batchesVeryManyChunksAndFallsBackWhenASizeRunsOut() {
        try (MemoryType ddr = counted(4 * MIB)) {
            // leave only single 4 KiB pages free in the first MiB: every other page taken
            List<PhysMem> holes = new ArrayList<>();
            List<PhysMem> keep = new ArrayList<>();
            for (int i = 0; i < 256; i++) {
                (i % 2 == 0 ? keep : holes).add(ddr.physAlloc(4 * KIB, ChunkPolicy.PAGES_4K));
            }
            PhysMem rest = ddr.physAlloc(3 * MIB, ChunkPolicy.of(MIB)); // the other 3 MiB
            holes.forEach(PhysMem::free);
            allocator.bulkCounts.clear();

            // 64K+4K: no 64 KiB block is free, so all 128 pages come as 4 KiB chunks, in two batches
            PhysMem pm = ddr.physAlloc(512 * KIB, ChunkPolicy.of(64 * KIB, 4 * KIB));
            assertEquals(Map.of(0, 128L), countByOrder(pm));
            assertEquals(List.of(8, 64, 64), allocator.bulkCounts, "8 wanted of 64K, none got; then 128 pages in batches of 64");

            // nothing left: all or nothing, and what the bulk calls took goes back
            long free = ddr.stats().freeBytes();
            assertThrows(VcmmOutOfMemoryException.class, () -> ddr.physAlloc(8 * KIB, ChunkPolicy.PAGES_4K));
            assertEquals(free, ddr.stats().freeBytes());
            pm.free();
            rest.free();
            keep.forEach(PhysMem::free);
            assertEquals(ddr.stats().totalBytes(), ddr.stats().freeBytes());
        }
    }
}
