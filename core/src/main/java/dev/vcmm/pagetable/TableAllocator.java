package dev.vcmm.pagetable;

import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.PhysicalMemory;

import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Hands out zeroed, naturally aligned table memory: tables of 4 KiB or more are buddy blocks of their own;
 * smaller ones (the 1 KiB level-2 tables of the Armv7 short-descriptor format) are carved from 4 KiB
 * pages by a small slab, four to a page. A slab page whose last table is freed is kept for reuse if it is
 * the only empty one (so a table freed and allocated again, as a whole-span unmap followed by a map does,
 * does not send a page back to the buddy and fetch it again each time); otherwise it goes back to the buddy.
 * {@link #close()} returns every page.
 *
 * <p><b>Thread-safety:</b> thread-safe. Whole-page tables need only the buddy allocator (lock-free). The
 * slab keeps one occupancy mask per page, updated by compare-and-set; its page index is a
 * {@link ConcurrentHashMap}, whose inserts (one per new slab page, not per table) lock a single bin. The
 * counts of pages with a free slot and of empty pages are hints kept by the same compare-and-sets: they
 * steer the search and the keeping, never decide who owns a slot.
 */
final class TableAllocator {

    private static final int DEAD = -1; // a slab page being returned: looks full to every allocator
    /** Empty slab pages kept for reuse. */
    private static final int SPARE_PAGES = 1;

    private final PhysicalMemory memory;
    private final BlockAllocator allocator;
    private final ConcurrentHashMap<Long, AtomicInteger> slabs = new ConcurrentHashMap<>();
    private final AtomicLong bytesInUse = new AtomicLong();
    private final AtomicLong bytesHeld = new AtomicLong();
    /** Slab pages with at least one free slot (a hint: when zero, allocation skips the search). */
    private final AtomicInteger pagesWithRoom = new AtomicInteger();
    /** Slab pages with no table in them, kept for reuse. */
    private final AtomicInteger emptyPages = new AtomicInteger();
    /** The slab page that last gave or took a slot, tried first; null at first. */
    private volatile Slab recent;

    /** A slab page and its occupancy mask. */
    private record Slab(long page, AtomicInteger mask) {
    }

    TableAllocator(PhysicalMemory memory, BlockAllocator allocator) {
        this.memory = memory;
        this.allocator = allocator;
    }

    long bytesInUse() {
        return bytesInUse.get();
    }

    /** {@return the bytes held from the block allocator: the tables, the free slots of slab pages, spare pages} */
    long bytesHeld() {
        return bytesHeld.get();
    }

    /** {@return the physical address of a zeroed table of {@code bytes}, aligned to {@code bytes}} */
    long alloc(long bytes) {
        long pa = bytes >= BlockAllocator.PAGE_SIZE ? allocBlock(bytes) : allocSlab((int) bytes);
        memory.fill(pa, bytes, (byte) 0);
        bytesInUse.addAndGet(bytes);
        return pa;
    }

    void free(long pa, long bytes) {
        bytesInUse.addAndGet(-bytes);
        if (bytes >= BlockAllocator.PAGE_SIZE) {
            freeBlock(pa, bytes);
        } else {
            freeSlab(pa, (int) bytes);
        }
    }

    /** Returns the slab pages still held (all their tables must have been freed). */
    void close() {
        for (Long page : slabs.keySet()) {
            AtomicInteger mask = slabs.remove(page);
            if (mask != null) {
                freeBlock(page, BlockAllocator.PAGE_SIZE);
            }
        }
    }

    private long allocBlock(long bytes) {
        long pa = allocator.alloc(BlockAllocator.orderFor(bytes));
        if (pa == BlockAllocator.NONE) {
            throw new PageTableMemoryException("no free block of " + bytes + " bytes for a page table in " + allocator);
        }
        bytesHeld.addAndGet(bytes);
        return pa;
    }

    private void freeBlock(long pa, long bytes) {
        bytesHeld.addAndGet(-bytes);
        allocator.free(pa, BlockAllocator.orderFor(bytes));
    }

    private long allocSlab(int bytes) {
        int slots = (int) (BlockAllocator.PAGE_SIZE / bytes);
        int full = (1 << slots) - 1;
        Slab r = recent;
        if (r != null) {
            long pa = claim(r.page(), r.mask(), bytes, full); // a retired page is DEAD: claim refuses it
            if (pa != BlockAllocator.NONE) {
                return pa;
            }
        }
        if (pagesWithRoom.get() > 0) {
            for (var e : slabs.entrySet()) {
                long pa = claim(e.getKey(), e.getValue(), bytes, full);
                if (pa != BlockAllocator.NONE) {
                    recent = new Slab(e.getKey(), e.getValue());
                    return pa;
                }
            }
        }
        long page = allocBlock(BlockAllocator.PAGE_SIZE);
        pagesWithRoom.incrementAndGet(); // one slot taken of several
        AtomicInteger mask = new AtomicInteger(1);
        slabs.put(page, mask);
        recent = new Slab(page, mask);
        return page;
    }

    /** {@return a slot claimed in {@code page}, or NONE if it has none free} */
    private long claim(long page, AtomicInteger mask, int bytes, int full) {
        for (int m = mask.get(); m != DEAD && m != full; m = mask.get()) {
            int slot = Integer.numberOfTrailingZeros(~m);
            int nm = m | (1 << slot);
            if (mask.compareAndSet(m, nm)) {
                if (m == 0) {
                    emptyPages.decrementAndGet();
                }
                if (nm == full) {
                    pagesWithRoom.decrementAndGet();
                }
                return page + (long) slot * bytes;
            }
        }
        return BlockAllocator.NONE;
    }

    private void freeSlab(long pa, int bytes) {
        long page = pa & -BlockAllocator.PAGE_SIZE;
        int full = (1 << (int) (BlockAllocator.PAGE_SIZE / bytes)) - 1;
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
            if (nm == 0) { // the last table of the page: keep it as the spare, or retire it
                boolean keep = emptyPages.incrementAndGet() <= SPARE_PAGES; // reserve the spare's place first
                if (mask.compareAndSet(m, keep ? 0 : DEAD)) {
                    if (keep) {
                        if (m == full) {
                            pagesWithRoom.incrementAndGet();
                        }
                        Slab r = recent;
                        if (r == null || r.mask() != mask) {
                            recent = new Slab(page, mask);
                        }
                        return;
                    }
                    emptyPages.decrementAndGet();
                    if (m != full) {
                        pagesWithRoom.decrementAndGet();
                    }
                    slabs.remove(page, mask); // DEAD looks full to every allocator: nobody claims it now
                    freeBlock(page, BlockAllocator.PAGE_SIZE);
                    return;
                }
                emptyPages.decrementAndGet(); // lost a race on the mask: undo the reservation, retry
            } else if (mask.compareAndSet(m, nm)) {
                if (m == full) {
                    pagesWithRoom.incrementAndGet();
                }
                return;
            }
        }
    }
}
