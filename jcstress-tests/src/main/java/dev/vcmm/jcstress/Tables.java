package dev.vcmm.jcstress;

import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.PageTable;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.heap.HeapPhysicalMemory;
import dev.vcmm.spi.PhysicalMemory;

/**
 * What the page-table tests share: a small page-table memory (16 pages) with a {@link LifoPageAllocator},
 * and the encoding of a walk's answer as an int.
 *
 * <p><b>Thread-safety:</b> a holder of final fields; the table is as thread-safe as {@link PageTable}.
 */
final class Tables {

    static final long PT_BASE = 0x4000_0000L;
    static final long PT_SIZE = 16 * 4096;

    /** A walk's answer: a fault. */
    static final int FAULT = 0;
    /** A walk's answer: the expected ("old", or only) physical address. */
    static final int OLD = 1;
    /** A walk's answer: the physical address of a different mapping, reached through a reused table. */
    static final int OTHER = 2;
    /** A walk's answer: something else (a wrong address). */
    static final int WRONG = 3;

    final PhysicalMemory memory = HeapPhysicalMemory.create(PT_BASE, PT_SIZE);
    final LifoPageAllocator allocator = new LifoPageAllocator(PT_BASE, PT_SIZE);

    PageTable create() {
        return PageTable.create(Arm64Lpae4kFormat.INSTANCE, memory, allocator);
    }

    /** @return {@link #FAULT}, {@link #OLD} if {@code r} reaches {@code old}, {@link #OTHER} if {@code other}, else {@link #WRONG} */
    static int answer(WalkResult r, long old, long other) {
        if (!(r instanceof WalkResult.Translation t)) {
            return FAULT;
        }
        return t.pa() == old ? OLD : t.pa() == other ? OTHER : WRONG;
    }
}
