package dev.vcmm.space;

import java.util.SplittableRandom;

/**
 * Hands out ranges of one address space {@code [start, start + length)}: the reservation space of a VCM.
 *
 * <p><b>Thread-safety:</b> none. An instance is plain mutable state; the VCM that owns it guards every call,
 * queries included, with its own lock.
 *
 * <p><b>Addresses</b> are unsigned 64-bit values, so a space may sit anywhere, for example the x86-64
 * upper half {@code [0xffff_8000_0000_0000, 2^64)}, whose end is not representable: the space is given
 * by its start and length and no computation here overflows. Every address and length is a multiple of
 * the granule (a power of two of at least 4 KiB). A length is a positive signed {@code long}, so a space
 * holds at most {@code 2^63 - granule} bytes.
 *
 * <p><b>Policy:</b> {@link #allocate} is address-ordered first fit: it returns the lowest address at which
 * an aligned range of the requested length is free, so results depend only on the sequence of calls.
 * Exhaustion is an expected outcome, reported as {@link #NONE}, not an exception. {@link #free} accepts any
 * range that is entirely allocated (a whole allocation, part of one, or several adjacent ones) and
 * coalesces it with its free neighbours, so free ranges are always maximal: freeing everything leaves one
 * free range equal to the space.
 *
 * <p><b>Errors:</b> bad input (misaligned, non-positive, outside the space, wrapping past {@code 2^64})
 * throws {@link IllegalArgumentException} with {@code name=value} in its message; freeing a range that is
 * not entirely allocated throws {@link IllegalStateException}. Either way nothing has changed.
 *
 * <p><b>Complexity</b>, with {@code n} the number of free ranges: the free ranges are the nodes of a treap
 * keyed by start and augmented with the largest free length of each subtree, so {@link #allocateAt},
 * {@link #free} and {@link #isFree} take O(log n) expected time, the counters O(1). {@link #allocate}
 * walks the treap in address order, skipping every subtree whose largest range is shorter than the request
 * and testing the exact aligned fit of each range it reaches. A range of at least
 * {@code length + alignment - granule} bytes always fits, and a range shorter than {@code length} never
 * does, so the only ranges tested in vain are the <em>near misses</em>: at least {@code length} but too
 * short once their start is rounded up to the alignment. The cost is O((1 + k) log n), with {@code k} the
 * number of near misses below the result (or in the whole space, on failure). With
 * {@code alignment == granule} there are none, and allocation is O(log n). Each call allocates at most one
 * small node object and boxes nothing.
 */
public final class AddressSpaceAllocator {

    /**
     * What {@link #allocate} returns when no range fits: {@code -1L}, that is {@code 0xffff_ffff_ffff_ffff}.
     * It can never be the start of an allocation, because every start is a multiple of the granule and
     * this value is odd. Test for it with {@code == NONE}, never with {@code < 0}: in an upper-half space
     * every valid address is negative as a signed {@code long}.
     */
    public static final long NONE = -1L;

    /** The smallest granule: 4 KiB. */
    public static final long MIN_GRANULE = 4096;

    private static final long PRIORITY_SEED = 0x5eed_a110_ca7e_d5L;

    private final long start;
    private final long length;
    private final long granule;
    private final long granuleMask;
    /** Treap priorities: fixed seed, so the tree shape (and so the cost of each call) is reproducible. */
    private final SplittableRandom priorities = new SplittableRandom(PRIORITY_SEED);

    /** Root of the treap of free ranges, keyed by offset from {@link #start}. */
    private Node root;
    private int freeRangeCount;
    private long freeBytes;

    /**
     * Creates an allocator over {@code [start, start + length)}, all of it free.
     *
     * @param start   first address of the space (unsigned), a multiple of {@code granule}
     * @param length  bytes in the space: positive, a multiple of {@code granule}, and
     *                {@code start + length <= 2^64} (a space may end exactly at {@code 2^64})
     * @param granule the unit of every address and length: a power of two, at least {@link #MIN_GRANULE}
     * @throws IllegalArgumentException if any of these does not hold
     */
    public AddressSpaceAllocator(long start, long length, long granule) {
        if (Long.bitCount(granule) != 1 || granule < MIN_GRANULE) {
            throw new IllegalArgumentException("granule=" + hex(granule) + " must be a power of two >= " + hex(MIN_GRANULE));
        }
        if ((start & (granule - 1)) != 0) {
            throw new IllegalArgumentException("start=" + hex(start) + " must be a multiple of granule=" + hex(granule));
        }
        if (length <= 0 || (length & (granule - 1)) != 0) {
            throw new IllegalArgumentException("length=" + hex(length) + " must be a positive multiple of granule=" + hex(granule));
        }
        if (start != 0 && Long.compareUnsigned(length, -start) > 0) {
            throw new IllegalArgumentException("start=" + hex(start) + ", length=" + hex(length) + " wraps past 2^64");
        }
        this.start = start;
        this.length = length;
        this.granule = granule;
        this.granuleMask = granule - 1;
        this.root = new Node(0, length, priorities.nextInt());
        this.freeRangeCount = 1;
        this.freeBytes = length;
    }

