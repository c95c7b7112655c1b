package dev.vcmm.property;

import dev.vcmm.spi.BlockAllocator;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The sequential model of a buddy pool: a sorted set of maximal free blocks and a sorted map of live
 * blocks, with the buddy rules written out plainly.
 *
 * <p><b>Thread-safety:</b> none; one test thread owns a model.
 *
 * <p>The pool {@code [base, base + size)} is first cut greedily into top-level blocks: at each address
 * the largest naturally aligned block of order at most {@link #maxOrder} that still fits. Naturally
 * aligned blocks nest or are disjoint, so every valid block lies inside exactly one top-level block,
 * and the free memory of an eagerly coalescing buddy allocator is exactly the set of <em>maximal</em>
 * all-free valid blocks: a free block whose buddy is also free is merged into their parent unless the
 * parent is above {@code maxOrder} or sticks out of the pool. {@link #take} splits a free block down to
 * the requested one; {@link #give} merges upwards. The model does not choose addresses: the system under
 * test does, and the model checks and follows.
 */
public final class BuddyModel {

    final long base;
    final long end;
    final int maxOrder;
    private final TreeMap<Long, Integer> free = new TreeMap<>();
    private final TreeMap<Long, Integer> live = new TreeMap<>();
    private final List<long[]> liveList = new ArrayList<>();
    private final Map<Long, Integer> liveIndex = new java.util.HashMap<>();
    private final long[] freeCount;
    private long liveBytes;

    public BuddyModel(long base, long size, int maxOrder) {
        this.base = base;
        this.end = base + size;
        this.maxOrder = maxOrder;
        this.freeCount = new long[maxOrder + 1];
        for (long pa = base; pa < end; ) {
            int k = topOrderAt(pa);
            addFree(pa, k);
            pa += BlockAllocator.orderSize(k);
        }
    }

    /** @return the order of the greedy top-level block starting at {@code pa}. */
    private int topOrderAt(long pa) {
        int k = maxOrder;
        while ((pa & (BlockAllocator.orderSize(k) - 1)) != 0 || pa + BlockAllocator.orderSize(k) > end) {
            k--;
        }
        return k;
    }

    /** @return how many blocks of each order the pool is cut into when everything is free. */
    public static long[] canonicalFreeBlocks(long base, long size, int maxOrder) {
        return new BuddyModel(base, size, maxOrder).freeBlocksByOrder();
    }

    /** @return whether {@code [pa, pa + orderSize(order))} is a block this pool can hand out. */
    public boolean isValidBlock(long pa, int order) {
        if (order < 0 || order > maxOrder) {
            return false;
        }
        long s = BlockAllocator.orderSize(order);
        return pa >= base && pa < end && (pa & (s - 1)) == 0 && pa + s <= end;
    }

    /** @return whether every page of the block is free (possibly parked in a thread cache). */
    public boolean isFree(long pa, int order) {
        return containingFree(pa, order) != null;
    }

    /** @return whether any page of {@code [pa, pa + orderSize(order))} belongs to a live block. */
    public boolean overlapsLive(long pa, int order) {
        Map.Entry<Long, Integer> e = live.floorEntry(pa + BlockAllocator.orderSize(order) - 1);
        return e != null && e.getKey() + BlockAllocator.orderSize(e.getValue()) > pa;
    }

    /** @return the live block overlapping {@code [pa, pa + orderSize(order))}, for messages, or null. */
    public String liveOverlapping(long pa, int order) {
        Map.Entry<Long, Integer> e = live.floorEntry(pa + BlockAllocator.orderSize(order) - 1);
        return e == null ? null : block(e.getKey(), e.getValue());
    }

    /** @return whether some free block of order at least {@code order} exists. */
    public boolean hasFreeOfAtLeast(int order) {
        for (int k = order; k <= maxOrder; k++) {
            if (freeCount[k] != 0) {
                return true;
            }
        }
        return false;
    }

    /** @return the order the block {@code pa} is live with, or -1. */
    public int liveOrder(long pa) {
        Integer o = live.get(pa);
        return o == null ? -1 : o;
    }

    public int liveCount() {
        return liveList.size();
    }

    /** @return the live block at {@code index mod liveCount()} as {@code {pa, order}}. */
    public long[] liveAt(int index) {
        return liveList.get(Math.floorMod(index, liveList.size())).clone();
    }

    public long liveBytes() {
        return liveBytes;
    }

    public long freeBytes() {
        long b = 0;
        for (int k = 0; k <= maxOrder; k++) {
            b += freeCount[k] * BlockAllocator.orderSize(k);
        }
        return b;
    }

    public long[] freeBlocksByOrder() {
        return freeCount.clone();
    }

    public long largestFreeBlock() {
        for (int k = maxOrder; k >= 0; k--) {
            if (freeCount[k] != 0) {
                return BlockAllocator.orderSize(k);
            }
        }
        return 0;
    }

    /** Marks the free block {@code (pa, order)} live, splitting the maximal free block that holds it. */
    public void take(long pa, int order) {
        Map.Entry<Long, Integer> f = containingFree(pa, order);
        if (f == null) {
            throw new AssertionError("model: " + block(pa, order) + " is not free");
        }
        long cur = f.getKey();
        int k = f.getValue();
        removeFree(cur, k);
        while (k > order) {
            k--;
            long half = BlockAllocator.orderSize(k);
            if (pa >= cur + half) {
                addFree(cur, k);
                cur += half;
            } else {
                addFree(cur + half, k);
            }
        }
        live.put(pa, order);
        liveIndex.put(pa, liveList.size());
        liveList.add(new long[] {pa, order});
        liveBytes += BlockAllocator.orderSize(order);
    }

    /** Returns the live block {@code (pa, order)}, merging it with free buddies as far as they go. */
    public void give(long pa, int order) {
        if (liveOrder(pa) != order) {
            throw new AssertionError("model: " + block(pa, order) + " is not live");
        }
        live.remove(pa);
        int i = liveIndex.remove(pa);
        long[] last = liveList.remove(liveList.size() - 1);
        if (i < liveList.size()) {
            liveList.set(i, last);
            liveIndex.put(last[0], i);
        }
        liveBytes -= BlockAllocator.orderSize(order);
        int k = order;
        while (k < maxOrder) {
            long s = BlockAllocator.orderSize(k);
            long buddy = pa ^ s;
            long parent = Math.min(pa, buddy);
            if (parent < base || parent + 2 * s > end) {
                break;
            }
            Integer b = free.get(buddy);
            if (b == null || b != k) {
                break;
            }
            removeFree(buddy, k);
            pa = parent;
            k++;
        }
        addFree(pa, k);
    }

    private Map.Entry<Long, Integer> containingFree(long pa, int order) {
        Map.Entry<Long, Integer> f = free.floorEntry(pa);
        if (f != null && f.getKey() + BlockAllocator.orderSize(f.getValue()) >= pa + BlockAllocator.orderSize(order)) {
            return f;
        }
        return null;
    }

    private void addFree(long pa, int k) {
        free.put(pa, k);
        freeCount[k]++;
    }

    private void removeFree(long pa, int k) {
        free.remove(pa);
        freeCount[k]--;
    }

    /** @return {@code "0x8000_3000/o2"}-style text for a block. */
    public static String block(long pa, int order) {
        return "0x" + Long.toHexString(pa) + "/o" + order;
    }
}
