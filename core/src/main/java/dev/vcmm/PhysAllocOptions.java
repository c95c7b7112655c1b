package dev.vcmm;

import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemorySpec;

/**
 * How {@link MemoryType#physAlloc(long, ChunkPolicy, PhysAllocOptions)} lays out an allocation.
 *
 * <p><b>Thread-safety:</b> immutable.
 *
 * @param contiguous {@code true} for one physically contiguous range (for devices without an MMU);
 *                   {@code false} lets the chunks scatter
 * @param alignment  a power of two from 4K up: a contiguous allocation starts at a multiple of it; in a
 *                   scattered allocation every chunk is at least that large, and so at least that
 *                   aligned (chunk sizes of the policy below it are not used)
 */
public record PhysAllocOptions(boolean contiguous, long alignment) {

    /** Scattered chunks, 4K alignment: the default of {@link MemoryType#physAlloc(long, ChunkPolicy)}. */
    public static final PhysAllocOptions DEFAULT = new PhysAllocOptions(false, BlockAllocator.PAGE_SIZE);

    /** One contiguous range, 4K aligned. */
    public static final PhysAllocOptions CONTIGUOUS = new PhysAllocOptions(true, BlockAllocator.PAGE_SIZE);

    /**
     * Validates the alignment.
     *
     * @throws IllegalArgumentException if {@code alignment} is not a power of two in
     *                                  {@code [4096, 4096 << MemorySpec.MAX_MAX_ORDER]}
     */
    public PhysAllocOptions {
        long max = BlockAllocator.orderSize(MemorySpec.MAX_MAX_ORDER);
        if (alignment < BlockAllocator.PAGE_SIZE || alignment > max || Long.bitCount(alignment) != 1) {
            throw new IllegalArgumentException("alignment=" + alignment + " must be a power of two in [4096, " + max + "]");
        }
    }

    /**
     * {@return these options with {@link #contiguous()} set to {@code contiguous}.}
     *
     * @param contiguous whether the chunks must be physically contiguous
     */
    public PhysAllocOptions withContiguous(boolean contiguous) {
        return new PhysAllocOptions(contiguous, alignment);
    }

    /**
     * {@return these options with {@link #alignment()} set to {@code alignment} (validated).}
     *
     * @param alignment the alignment in bytes, a power of two
     */
    public PhysAllocOptions withAlignment(long alignment) {
        return new PhysAllocOptions(contiguous, alignment);
    }

    @Override
    public String toString() {
        return (contiguous ? "contiguous" : "scattered") + ", alignment=" + Sizes.format(alignment);
    }
}
