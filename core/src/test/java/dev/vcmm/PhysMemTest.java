package dev.vcmm;

import dev.vcmm.spi.AllocatorStats;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;

import static dev.vcmm.TestMemoryTypes.BASE;
import static dev.vcmm.TestMemoryTypes.GIB;
import static dev.vcmm.TestMemoryTypes.KIB;
import static dev.vcmm.TestMemoryTypes.MIB;
import static dev.vcmm.TestMemoryTypes.ddr;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class PhysMemTest {

    @Test
    void shouldTranslateEveryOffsetLikeALinearScan() {
        try (MemoryType t = ddr(64 * MIB)) {
            List<Long> holes = new ArrayList<>();
            for (int i = 0; i < 40; i++) { // scatter: take pages, free every third, so chunks come from all over
                holes.add(t.allocator().alloc(i % 5));
            }
            for (int i = 0; i < holes.size(); i += 3) {
                t.allocator().free(holes.get(i), i % 5);
            }
            PhysMem pm = t.physAlloc(3 * MIB + 200 * KIB + 1, ChunkPolicy.VCMM);
            assertTrue(pm.chunkCount() > 4);
            long offset = 0;
            for (PhysMem.Chunk c : pm.chunks()) {
                for (long d : new long[] {0, 1, 4095, c.size() / 2, c.size() - 1}) {
                    assertEquals(c.pa() + d, pm.physicalAddress(offset + d), "offset=" + (offset + d));
                }
                offset += c.size();
            }
            assertEquals(pm.length(), offset);
            long length = pm.length();
            assertTrue(assertThrows(IllegalArgumentException.class, () -> pm.physicalAddress(length))
                .getMessage().contains("offset=" + length));
            assertThrows(IllegalArgumentException.class, () -> pm.physicalAddress(-1));
        }
    }

    @Test
    void shouldGiveRunsThatMergeAdjacentChunksAndAgreeWithPhysicalAddress() {
        try (MemoryType t = ddr(64 * MIB)) {
            List<Long> holes = new ArrayList<>();
            for (int i = 0; i < 40; i++) {
                holes.add(t.allocator().alloc(i % 3));
            }
            for (int i = 0; i < holes.size(); i += 2) {
                t.allocator().free(holes.get(i), i % 3);
            }
            PhysMem pm = t.physAlloc(2 * MIB, ChunkPolicy.of(64 * KIB, 8 * KIB, 4 * KIB));
            for (long[] w : new long[][] {{0, pm.length()}, {4096, 3 * 4096}, {pm.length() - 8192, 8192}, {12345 & -4096, MIB}}) {
                List<PhysMem.Run> runs = pm.runs(w[0], w[1]);
                long expect = 0;
                for (int i = 0; i < runs.size(); i++) {
                    PhysMem.Run r = runs.get(i);
                    assertEquals(expect, r.offset(), "runs tile the window");
                    for (long d : new long[] {0, r.length() - 1}) {
                        assertEquals(pm.physicalAddress(w[0] + r.offset() + d), r.pa() + d);
                    }
                    if (i > 0) {
                        PhysMem.Run p = runs.get(i - 1);
                        assertTrue(p.pa() + p.length() != r.pa(), "adjacent runs are merged: " + runs);
                    }
                    expect += r.length();
                }
                assertEquals(w[1], expect);
            }
            assertThrows(IllegalArgumentException.class, () -> pm.runs(pm.length() - 4096, 8192));
        }
    }

    @Test
    void shouldExposeAnImmutableChunkList() {
        try (MemoryType t = ddr(GIB)) {
            PhysMem pm = t.physAlloc(MIB, ChunkPolicy.VCMM);
            assertThrows(UnsupportedOperationException.class, () -> pm.chunks().clear());
            assertSame(t, pm.memoryType());
            assertEquals(ChunkPolicy.VCMM, pm.policy());
            assertEquals(PhysAllocOptions.DEFAULT, pm.options());
            assertEquals(1, pm.chunkCount());
            assertEquals(new PhysMem.Chunk(BASE, 8), pm.chunks().getFirst());
            assertEquals(MIB, pm.chunks().getFirst().size());
        }
    }

    @Test
    void shouldRejectMisalignedChunks() {
        assertThrows(IllegalArgumentException.class, () -> new PhysMem.Chunk(BASE + 4096, 1));
        assertThrows(IllegalArgumentException.class, () -> new PhysMem.Chunk(-4096, 0));
        assertThrows(IllegalArgumentException.class, () -> new PhysMem.Chunk(0, -1));
        assertThrows(IllegalArgumentException.class, () -> new PhysMem.Chunk(0, 25));
    }

    @Test
    void shouldFreeOnceAndRefuseASecondFree() {
        try (MemoryType t = ddr(GIB)) {
            AllocatorStats before = t.stats();
            PhysMem pm = t.physAlloc(17 * MIB, ChunkPolicy.VCMM);
            pm.free();
            assertTrue(pm.isFreed());
            assertEquals(before, t.stats());
            PhysMem other = t.physAlloc(MIB, ChunkPolicy.VCMM); // reuses the freed memory
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> t.physFree(pm));
            assertTrue(e.getMessage().contains("already freed"), e.getMessage());
            assertFalse(other.isFreed());
            assertEquals(GIB - MIB, t.stats().freeBytes(), "the second free did not free the reused block");
        }
    }

    @Test
    void shouldRefuseAForeignHandle() {
        try (MemoryType ddr = ddr(GIB);
             MemoryType sram = MemoryType.builder("sram").base(BASE).size(GIB)
                 .backend(new dev.vcmm.testing.SimpleTestBackend()).build()) {
            PhysMem pm = ddr.physAlloc(MIB, ChunkPolicy.VCMM);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> sram.physFree(pm));
            assertTrue(e.getMessage().contains("foreign"), e.getMessage());
            assertTrue(e.getMessage().contains("memoryType=ddr") && e.getMessage().contains("memoryType=sram"), e.getMessage());
            assertFalse(pm.isFreed());
            assertEquals(GIB, sram.stats().freeBytes());
            pm.free();
            assertEquals(GIB, ddr.stats().freeBytes());
        }
    }

    @Test
    void shouldLetExactlyOneOfConcurrentFreesWin() throws Exception {
        try (MemoryType t = ddr(GIB)) {
            for (int round = 0; round < 50; round++) {
                PhysMem pm = t.physAlloc(5 * MIB + 68 * KIB, ChunkPolicy.VCMM);
                int threads = 4;
                CountDownLatch start = new CountDownLatch(1);
                AtomicInteger won = new AtomicInteger();
                AtomicInteger refused = new AtomicInteger();
                List<Thread> ts = new ArrayList<>();
                for (int i = 0; i < threads; i++) {
                    ts.add(Thread.ofPlatform().start(() -> {
                        try {
                            start.await();
                            pm.free();
                            won.incrementAndGet();
                        } catch (IllegalStateException e) {
                            refused.incrementAndGet();
                        } catch (InterruptedException e) {
                            Thread.currentThread().interrupt();
                        }
                    }));
                }
                start.countDown();
                for (Thread th : ts) {
                    th.join();
                }
                assertEquals(1, won.get());
                assertEquals(threads - 1, refused.get());
                assertEquals(GIB, t.stats().freeBytes());
            }
        }
    }

    @Test
    void shouldPrintACompactSummary() {
        try (MemoryType t = ddr(GIB)) {
            PhysMem pm = t.physAlloc(17 * MIB + 68 * KIB, ChunkPolicy.VCMM);
            // on a fresh pool the lowest-address-first test allocator lays the chunks end to end: contiguous by chance
            assertEquals("PhysMem[ddr 17476K as 1x16M+1x1M+1x64K+1x4K, contiguous, first pa=0x80000000]", pm.toString());
            t.allocator().alloc(0); // a busy page between this and the next allocation's chunks
            PhysMem s = t.physAlloc(MIB + 4 * KIB, ChunkPolicy.VCMM);
            assertTrue(s.toString().contains("as 1x1M+1x4K, scattered"), s.toString());
            PhysMem c = t.physAlloc(2 * MIB, ChunkPolicy.VCMM, PhysAllocOptions.CONTIGUOUS);
            assertTrue(c.toString().contains("2M as 2x1M, contiguous"), c.toString());
            c.free();
            assertTrue(c.toString().endsWith(", freed]"), c.toString());
        }
    }
}