    /** {@return the first address of the space (unsigned)} */
    public long start() {
        return start;
    }

    /** {@return the number of bytes in the space} */
    public long length() {
        return length;
    }

    /** {@return the unit of every address and length} */
    public long granule() {
        return granule;
    }

    /**
     * Reserves the lowest-addressed free range of {@code length} bytes whose start is a multiple of
     * {@code alignment} (address-ordered first fit).
     *
     * @param length    bytes to reserve: positive, a multiple of the granule
     * @param alignment required alignment of the start: a power of two, at least the granule (as an unsigned
     *                  value, so {@code 2^63} is allowed)
     * @return the start of the reserved range, or {@link #NONE} if no free range can hold it (the space is
     *         then unchanged)
     * @throws IllegalArgumentException if {@code length} or {@code alignment} is invalid
     */
    public long allocate(long length, long alignment) {
        checkLength(length);
        if (Long.bitCount(alignment) != 1 || Long.compareUnsigned(alignment, granule) < 0) {
            throw new IllegalArgumentException("alignment=" + hex(alignment) + " must be a power of two >= granule=" + hex(granule));
        }
        Node node = firstFit(root, length, alignment - 1);
        if (node == null) {
            return NONE;
        }
        long offset = node.start + alignPad(node.start, alignment - 1);
        carve(node, offset, length);
        return start + offset;
    }

    /**
     * Reserves exactly {@code [address, address + length)} if all of it is free.
     *
     * @param address first address (unsigned), a multiple of the granule, inside the space
     * @param length  bytes: positive, a multiple of the granule, the range ending inside the space
     * @return {@code true} if the range was free and is now reserved; {@code false} if any part of it was
     *         already reserved (the space is then unchanged)
     * @throws IllegalArgumentException if the range is misaligned, empty, or not inside the space
     */
    public boolean allocateAt(long address, long length) {
        long offset = checkRange(address, length);
        Node node = floor(offset);
        if (node == null || node.length - (offset - node.start) < length) {
            return false;
        }
        carve(node, offset, length);
        return true;
    }

    /**
     * Returns {@code [address, address + length)} to the free space and merges it with free neighbours.
     * The range must be entirely reserved: one whole allocation, part of one, or adjacent ones.
     *
     * @param address first address (unsigned), a multiple of the granule, inside the space
     * @param length  bytes: positive, a multiple of the granule, the range ending inside the space
     * @throws IllegalArgumentException if the range is misaligned, empty, or not inside the space
     * @throws IllegalStateException    if any part of the range is already free (a double free, or a range
     *                                  never reserved); the space is then unchanged
     */
    public void free(long address, long length) {
        long offset = checkRange(address, length);
        long end = offset + length;
        // The free range with the greatest start below end is the only one that could reach into the
        // range: all others with a start below end also end at or before its start.
        Node last = floor(end - 1);
        if (last != null && last.start + last.length > offset) {
            throw new IllegalStateException("not reserved (double free?): address=" + hex(address) + ", length=" + hex(length)
                + " overlaps free range [" + hex(start + last.start) + ", +" + hex(last.length) + ")");
        }
        Node before = last != null && last.start + last.length == offset ? last : null;
        Node after = get(end);
        if (before != null) {
            long merged = before.length + length;
            if (after != null) {
                merged += after.length;
                root = delete(root, after.start);
                freeRangeCount--;
            }
            resize(root, before.start, merged);
        } else if (after != null) {
            long merged = length + after.length;
            root = delete(root, after.start);
            root = insert(root, new Node(offset, merged, priorities.nextInt()));
        } else {
            root = insert(root, new Node(offset, length, priorities.nextInt()));
            freeRangeCount++;
        }
        freeBytes += length;
    }

