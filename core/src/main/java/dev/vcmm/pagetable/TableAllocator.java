package dev.vcmm.pagetable;

import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.PhysicalMemory;

import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Hands out zeroed, naturally aligned table memory: tables of 4 KiB or more are buddy blocks of their own;
 * smaller ones (the 1 KiB level-2 tables of the Armv7 short-descriptor format) are carved from 4 KiB
 * pages by a small slab, four to a page, and a page goes back to the buddy when its last table is freed.
 *
 * <p><b>Thread-safety:</b> thread-safe. Whole-page tables need only the buddy allocator (lock-free). The
 * slab keeps one occupancy mask per page, updated by compare-and-set; its page index is a
 * {@link ConcurrentHashMap}, whose inserts (one per new slab page, not per table) lock a single bin.
 */
final class TableAllocator {

    private static final int DEAD = -1; // a slab page being returned: looks full to every allocator

    private final PhysicalMemory memory;
    private final BlockAllocator allocator;
    private final ConcurrentHashMap<Long, AtomicInteger> slabs = new ConcurrentHashMap<>();
    private final AtomicLong bytesInUse = new AtomicLong();

    TableAllocator(PhysicalMemory memory, BlockAllocator allocator) {
        this.memory = memory;
        this.allocator = allocator;
    }

    long bytesInUse() {
        return bytesInUse.get();
    }

    /** @return the physical address of a zeroed table of {@code bytes}, aligned to {@code bytes} */
    long alloc(long bytes) {
        long pa = bytes >= BlockAllocator.PAGE_SIZE ? allocBlock(bytes) : allocSlab((int) bytes);
        memory.fill(pa, bytes, (byte) 0);
        bytesInUse.addAndGet(bytes);
        return pa;
    }

    void free(long pa, long bytes) {
        bytesInUse.addAndGet(-bytes);
        if (bytes >= BlockAllocator.PAGE_SIZE) {
            allocator.free(pa, BlockAllocator.orderFor(bytes));
        } else {
            freeSlab(pa, (int) bytes);
        }
    }

    /** Returns the slab pages still held (all their tables must have been freed). */
    void close() {
        for (Long page : slabs.keySet()) {
            AtomicInteger mask = slabs.remove(page);
            if (mask != null) {
                allocator.free(page, 0);
            }
        }
    }

    private long allocBlock(long bytes) {
        long pa = allocator.alloc(BlockAllocator.orderFor(bytes));
        if (pa == BlockAllocator.NONE) {
            throw new PageTableMemoryException("no free block of " + bytes + " bytes for a page table in " + allocator);
        }
        return pa;
    }

    private long allocSlab(int bytes) {
        int slots = (int) (BlockAllocator.PAGE_SIZE / bytes);
        int full = (1 << slots) - 1;
        for (var e : slabs.entrySet()) {
            AtomicInteger mask = e.getValue();
            for (int m = mask.get(); m != DEAD && m != full; m = mask.get()) {
                int slot = Integer.numberOfTrailingZeros(~m);
                if (mask.compareAndSet(m, m | (1 << slot))) {
                    return e.getKey() + (long) slot * bytes;
                }
            }
        }
        long page = allocBlock(BlockAllocator.PAGE_SIZE);
        slabs.put(page, new AtomicInteger(1));
        return page;
    }

    private void freeSlab(long pa, int bytes) {
        long page = pa & -BlockAllocator.PAGE_SIZE;
        int bit = 1 << (int) ((pa - page) / bytes);
        AtomicInteger mask = slabs.get(page);
        if (mask == null) {
            throw new IllegalStateException("table 0x" + Long.toHexString(pa) + " is not in a slab page");
        }
        for (;;) {
            int m = mask.get();
            if (m == DEAD || (m & bit) == 0) {
                throw new IllegalStateException("table 0x" + Long.toHexString(pa) + " freed twice");
            }
            int nm = m & ~bit;
            if (nm == 0) {
                // last table of the page: retire it so no allocator picks it, then return it
                if (mask.compareAndSet(m, DEAD)) {
                    slabs.remove(page, mask);
                    allocator.free(page, 0);
                    return;
                }
            } else if (mask.compareAndSet(m, nm)) {
                return;
            }
        }
    }
}
