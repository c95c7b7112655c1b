package dev.vcmm.spi;

import java.util.Arrays;

/**
 * An immutable snapshot of a {@link BlockAllocator}'s state.
 *
 * <p><b>Thread-safety:</b> immutable. A snapshot taken while other threads allocate is a best-effort
 * view (each figure read once, not all at one instant); taken at a quiescent point it is exact and
 * {@code freeBytes + cachedBytes + allocatedBytes == totalBytes}.
 *
 * @param totalBytes        bytes managed
 * @param freeBytes         bytes in free blocks of the shared pool
 * @param cachedBytes       bytes parked free in per-thread caches (free, but only to their thread)
 * @param allocatedBytes    bytes handed out, {@code totalBytes - freeBytes - cachedBytes}
 * @param freeBlocksByOrder number of free blocks of each order, index = order
 * @param largestFreeBlock  bytes in the largest free block of the shared pool, 0 if none
 */
public record AllocatorStats(long totalBytes, long freeBytes, long cachedBytes, long allocatedBytes,
                             long[] freeBlocksByOrder, long largestFreeBlock) {

    /** Copies the per-order array so the snapshot stays immutable. */
    public AllocatorStats {
        freeBlocksByOrder = freeBlocksByOrder.clone();
    }

    /** {@return the number of free blocks of each order, a copy} */
    @Override
    public long[] freeBlocksByOrder() {
        return freeBlocksByOrder.clone();
    }

    /**
     * {@return the number of free bytes in blocks of {@code order}}
     *
     * @param order block order, {@code [0, freeBlocksByOrder().length)}
     */
    public long freeBytesOfOrder(int order) {
        return freeBlocksByOrder[order] * BlockAllocator.orderSize(order);
    }

    /**
     * Linux's "unusable free space index" for {@code order}: the share of free bytes that sits in blocks
     * too small to serve a request of that order, {@code (free - free in blocks >= order) / free}.
     *
     * @param order the order of the request
     * @return a figure in {@code [0, 1]}; 0 when nothing is free
     */
    public double unusableFreeIndex(int order) {
        if (freeBytes == 0) {
            return 0.0;
        }
        long usable = 0;
        for (int k = Math.max(0, order); k < freeBlocksByOrder.length; k++) {
            usable += freeBytesOfOrder(k);
        }
        return (double) (freeBytes - usable) / (double) freeBytes;
    }

    /**
     * External fragmentation: the {@link #unusableFreeIndex(int) unusable free space index} at the largest
     * order, i.e. the share of free bytes that is not in blocks of the largest size. 0 when all free memory
     * is in largest blocks, approaching 1 when it is scattered in small ones. (A pool whose size is not a
     * multiple of the largest block starts above 0: its tail can never form a largest block.)
     *
     * @return a figure in {@code [0, 1]}
     */
    public double fragmentation() {
        return unusableFreeIndex(freeBlocksByOrder.length - 1);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof AllocatorStats s
            && totalBytes == s.totalBytes && freeBytes == s.freeBytes && cachedBytes == s.cachedBytes
            && allocatedBytes == s.allocatedBytes && largestFreeBlock == s.largestFreeBlock
            && Arrays.equals(freeBlocksByOrder, s.freeBlocksByOrder);
    }

    @Override
    public int hashCode() {
        return Long.hashCode(totalBytes) * 31 + Long.hashCode(freeBytes) * 17 + Arrays.hashCode(freeBlocksByOrder);
    }

    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder("AllocatorStats{total=").append(totalBytes)
            .append(", free=").append(freeBytes)
            .append(", cached=").append(cachedBytes)
            .append(", allocated=").append(allocatedBytes)
            .append(", largestFree=").append(largestFreeBlock)
            .append(String.format(", fragmentation=%.3f", fragmentation()))
            .append(", freeBlocksByOrder=[");
        for (int k = 0; k < freeBlocksByOrder.length; k++) {
            if (freeBlocksByOrder[k] != 0) {
                sb.append(' ').append(k).append(':').append(freeBlocksByOrder[k]);
            }
        }
        return sb.append(" ]}").toString();
    }
}