    /**
     * Tells whether a range is wholly free.
     *
     * @param address first address (unsigned), a multiple of the granule, inside the space
     * @param length  bytes: positive, a multiple of the granule, the range ending inside the space
     * @return {@code true} if every byte of {@code [address, address + length)} is free
     * @throws IllegalArgumentException if the range is misaligned, empty, or not inside the space
     */
    public boolean isFree(long address, long length) {
        long offset = checkRange(address, length);
        Node node = floor(offset);
        return node != null && node.length - (offset - node.start) >= length;
    }

    /** {@return the number of free bytes} */
    public long freeBytes() {
        return freeBytes;
    }

    /** {@return the number of reserved bytes; {@code freeBytes() + allocatedBytes() == length()}} */
    public long allocatedBytes() {
        return length - freeBytes;
    }

    /** {@return the number of maximal free ranges (neighbouring free ranges are always merged)} */
    public int freeRangeCount() {
        return freeRangeCount;
    }

    /**
     * {@return the length of the longest free range, or 0 if the space is full} An allocation of at most
     * this length with {@code alignment == granule} succeeds.
     */
    public long largestFreeRange() {
        return root == null ? 0 : root.max;
    }

    @Override
    public String toString() {
        return "AddressSpaceAllocator[" + hex(start) + ", +" + hex(length) + ") granule=" + hex(granule)
            + " free=" + hex(freeBytes) + " in " + freeRangeCount + " ranges, largest=" + hex(largestFreeRange());
    }

    /**
     * Checks the treap against its invariants: key order, heap order of priorities, the subtree maxima,
     * maximal (never adjacent) free ranges inside the space, and the counters. For tests.
     *
     * @throws AssertionError naming the first broken invariant
     */
    void checkInvariants() {
        long[] totals = new long[3]; // count, bytes, previous end (or -1)
        totals[2] = -1;
        checkSubtree(root, totals);
        if (totals[0] != freeRangeCount || totals[1] != freeBytes) {
            throw new AssertionError("counters: ranges " + totals[0] + " vs " + freeRangeCount + ", bytes " + totals[1] + " vs " + freeBytes);
        }
    }

    private long checkSubtree(Node node, long[] totals) {
        if (node == null) {
            return 0;
        }
        long max = checkSubtree(node.left, totals);
        if ((node.start & granuleMask) != 0 || node.length <= 0 || (node.length & granuleMask) != 0
            || node.length > length - node.start) {
            throw new AssertionError("bad range " + node);
        }
        if (totals[2] >= node.start) {
            throw new AssertionError("range " + node + " not after the previous one, which ends at " + hex(totals[2]));
        }
        if ((node.left != null && node.left.priority > node.priority) || (node.right != null && node.right.priority > node.priority)) {
            throw new AssertionError("heap order broken at " + node);
        }
        totals[0]++;
        totals[1] += node.length;
        totals[2] = node.start + node.length;
        max = Math.max(max, Math.max(node.length, checkSubtree(node.right, totals)));
        if (max != node.max) {
            throw new AssertionError("max " + hex(node.max) + " should be " + hex(max) + " at " + node);
        }
        return max;
    }

    // ---------------------------------------------------------------------------------------------------
    // Carving and validation

    /** Reserves {@code [offset, offset + length)}, which lies inside the free range {@code node}. */
    private void carve(Node node, long offset, long length) {
        long nodeStart = node.start;
        long head = offset - nodeStart;
        long tail = node.length - head - length;
        if (head > 0) {
            resize(root, nodeStart, head);
        } else {
            root = delete(root, nodeStart);
            freeRangeCount--;
        }
        if (tail > 0) {
            root = insert(root, new Node(offset + length, tail, priorities.nextInt()));
            freeRangeCount++;
        }
        freeBytes -= length;
    }

    /** Bytes from {@code offset} up to the next address (not offset) that is a multiple of the alignment. */
    private long alignPad(long offset, long alignMask) {
        return -(start + offset) & alignMask;
    }

    private void checkLength(long length) {
        if (length <= 0 || (length & granuleMask) != 0) {
            throw new IllegalArgumentException("length=" + hex(length) + " must be a positive multiple of granule=" + hex(granule));
        }
    }

