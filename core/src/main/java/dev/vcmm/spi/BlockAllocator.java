package dev.vcmm.spi;

/**
 * Allocator of naturally aligned blocks of physical memory by order: a block of order {@code k} is
 * {@code 4096 << k} bytes long and starts at a physical address that is a multiple of its length.
 * Order 0 is 4 KiB, 4 is 64 KiB, 8 is 1 MiB, 9 is 2 MiB, 12 is 16 MiB, 18 is 1 GiB.
 *
 * <p><b>Thread-safety:</b> implementations are thread-safe. Whether they are lock-free, and what
 * exactly a concurrent failure means, each implementation states in its own documentation.
 *
 * <p><b>Errors:</b> expected outcomes (no block free) are return values; bad input (an order out of
 * range, an address outside the pool or not aligned to the order) is an
 * {@link IllegalArgumentException}, and a state error (double free, a free with another order than
 * the allocation's, any call after {@link #close()}) is an {@link IllegalStateException}. Neither
 * changes the allocator.
 */
public interface BlockAllocator extends AutoCloseable {

    /** The value {@link #alloc(int)} returns when no block of the order is free: not a valid address. */
    long NONE = -1L;

    /** log2 of the smallest block, 4 KiB. */
    int PAGE_SHIFT = 12;

    /** The smallest block, 4 KiB. */
    long PAGE_SIZE = 1L << PAGE_SHIFT;

    /**
     * {@return the number of bytes in a block of {@code order}}
     *
     * @param order block order: 0 is 4 KiB, each order doubles
     */
    static long orderSize(int order) {
        return 1L << (PAGE_SHIFT + order);
    }

    /**
     * {@return the smallest order whose block holds {@code bytes} bytes (0 for anything up to 4 KiB)}
     *
     * @param bytes a length in bytes
     * @throws IllegalArgumentException if {@code bytes} is not positive
     */
    static int orderFor(long bytes) {
        if (bytes <= 0) {
            throw new IllegalArgumentException("bytes=" + bytes + " must be positive");
        }
        if (bytes <= PAGE_SIZE) {
            return 0;
        }
        return 64 - Long.numberOfLeadingZeros(bytes - 1) - PAGE_SHIFT;
    }

    /** {@return the physical address of the first byte managed} */
    long base();

    /** {@return the number of bytes managed, a multiple of 4 KiB} */
    long size();

    /** {@return the largest order this allocator hands out (bounded by the pool's size)} */
    int maxOrder();

    /**
     * Takes a free block of {@code order}.
     *
     * @param order block order, {@code [0, maxOrder()]}
     * @return its physical address, naturally aligned, or {@link #NONE} if no block of the order is free
     * @throws IllegalArgumentException if {@code order} is outside {@code [0, maxOrder()]}
     * @throws IllegalStateException    if the allocator is closed
     */
    long alloc(int order);

    /**
     * Takes up to {@code count} free blocks of {@code order} in one call and writes their addresses to
     * {@code out[offset]}, {@code out[offset + 1]}, ...: for many small chunks at once, where an
     * implementation can take several blocks with one atomic step. Not all-or-nothing: the blocks taken
     * are the caller's whatever the count, each to be freed with {@link #free(long, int)}.
     *
     * <p>This default takes them one {@link #alloc(int)} at a time and stops at the first {@link #NONE};
     * an implementation may take several at once but must keep that meaning: a result below
     * {@code count} means what {@link #alloc(int)} returning {@link #NONE} means in that implementation.
     *
     * @param order  the order of every block
     * @param out    receives the addresses; {@code out[offset, offset + result)} is written, nothing else
     * @param offset the first index of {@code out} written
     * @param count  how many blocks are wanted, {@code >= 0}
     * @return how many blocks were taken, in {@code [0, count]}
     * @throws IllegalArgumentException  if {@code order} is outside {@code [0, maxOrder()]}
     * @throws IndexOutOfBoundsException if {@code [offset, offset + count)} is not inside {@code out}
     * @throws IllegalStateException     if the allocator is closed (blocks taken before a concurrent close
     *                                   are then lost with the allocator)
     */
    default int allocBulk(int order, long[] out, int offset, int count) {
        if (order < 0 || order > maxOrder()) {
            throw new IllegalArgumentException("order=" + order + " is outside [0, " + maxOrder() + "]");
        }
        java.util.Objects.checkFromIndexSize(offset, count, out.length);
        int n = 0;
        while (n < count) {
            long pa = alloc(order);
            if (pa == NONE) {
                break;
            }
            out[offset + n++] = pa;
        }
        return n;
    }

    /**
     * Takes the specific block {@code [pa, pa + orderSize(order))} if all of it is free.
     *
     * @param pa    physical address of the block, aligned to its size
     * @param order block order, {@code [0, maxOrder()]}
     * @return {@code true} if the block is now the caller's; {@code false} if any part of it is in use
     * @throws IllegalArgumentException if the order is out of range, or {@code pa} is outside the pool or
     *                                  not aligned to the order
     * @throws IllegalStateException    if the allocator is closed
     */
    boolean allocAt(long pa, int order);

    /**
     * Returns a block taken by {@link #alloc(int)} or {@link #allocAt(long, int)} with the same order.
     *
     * @param pa    physical address of the block
     * @param order the order it was taken with
     * @throws IllegalArgumentException if the order is out of range, or {@code pa} is outside the pool or
     *                                  not aligned to the order
     * @throws IllegalStateException    if the block is not allocated with that order (double free, wrong
     *                                  order, never allocated) or the allocator is closed
     */
    void free(long pa, int order);

    /** {@return a snapshot of the allocator's statistics; exact when no operation runs concurrently} */
    AllocatorStats stats();

    /** {@return {@code true} once {@link #close()} has been called} */
    boolean isClosed();

    /** Releases the metadata. Idempotent; every later call fails with an {@link IllegalStateException}. */
    @Override
    void close();
}
