package dev.vcmm;

import dev.vcmm.PhysMem.Chunk;
import dev.vcmm.spi.BlockAllocator;

import java.util.ArrayList;
import java.util.List;

/**
 * Wraps a given physical range of a memory type as a {@link PhysMem} (the RFC's {@code vcm_map_phys_addr}): a
 * firmware carve-out, a frame buffer at a fixed address, a range a boot loader filled. The range is cut into the
 * largest naturally aligned blocks that tile it (no larger than the allocator's largest block), and each block is
 * taken with {@link BlockAllocator#allocAt}; if any of them is not free, every block taken is given back and the call
 * is refused.
 *
 * <p>The memory is <em>not</em> zeroed: the point of naming an address is to reach what is there. That is the one
 * exception to zero on handoff, and why the range must be named exactly (a caller cannot receive blocks it did not
 * name). Freed as any allocation, with {@link PhysMem#free()}.
 *
 * <p><b>Thread-safety:</b> stateless; as concurrent as the allocator's {@code allocAt} and {@code free}. Two racing
 * wraps of overlapping ranges: at most one succeeds.
 */
final class PhysWrap {

    private PhysWrap() {
    }

    /** See {@link MemoryType#physAllocAt(long, long)}. */
    static PhysMem wrap(MemoryType type, long pa, long length) {
        if (length <= 0 || ((pa | length) & (BlockAllocator.PAGE_SIZE - 1)) != 0) {
            throw new IllegalArgumentException(String.format("pa=0x%x length=0x%x must be a positive multiple of 4096 at a"
                + " multiple of 4096", pa, length));
        }
        if (pa < type.base() || pa - type.base() > type.size() - length) {
            throw new IllegalArgumentException(String.format("range pa=0x%x length=0x%x is outside memoryType=%s [0x%x, 0x%x)",
                pa, length, type.name(), type.base(), type.base() + type.size()));
        }
        BlockAllocator allocator = type.allocator();
        int maxOrder = allocator.maxOrder();
        List<Chunk> taken = new ArrayList<>();
        long at = pa;
        long end = pa + length;
        try {
            while (at < end) {
                int order = Math.min(maxOrder, Long.numberOfTrailingZeros(at) - 12);
                while (BlockAllocator.orderSize(order) > end - at) {
                    order--;
                }
                if (!allocator.allocAt(at, order)) {
                    throw new VcmmBusyException(String.format("busy: memoryType=%s block pa=0x%x of %s inside pa=0x%x"
                        + " length=0x%x is not free (allocated, or held in a thread's allocator cache); nothing taken",
                        type.name(), at, Sizes.format(BlockAllocator.orderSize(order)), pa, length));
                }
                taken.add(new Chunk(at, order));
                at += BlockAllocator.orderSize(order);
            }
        } catch (RuntimeException | Error e) {
            for (int i = taken.size() - 1; i >= 0; i--) {
                try {
                    allocator.free(taken.get(i).pa(), taken.get(i).order());
                } catch (RuntimeException undo) {
                    e.addSuppressed(undo);
                }
            }
            throw e;
        }
        int[] orders = taken.stream().mapToInt(Chunk::order).distinct().sorted().toArray();
        long[] sizes = new long[orders.length];
        for (int i = 0; i < orders.length; i++) {
            sizes[i] = BlockAllocator.orderSize(orders[orders.length - 1 - i]);
        }
        return new PhysMem(type, length, ChunkPolicy.of(sizes), PhysAllocOptions.CONTIGUOUS, taken, taken);
    }
}
