package dev.vcmm;

import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemorySpec;

import java.util.Arrays;
import java.util.Objects;

/**
 * The chunk sizes a physical allocation may be made of, largest first: a buffer is covered with as
 * many of the largest chunks as fit, then the next size, and so on, so that a large buffer needs few
 * TLB entries. Each size is a block order of the {@link BlockAllocator} (order {@code k} is
 * {@code 4096 << k} bytes).
 *
 * <p><b>Thread-safety:</b> immutable.
 *
 * <p>The original VCMM used {@link #VCMM} (the ARMv7 short-descriptor page sizes); {@link #HUGE} suits
 * the 4K-granule ARMv8 and x86-64 formats; {@link #PAGES_4K} is the baseline of single pages.
 */
public final class ChunkPolicy {

    /** 16M, 1M, 64K, 4K: the ARMv7 supersection, section, large page and small page of the original VCMM. */
    public static final ChunkPolicy VCMM = of(16L << 20, 1L << 20, 64L << 10, 4L << 10);

    /** 1G, 2M, 4K: the block and page sizes of the 4K-granule ARMv8 and x86-64 page tables. */
    public static final ChunkPolicy HUGE = of(1L << 30, 2L << 20, 4L << 10);

    /** 4K pages only. */
    public static final ChunkPolicy PAGES_4K = of(4L << 10);

    private final int[] orders;

    private ChunkPolicy(int[] orders) {
        this.orders = orders;
    }

    /**
     * Creates a policy from its chunk sizes.
     *
     * @param chunkSizes powers of two from 4K to {@code 4096 << MemorySpec.MAX_MAX_ORDER}, strictly
     *                   descending (largest first, no duplicates), at least one
     * @return the policy
     * @throws IllegalArgumentException naming the offending size if any rule is broken
     */
    public static ChunkPolicy of(long... chunkSizes) {
        Objects.requireNonNull(chunkSizes, "chunkSizes");
        if (chunkSizes.length == 0) {
            throw new IllegalArgumentException("chunkSizes must name at least one size");
        }
        long max = BlockAllocator.orderSize(MemorySpec.MAX_MAX_ORDER);
        int[] orders = new int[chunkSizes.length];
        for (int i = 0; i < chunkSizes.length; i++) {
            long size = chunkSizes[i];
            if (size < BlockAllocator.PAGE_SIZE || size > max || Long.bitCount(size) != 1) {
                throw new IllegalArgumentException("chunkSizes[" + i + "]=" + size
                    + " must be a power of two in [4096, " + max + "]");
            }
            if (i > 0 && size >= chunkSizes[i - 1]) {
                throw new IllegalArgumentException("chunkSizes[" + i + "]=" + size + " must be smaller than chunkSizes["
                    + (i - 1) + "]=" + chunkSizes[i - 1] + " (largest first, no duplicates)");
            }
            orders[i] = BlockAllocator.orderFor(size);
        }
        return new ChunkPolicy(orders);
    }

    /**
     * Parses the {@link #toString()} form, e.g. {@code 16M+1M+64K+4K}; sizes are bytes with an optional
     * {@code K}, {@code M} or {@code G} suffix (powers of 1024).
     *
     * @param text the text, as {@link #toString()} writes it
     * @return the policy
     * @throws IllegalArgumentException if the text is not a valid policy
     */
    public static ChunkPolicy parse(String text) {
        Objects.requireNonNull(text, "text");
        String[] parts = text.trim().split("\\+", -1);
        long[] sizes = new long[parts.length];
        for (int i = 0; i < parts.length; i++) {
            String p = parts[i].trim().toUpperCase(java.util.Locale.ROOT);
            int shift = 0;
            if (p.endsWith("K")) {
                shift = 10;
            } else if (p.endsWith("M")) {
                shift = 20;
            } else if (p.endsWith("G")) {
                shift = 30;
            }
            String digits = shift == 0 ? p : p.substring(0, p.length() - 1);
            try {
                long n = Long.parseLong(digits);
                if (n <= 0 || n > (Long.MAX_VALUE >> shift)) {
                    throw new NumberFormatException();
                }
                sizes[i] = n << shift;
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("policy=\"" + text + "\": chunk size \"" + parts[i]
                    + "\" is not a positive size such as 4K, 64K, 2M or 1G", e);
            }
        }
        return of(sizes);
    }

    /** {@return the block orders, largest first; a copy.} */
    public int[] orders() {
        return orders.clone();
    }

    /** {@return the number of chunk sizes.} */
    public int size() {
        return orders.length;
    }

    /**
     * {@return the {@code i}-th block order, {@code 0} being the largest.}
     *
     * @param i the index
     */
    public int order(int i) {
        return orders[i];
    }

    /** {@return the chunk sizes in bytes, largest first; a fresh array.} */
    public long[] chunkSizes() {
        long[] sizes = new long[orders.length];
        for (int i = 0; i < orders.length; i++) {
            sizes[i] = BlockAllocator.orderSize(orders[i]);
        }
        return sizes;
    }

    /** {@return the order of the largest chunk.} */
    public int largestOrder() {
        return orders[0];
    }

    /** {@return the order of the smallest chunk.} */
    public int smallestOrder() {
        return orders[orders.length - 1];
    }

    /** {@return the smallest chunk size in bytes: every allocation's length is a multiple of it.} */
    public long smallestChunkSize() {
        return BlockAllocator.orderSize(smallestOrder());
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof ChunkPolicy p && Arrays.equals(orders, p.orders);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(orders);
    }

    /** @return the sizes joined by {@code +}, e.g. {@code 16M+1M+64K+4K}. */
    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder();
        for (int order : orders) {
            if (!sb.isEmpty()) {
                sb.append('+');
            }
            sb.append(Sizes.format(BlockAllocator.orderSize(order)));
        }
        return sb.toString();
    }
}
