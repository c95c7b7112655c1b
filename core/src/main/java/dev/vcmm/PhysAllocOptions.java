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
 * @param coherent   the RFC's {@code VCM_COHERENT}: the memory is shared and must stay coherent without cache
 *                   maintenance, so every page-table mapping of it is at most non-cached (a cacheable policy of the
 *                   reservation becomes {@link Caching#NON_CACHED}; {@link Caching#DEVICE} stays), as Linux's
 *                   {@code dma_alloc_coherent} maps memory for a device that does not snoop the CPU's caches. HOST
 *                   mappings ({@code mmap}) cannot choose a cache policy and are unaffected
 */
public record PhysAllocOptions(boolean contiguous, long alignment, boolean coherent) {

    /** Scattered chunks, 4K alignment: the default of {@link MemoryType#physAlloc(long, ChunkPolicy)}. */
    public static final PhysAllocOptions DEFAULT = new PhysAllocOptions(false, BlockAllocator.PAGE_SIZE);

    /** One contiguous range, 4K aligned. */
    public static final PhysAllocOptions CONTIGUOUS = new PhysAllocOptions(true, BlockAllocator.PAGE_SIZE);

    /**
     * Options that are not coherent.
     *
     * @param contiguous whether the chunks must be physically contiguous
     * @param alignment  the alignment, validated as by the canonical constructor
     */
    public PhysAllocOptions(boolean contiguous, long alignment) {
        this(contiguous, alignment, false);
    }

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
        return new PhysAllocOptions(contiguous, alignment, coherent);
    }

    /**
     * {@return these options with {@link #coherent()} set to {@code coherent}}
     *
     * @param coherent whether every mapping of the memory is at most non-cached
     */
    public PhysAllocOptions withCoherent(boolean coherent) {
        return new PhysAllocOptions(contiguous, alignment, coherent);
    }

    /**
     * {@return these options with {@link #alignment()} set to {@code alignment} (validated).}
     *
     * @param alignment the alignment in bytes, a power of two
     */
    public PhysAllocOptions withAlignment(long alignment) {
        return new PhysAllocOptions(contiguous, alignment, coherent);
    }

    @Override
    public String toString() {
        return (contiguous ? "contiguous" : "scattered") + ", alignment=" + Sizes.format(alignment) + (coherent ? ", coherent" : "");
    }
}