    /** Validates a range given by address and returns its offset in the space; offset + length <= this.length. */
    private long checkRange(long address, long length) {
        checkLength(length);
        if ((address & granuleMask) != 0) {
            throw new IllegalArgumentException("address=" + hex(address) + " must be a multiple of granule=" + hex(granule));
        }
        long offset = address - start;
        if (Long.compareUnsigned(offset, this.length) >= 0 || length > this.length - offset) {
            throw new IllegalArgumentException("address=" + hex(address) + ", length=" + hex(length)
                + " is not inside the space [" + hex(start) + ", +" + hex(this.length) + ")");
        }
        return offset;
    }

    private static String hex(long value) {
        return "0x" + Long.toHexString(value);
    }

    // ---------------------------------------------------------------------------------------------------
    // The treap. Keys are offsets from start, in [0, length), so signed comparison is safe here.

    /** One free range {@code [start, start + length)} (offsets) and the largest length in its subtree. */
    private static final class Node {
        final long start;
        long length;
        long max;
        final int priority;
        Node left;
        Node right;

        Node(long start, long length, int priority) {
            this.start = start;
            this.length = length;
            this.max = length;
            this.priority = priority;
        }

        void update() {
            long m = length;
            if (left != null && left.max > m) {
                m = left.max;
            }
            if (right != null && right.max > m) {
                m = right.max;
            }
            max = m;
        }

        @Override
        public String toString() {
            return "[+" + hex(start) + ", +" + hex(length) + ") max=" + hex(max);
        }
    }

    /**
     * The lowest-addressed range in {@code node}'s subtree that holds {@code length} bytes aligned to
     * {@code alignMask + 1}, or null. Subtrees whose longest range is shorter than {@code length} are skipped;
     * a subtree holding a range of at least {@code length + alignment - granule} always succeeds.
     */
    private Node firstFit(Node node, long length, long alignMask) {
        if (node == null || node.max < length) {
            return null;
        }
        Node found = firstFit(node.left, length, alignMask);
        if (found != null) {
            return found;
        }
        if (node.length >= length && alignPad(node.start, alignMask) <= node.length - length) {
            return node;
        }
        return firstFit(node.right, length, alignMask);
    }

    /** The range with the greatest start {@code <= offset}, or null. */
    private Node floor(long offset) {
        Node best = null;
        for (Node node = root; node != null; ) {
            if (node.start <= offset) {
                best = node;
                node = node.right;
            } else {
                node = node.left;
            }
        }
        return best;
    }

    /** The range starting exactly at {@code offset}, or null. */
    private Node get(long offset) {
        Node node = root;
        while (node != null && node.start != offset) {
            node = offset < node.start ? node.left : node.right;
        }
        return node;
    }

    /** Sets the length of the range starting at {@code key} (present) and repairs the maxima on its path. */
    private static void resize(Node node, long key, long length) {
        if (key < node.start) {
            resize(node.left, key, length);
        } else if (key > node.start) {
            resize(node.right, key, length);
        } else {
            node.length = length;
        }
        node.update();
    }

    private static Node insert(Node node, Node x) {
        if (node == null) {
            return x;
        }
        if (x.start < node.start) {
            node.left = insert(node.left, x);
            if (node.left.priority > node.priority) {
                node = rotateRight(node);
            }
        } else {
            node.right = insert(node.right, x);
            if (node.right.priority > node.priority) {
                node = rotateLeft(node);
            }
        }
        node.update();
        return node;
    }

    /** Removes the range starting at {@code key}, which is present. */
    private static Node delete(Node node, long key) {
        if (key == node.start) {
            return merge(node.left, node.right);
        }
        if (key < node.start) {
            node.left = delete(node.left, key);
        } else {
            node.right = delete(node.right, key);
        }
        node.update();
        return node;
    }

    /** Joins two treaps, every key of {@code a} below every key of {@code b}. */
    private static Node merge(Node a, Node b) {
        if (a == null) {
            return b;
        }
        if (b == null) {
            return a;
        }
        if (a.priority > b.priority) {
            a.right = merge(a.right, b);
            a.update();
            return a;
        }
        b.left = merge(a, b.left);
        b.update();
        return b;
    }

    private static Node rotateRight(Node node) {
        Node pivot = node.left;
        node.left = pivot.right;
        node.update();
        pivot.right = node;
        return pivot;
    }

    private static Node rotateLeft(Node node) {
        Node pivot = node.right;
        node.right = pivot.left;
        node.update();
        pivot.left = node;
        return pivot;
    }
}
