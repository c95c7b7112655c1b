package dev.vcmm;

import dev.vcmm.spi.AllocatorStats;
import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemoryBackend;
import dev.vcmm.spi.MemorySpec;
import dev.vcmm.spi.PhysicalMemory;
import dev.vcmm.testing.SimpleBuddyAllocator;
import dev.vcmm.testing.SimplePhysicalMemory;
import dev.vcmm.testing.SimpleTestBackend;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

import static dev.vcmm.TestMemoryTypes.BASE;
import static dev.vcmm.TestMemoryTypes.GIB;
import static dev.vcmm.TestMemoryTypes.KIB;
import static dev.vcmm.TestMemoryTypes.MIB;
import static dev.vcmm.TestMemoryTypes.countByOrder;
import static dev.vcmm.TestMemoryTypes.ddr;
import static dev.vcmm.TestMemoryTypes.orders;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class PhysAllocTest {

    @Test
    void shouldTakeLargestChunksFirstWithVcmmPolicy() {
        try (MemoryType t = ddr(GIB)) {
            PhysMem pm = t.physAlloc(17 * MIB + 64 * KIB + 4 * KIB, ChunkPolicy.VCMM);
            assertEquals(List.of(12, 8, 4, 0), orders(pm));
            assertEquals(17 * MIB + 68 * KIB, pm.length());
            assertEquals(t.size() - pm.length(), t.stats().freeBytes());
            for (PhysMem.Chunk c : pm.chunks()) {
                assertEquals(0, c.pa() % c.size(), "naturally aligned " + c);
                assertTrue(c.pa() >= BASE && c.end() <= BASE + GIB, "inside the pool " + c);
            }
        }
    }

    @Test
    void shouldRoundUpToTheSmallestChunk() {
        try (MemoryType t = ddr(GIB)) {
            PhysMem pm = t.physAlloc(1, ChunkPolicy.VCMM);
            assertEquals(List.of(0), orders(pm));
            assertEquals(1, pm.requestedLength());
            assertEquals(4096, pm.length());
            PhysMem frame = t.physAlloc(8_294_400, ChunkPolicy.VCMM); // 1080p ARGB: 2025 pages
            assertEquals(Map.of(8, 7L, 4, 14L, 0, 9L), countByOrder(frame));
            assertEquals(8_294_400, frame.length());
            PhysMem coarse = t.physAlloc(100 * KIB, ChunkPolicy.of(1L << 20, 64 * KIB));
            assertEquals(List.of(4, 4), orders(coarse));
        }
    }

    @Test
    void shouldUseHugePolicyAndSkipChunksLargerThanTheLargestBlock() {
        try (MemoryType t = ddr(4 * GIB)) {
            PhysMem pm = t.physAlloc(GIB + 2 * MIB + 4097, ChunkPolicy.HUGE);
            assertEquals(List.of(18, 9, 0, 0), orders(pm));
        }
        try (MemoryType t = MemoryType.builder("ddr").base(BASE).size(64 * MIB).maxOrder(12)
            .backend(new SimpleTestBackend()).build()) {
            PhysMem pm = t.physAlloc(5 * MIB, ChunkPolicy.HUGE);
            assertEquals(Map.of(9, 2L, 0, 256L), countByOrder(pm));
            pm.free();
            assertEquals(16 * MIB, t.stats().largestFreeBlock(), "maxOrder=12 caps blocks at 16M");
        }
    }

    @Test
    void shouldFallBackToSmallerChunksWhenLargerOnesRunOut() {
        try (MemoryType t = ddr(32 * MIB)) {
            BlockAllocator a = t.allocator();
            long oneMiB = a.alloc(8); // splits the first 16M block: one 16M block stays whole
            PhysMem pm = t.physAlloc(20 * MIB, ChunkPolicy.VCMM);
            assertEquals(List.of(12, 8, 8, 8, 8), orders(pm));
            assertEquals(BASE + 16 * MIB, pm.chunks().getFirst().pa());
            pm.free();
            a.free(oneMiB, 8);
            assertEquals(32 * MIB, t.stats().freeBytes());
        }
    }

    @Test
    void shouldFallBackOnAFragmentedPool() {
        try (MemoryType t = ddr(32 * MIB)) {
            BlockAllocator a = t.allocator();
            List<Long> mib = new ArrayList<>();
            for (long pa; (pa = a.alloc(8)) != BlockAllocator.NONE; ) {
                mib.add(pa);
            }
            for (int i = 0; i < mib.size(); i += 2) { // every other 1M: no two free buddies, nothing coalesces
                a.free(mib.get(i), 8);
            }
            assertEquals(MIB, t.stats().largestFreeBlock());
            PhysMem pm = t.physAlloc(5 * MIB + 64 * KIB, ChunkPolicy.VCMM);
            assertEquals(List.of(8, 8, 8, 8, 8, 4), orders(pm));
            assertFalse(pm.isContiguous());
            for (PhysMem.Chunk c : pm.chunks()) {
                assertEquals(0, ((c.pa() - BASE) / MIB) % 2, "taken from a freed 1M block: " + c);
            }
        }
    }

    @Test
    void shouldGiveEverythingBackWhenItRunsOut() {
        try (MemoryType t = ddr(32 * MIB)) {
            long taken = t.allocator().alloc(8);
            AllocatorStats before = t.stats();
            VcmmOutOfMemoryException e = assertThrows(VcmmOutOfMemoryException.class,
                () -> t.physAlloc(32 * MIB, ChunkPolicy.VCMM));
            assertEquals(before, t.stats(), "all or nothing");
            assertEquals(31 * MIB, e.obtainedBytes());
            assertEquals(32 * MIB, e.requestedLength());
            assertEquals("ddr", e.memoryType());
            String m = e.getMessage();
            for (String part : new String[] {"memoryType=ddr", "length=" + 32 * MIB, "policy=16M+1M+64K+4K",
                "obtained=" + 31 * MIB, "free=" + 31 * MIB, "largestFreeBlock=" + 16 * MIB}) {
                assertTrue(m.contains(part), m + " should contain " + part);
            }
            t.allocator().free(taken, 8);
        }
    }

    @Test
    void shouldAllocateContiguousAndGiveBackTheTail() {
        try (MemoryType t = ddr(GIB)) {
            PhysMem pm = t.physAlloc(3 * MIB, ChunkPolicy.VCMM, PhysAllocOptions.CONTIGUOUS);
            assertTrue(pm.isContiguous());
            assertEquals(List.of(8, 8, 8), orders(pm));
            assertEquals(BASE, pm.chunks().getFirst().pa());
            assertEquals(GIB - 3 * MIB, t.stats().freeBytes(), "the 1M tail of the 4M block is free again");
            assertEquals(BASE + 3 * MIB, t.allocator().alloc(8), "and is the next free 1M block");
        }
    }

    @Test
    void shouldDescribeAContiguousFrameAsPolicyChunks() {
        try (MemoryType t = ddr(GIB)) {
            AllocatorStats before = t.stats();
            PhysMem frame = t.physAlloc(8_294_400, ChunkPolicy.VCMM, PhysAllocOptions.CONTIGUOUS);
            assertTrue(frame.isContiguous());
            assertEquals(Map.of(8, 7L, 4, 14L, 0, 9L), countByOrder(frame));
            assertEquals(8_294_400, frame.length());
            assertEquals(GIB - 8_294_400, t.stats().freeBytes());
            assertEquals(frame.chunks().getFirst().pa() + 8_294_399, frame.physicalAddress(8_294_399));
            frame.free();
            assertEquals(before, t.stats());
        }
    }

    @Test
    void shouldAlignContiguousAllocations() {
        try (MemoryType t = ddr(GIB)) {
            long page = t.allocator().alloc(0); // BASE is busy now
            PhysMem pm = t.physAlloc(8 * KIB, ChunkPolicy.PAGES_4K, PhysAllocOptions.CONTIGUOUS.withAlignment(MIB));
            long start = pm.chunks().getFirst().pa();
            assertEquals(0, start % MIB, "start=0x" + Long.toHexString(start));
            assertTrue(start > page);
            assertEquals(List.of(0, 0), orders(pm));
            assertTrue(pm.isContiguous());
            assertEquals(GIB - 12 * KIB, t.stats().freeBytes());
        }
    }

    @Test
    void shouldUseOnlyChunksAsLargeAsTheAlignmentWhenScattered() {
        try (MemoryType t = ddr(GIB)) {
            PhysMem pm = t.physAlloc(100 * KIB, ChunkPolicy.VCMM, PhysAllocOptions.DEFAULT.withAlignment(64 * KIB));
            assertEquals(List.of(4, 4), orders(pm));
            assertEquals(128 * KIB, pm.length());
            PhysMem big = t.physAlloc(3 * MIB + 1, ChunkPolicy.VCMM, PhysAllocOptions.DEFAULT.withAlignment(MIB));
            assertEquals(List.of(8, 8, 8, 8), orders(big));
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> t.physAlloc(MIB, ChunkPolicy.PAGES_4K, PhysAllocOptions.DEFAULT.withAlignment(64 * KIB)));
            assertTrue(e.getMessage().contains("policy=4K"), e.getMessage());
        }
    }

    @Test
    void shouldFailContiguousWithoutABlockLargeEnoughAndChangeNothing() {
        try (MemoryType t = ddr(32 * MIB)) {
            BlockAllocator a = t.allocator();
            long x = a.allocAt(BASE + 8 * MIB, 0) ? BASE + 8 * MIB : -1;
            long y = a.allocAt(BASE + 24 * MIB, 0) ? BASE + 24 * MIB : -1;
            assertTrue(x > 0 && y > 0);
            AllocatorStats before = t.stats();
            VcmmOutOfMemoryException e = assertThrows(VcmmOutOfMemoryException.class,
                () -> t.physAlloc(9 * MIB, ChunkPolicy.VCMM, PhysAllocOptions.CONTIGUOUS));
            assertEquals(0, e.obtainedBytes());
            assertTrue(e.getMessage().contains("no free block of 16M"), e.getMessage());
            assertEquals(before, t.stats());
            // scattered, the same length fits
            t.physAlloc(9 * MIB, ChunkPolicy.VCMM).free();
            assertEquals(before, t.stats());
        }
    }

    @Test
    void shouldRejectContiguousLargerThanTheLargestBlock() {
        try (MemoryType t = MemoryType.builder("ddr").base(BASE).size(64 * MIB).maxOrder(10)
            .backend(new SimpleTestBackend()).build()) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> t.physAlloc(5 * MIB, ChunkPolicy.VCMM, PhysAllocOptions.CONTIGUOUS));
            assertTrue(e.getMessage().contains("maxOrder=10"), e.getMessage());
            assertThrows(IllegalArgumentException.class,
                () -> t.physAlloc(4 * KIB, ChunkPolicy.VCMM, PhysAllocOptions.CONTIGUOUS.withAlignment(8 * MIB)));
            assertEquals(64 * MIB, t.stats().freeBytes());
            assertEquals(List.of(8, 8, 8, 8, 8), orders(t.physAlloc(5 * MIB, ChunkPolicy.VCMM)));
        }
    }

    @Test
    void shouldRejectBadLengthsAndAllocateNothing() {
        try (MemoryType t = ddr(GIB)) {
            AllocatorStats before = t.stats();
            for (long bad : new long[] {0, -1, Long.MIN_VALUE, Long.MAX_VALUE, Long.MAX_VALUE - 4094, GIB + 1}) {
                for (PhysAllocOptions o : new PhysAllocOptions[] {PhysAllocOptions.DEFAULT, PhysAllocOptions.CONTIGUOUS}) {
                    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                        () -> t.physAlloc(bad, ChunkPolicy.VCMM, o));
                    assertTrue(e.getMessage().contains("length=" + bad), e.getMessage());
                }
            }
            assertThrows(IllegalArgumentException.class, () -> t.physAlloc(GIB - 1, ChunkPolicy.of(2 * GIB)),
                "no chunk size fits the pool");
            assertThrows(NullPointerException.class, () -> t.physAlloc(4096, null));
            assertThrows(NullPointerException.class, () -> t.physAlloc(4096, ChunkPolicy.VCMM, null));
            assertEquals(before, t.stats());
        }
    }

    @Test
    void shouldAllocateTheWholePoolAndNothingMore() {
        try (MemoryType t = ddr(64 * MIB)) {
            PhysMem all = t.physAlloc(64 * MIB, ChunkPolicy.PAGES_4K);
            assertEquals(16384, all.chunkCount());
            assertEquals(0, t.stats().freeBytes());
            assertThrows(VcmmOutOfMemoryException.class, () -> t.physAlloc(1, ChunkPolicy.PAGES_4K));
            all.free();
            assertEquals(64 * MIB, t.stats().largestFreeBlock());
        }
    }

    /** An allocator that never grants allocAt: the contiguous trim must fall back to keeping the whole block. */
    @Test
    void shouldKeepTheWholeBlockWhenTheTailCannotBeTrimmed() {
        MemoryBackend noAllocAt = new MemoryBackend() {
            @Override public String name() { return "no-alloc-at"; }
            @Override public int priority() { return 0; }
            @Override public PhysicalMemory openMemory(MemorySpec spec) { return new SimplePhysicalMemory(spec.base(), spec.size()); }
            @Override public BlockAllocator openAllocator(MemorySpec spec) {
                return new ForwardingAllocator(new SimpleBuddyAllocator(spec)) {
                    @Override public boolean allocAt(long pa, int order) { return false; }
                };
            }
        };
        try (MemoryType t = MemoryType.builder("ddr").base(BASE).size(GIB).backend(noAllocAt).build()) {
            AllocatorStats before = t.stats();
            PhysMem pm = t.physAlloc(3 * MIB, ChunkPolicy.VCMM, PhysAllocOptions.CONTIGUOUS);
            assertTrue(pm.isContiguous());
            assertEquals(List.of(8, 8, 8), orders(pm));
            assertEquals(GIB - 4 * MIB, t.stats().freeBytes(), "the whole 4M block is held");
            pm.free();
            assertEquals(before, t.stats());
        }
    }

    @Test
    void shouldKeepChunksDisjointAcrossManyAllocations() {
        try (MemoryType t = ddr(256 * MIB)) {
            List<PhysMem> live = new ArrayList<>();
            long[] lengths = {4096, 100 * KIB, 3 * MIB, 8_294_400, 17 * MIB + 5};
            ChunkPolicy[] policies = {ChunkPolicy.PAGES_4K, ChunkPolicy.VCMM, ChunkPolicy.HUGE};
            for (int i = 0; i < 30; i++) {
                PhysAllocOptions o = i % 4 == 3 ? PhysAllocOptions.CONTIGUOUS : PhysAllocOptions.DEFAULT;
                live.add(t.physAlloc(lengths[i % lengths.length], policies[i % policies.length], o));
            }
            List<PhysMem.Chunk> all = new ArrayList<>();
            live.forEach(pm -> all.addAll(pm.chunks()));
            all.sort((a, b) -> Long.compare(a.pa(), b.pa()));
            for (int i = 1; i < all.size(); i++) {
                assertTrue(all.get(i - 1).end() <= all.get(i).pa(), all.get(i - 1) + " overlaps " + all.get(i));
            }
            long used = live.stream().mapToLong(PhysMem::length).sum();
            assertEquals(256 * MIB - used, t.stats().freeBytes());
            Collections.shuffle(live, new java.util.Random(7));
            live.forEach(PhysMem::free);
            assertEquals(256 * MIB, t.stats().largestFreeBlock());
        }
    }

    /** Delegates every call; tests override what they need to break. */
    static class ForwardingAllocator implements BlockAllocator {
        private final BlockAllocator d;
        ForwardingAllocator(BlockAllocator d) { this.d = d; }
        @Override public long base() { return d.base(); }
        @Override public long size() { return d.size(); }
        @Override public int maxOrder() { return d.maxOrder(); }
        @Override public long alloc(int order) { return d.alloc(order); }
        @Override public boolean allocAt(long pa, int order) { return d.allocAt(pa, order); }
        @Override public void free(long pa, int order) { d.free(pa, order); }
        @Override public AllocatorStats stats() { return d.stats(); }
        @Override public boolean isClosed() { return d.isClosed(); }
        @Override public void close() { d.close(); }
    }
}
