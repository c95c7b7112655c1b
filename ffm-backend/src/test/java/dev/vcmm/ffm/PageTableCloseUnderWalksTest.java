package dev.vcmm.ffm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.Attributes;
import dev.vcmm.pagetable.PageTable;
import dev.vcmm.pagetable.PageTableFormats;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.spi.MemorySpec;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Page tables in the off-heap memory and the lock-free buddy, as the graph uses them: walkers started at a
 * barrier race unmaps of whole spans and then {@code close()}; a second table made from the same memory
 * maps the same addresses elsewhere. No walk of the first table ever answers the second's mapping, and
 * once the walks have ended the buddy's own statistics show every table page back ({@code allocatedBytes
 * == 0}), with no one having waited for a walk.
 */
class PageTableCloseUnderWalksTest {

    static final long PT_BASE = 0x4000_0000L;
    static final long PT_SIZE = 16L << 20;

    @ParameterizedTest
    @ValueSource(strings = {"arm64-4k", "armv7-short", "x86-64", "riscv-sv39"})
    void shouldGiveEveryTablePageBackAfterCloseRacesWalks(String format) throws Exception {
        MemorySpec spec = new MemorySpec("pt", PT_BASE, PT_SIZE, false, 12, 0);
        try (SegmentPhysicalMemory memory = SegmentPhysicalMemory.open(spec);
             LockFreeBuddyAllocator allocator = LockFreeBuddyAllocator.create(spec)) {
            int walkers = 2;
            int raced = 0;
            for (int round = 0; round < 100; round++) {
                PageTable t1 = PageTable.create(PageTableFormats.byName(format), memory, allocator);
                for (int i = 0; i < 4; i++) {
                    t1.map(0x40_0000L * i + 0x1000, 0x8000_0000L + 0x1000L * i, 0x1000, Attributes.RW);
                }
                CyclicBarrier start = new CyclicBarrier(walkers + 1);
                AtomicReference<String> wrong = new AtomicReference<>();
                AtomicInteger faulted = new AtomicInteger();
                List<Thread> threads = new ArrayList<>();
                for (int w = 0; w < walkers; w++) {
                    threads.add(Thread.ofPlatform().start(() -> {
                        try {
                            start.await();
                            for (int k = 0; ; k++) {
                                int i = k & 3;
                                WalkResult r = t1.walk(0x40_0000L * i + 0x1000, Access.READ, false);
                                if (r instanceof WalkResult.Translation t && t.pa() != 0x8000_0000L + 0x1000L * i) {
                                    wrong.compareAndSet(null, r.toString());
                                } else if (r instanceof WalkResult.PageFault f && f.detail().contains("closed")) {
                                    faulted.incrementAndGet();
                                    return;
                                }
                            }
                        } catch (Exception e) {
                            wrong.compareAndSet(null, e.toString());
                        }
                    }));
                }
                start.await();
                t1.unmap(0x40_0000L, 0x40_0000L); // whole last-level spans: retired while walks may read them
                t1.close();
                try (PageTable t2 = PageTable.create(PageTableFormats.byName(format), memory, allocator)) {
                    for (int i = 0; i < 4; i++) {
                        t2.map(0x40_0000L * i + 0x1000, 0x9000_0000L + 0x1000L * i, 0x1000, Attributes.RW);
                    }
                    for (Thread t : threads) {
                        t.join();
                    }
                    assertNull(wrong.get(), "a walk of the closed table answered something else");
                    raced += faulted.get();
                    assertEquals(0, t1.heldBytes(), "every page of t1 is back once its walks ended");
                    assertEquals(t2.heldBytes(), allocator.stats().allocatedBytes());
                }
                assertEquals(0, allocator.stats().allocatedBytes(), "round " + round);
            }
            assertTrue(raced > 0, "walks ran into the close");
        }
    }
}
