package dev.vcmm.ffm;

import dev.vcmm.spi.BlockAllocator;

/**
 * Geometry and off-heap metadata layout of a {@link LockFreeBuddyAllocator}: where every bitmap word of
 * every order lives in the metadata segment. Computed once; immutable.
 *
 * <p><b>Thread-safety:</b> immutable, safe to share.
 *
 * <h2>Indexing</h2>
 * Block {@code i} of order {@code k} covers {@code [origin + (i << (12 + k)), origin + ((i + 1) << (12 + k)))},
 * where {@code origin} is the pool's base rounded down to twice the largest block. Because the origin is
 * aligned to a block of order {@code maxOrder + 1}, the buddy of block {@code i} is block {@code i ^ 1} and
 * both always sit in the same 64-bit word: this is what lets one compare-and-set decide a merge.
 * Blocks that stick out of {@code [base, base + size)} exist in the index space but are never free.
 *
 * <h2>Block words</h2>
 * Each order has one array of <em>block words</em>; word {@code i >>> 5} holds both state bits of block
 * {@code i}, so taking a free block and marking it allocated is one compare-and-set, and so is freeing it
 * (clearing its allocated bit and either setting its free bit or taking its buddy's):
 * <pre>
 *  block word:  63                               32 31                                0
 *              +-----------------------------------+-----------------------------------+
 *              | ALLOCATED: bit 32 + s set iff     | FREE: bit s set iff block 32w + s |
 *              | block 32w + s is handed out with  | is free in the shared pool        |
 *              | this order                        |                                   |
 *              +-----------------------------------+-----------------------------------+
 *  s = i &amp; 31. Never both bits of one block. Neither: the block is part of a larger free or
 *  allocated block, split into smaller ones, parked in a thread cache, or in transit.
 *  A word is <em>empty</em> when its FREE half is zero, whatever its ALLOCATED half holds.
 * </pre>
 *
 * <h2>Metadata segment</h2>
 * <pre>
 *  0            64           64 + S        64 + 16 S
 *  +------------+------------+-----+------------+----------------------------------------
 *  | cache      | events     | ... | events     | order 0 | order 1 | ... | order maxOrder
 *  | credit     | stripe 0   |     | stripe 15  |         |         |     |
 *  +------------+------------+-----+------------+----------------------------------------
 *  cache credit: bytes of the thread-cache budget handed to caches (one word, own line)
 *  events stripe s (S = maxOrder + 1 words rounded up to whole 64-byte lines; a thread uses stripe
 *  threadId mod 16, so threads moving blocks touch only their own lines):
 *  +-----------------------+-----------------------+-----+-----------------------+
 *  | event word of order 0 | event word of order 1 | ... | event word of maxOrder|
 *  +-----------------------+-----------------------+-----+-----------------------+
 *  event word:  63                                24 23                      0
 *              +-----------------------------------+-------------------------+
 *              | brackets ended (wraps at 2^40)    | brackets open now       |
 *              +-----------------------------------+-------------------------+
 *  opening a bracket adds 1; closing it adds 2^24 - 1: the word only ever grows, so a sum of event
 *  words that did not change between two reads proves that no bracket opened or closed in between.
 *
 *  order k region (each array starts on a 64-byte line):
 *  +----------------------------+-----------------+-----------------+-----+
 *  | block words (layer 0)      | hint layer 1    | hint layer 2    | ... |
 *  | word w: blocks 32w..32w+31 | bit j: word j of| bit j: word j of|     |
 *  | (free and allocated bits)  | layer 0 may be  | layer 1 may be  |     |
 *  | words(k) longs, padded to  | non-empty       | non-zero        |     |
 *  +----------------------------+-----------------+-----------------+-----+
 *   64 words; stored spread     ceil(words/64)    ...until a layer fits in one line (TOP_WORDS
 *   when caches are off                           words, the top, scanned word by word); none
 *                                                 if there is a single block word
 *
 *  spread storage of a group of 64 block words (one hint word's worth), word index w = 8a + b:
 *    line 0: w0  w8  w16 ... w56      a thread that follows hint bit 0 touches line 0 only, one that
 *    line 1: w1  w9  w17 ... w57      follows hint bit 1 touches line 1 only, and so on
 *    ...
 *    line 7: w7  w15 w23 ... w63
 * </pre>
 * With thread caches on, block words are stored in plain order instead: a thread's private 2 MiB arena
 * then owns two whole lines of the order-0 words, which its cache hits mark and unmark (spreading them
 * put neighbouring arenas on shared lines and cost 2-threaded cache hits several times).
 *
 * <p>A 64 GiB pool with 4 KiB..1 GiB orders needs about 8 MiB of block words and 1/64 of that for
 * hints: {@code ~ size / 4096 / 2} bytes in all (two state bits per 4 KiB page at order 0, and as many
 * again for the higher orders together).
 */
final class BuddyLayout {

    static final int CACHE_LINE = 64;
    /** The bytes of thread-cache budget currently handed out to caches. */
    static final long CACHE_CREDIT_OFFSET = 0;
    /** Stripes of the event words, picked by thread id; each stripe starts on its own cache line. */
    static final int EVENT_STRIPES = 16;
    static final long EVENTS_OFFSET = CACHE_LINE;
    /** An event word's low bits count open brackets; closing one adds {@code EVENT_CLOSE}. */
    static final int EVENT_OPEN_BITS = 24;
    static final long EVENT_OPEN_MASK = (1L << EVENT_OPEN_BITS) - 1;
    static final long EVENT_OPEN = 1;
    static final long EVENT_CLOSE = (1L << EVENT_OPEN_BITS) - 1;

    /** Blocks per block word, and its log. */
    static final int BLOCKS_PER_WORD = 32;
    static final int WORD_SHIFT = 5;
    /** The FREE half of a block word. */
    static final long FREE_MASK = 0xFFFF_FFFFL;

    final long base;
    final long end;
    final long origin;
    final int maxOrder;
    /** layerOffset[k][layer]: byte offset of the layer's first word; layer 0 is the block words. */
    final long[][] layerOffset;
    /** The top hint layer has at most this many words (one cache line), scanned in order. */
    static final int TOP_WORDS = 8;

    /** words[k]: number of block words of order k. */
    final long[] words;
    /** paddedWords[k]: words[k] rounded up to a whole group of 64 words: the array's physical length. */
    final long[] paddedWords;
    /** topWords[k]: the number of words of the top layer of order k, in {@code [1, TOP_WORDS]}. */
    final int[] topWords;
    final long totalBytes;
    /** Bytes between the starts of two event stripes: {@code maxOrder + 1} words rounded up to whole lines. */
    final long stripeBytes;

    /** Whether the block words are stored spread (thread caches off) or in plain order (caches on). */
    final boolean spread;

    BuddyLayout(long base, long size, int requestedMaxOrder, boolean spread) {
        this.spread = spread;
        this.base = base;
        this.end = base + size;
        int fit = 63 - Long.numberOfLeadingZeros(size >>> BlockAllocator.PAGE_SHIFT);
        this.maxOrder = Math.min(requestedMaxOrder, fit);
        this.origin = base & -(2L << (BlockAllocator.PAGE_SHIFT + maxOrder));
        this.layerOffset = new long[maxOrder + 1][];
        this.words = new long[maxOrder + 1];
        this.paddedWords = new long[maxOrder + 1];
        this.topWords = new int[maxOrder + 1];
        this.stripeBytes = alignLine((maxOrder + 1L) * Long.BYTES);
        long offset = EVENTS_OFFSET + EVENT_STRIPES * stripeBytes;
        for (int k = 0; k <= maxOrder; k++) {
            int shift = BlockAllocator.PAGE_SHIFT + k;
            long blocks = ((end - origin) + (1L << shift) - 1) >>> shift;
            long w = (blocks + BLOCKS_PER_WORD - 1) >>> WORD_SHIFT;
            words[k] = w;
            paddedWords[k] = (w + 63) & -64L;
            int layers = 1;
            long top = w;
            if (w > 1) { // hint layers until one fits in a line
                do {
                    top = (top + 63) >>> 6;
                    layers++;
                } while (top > TOP_WORDS);
            }
            topWords[k] = (int) top;
            long[] offsets = new long[layers];
            long n = w;
            for (int layer = 0; layer < layers; layer++) {
                offsets[layer] = offset;
                offset = alignLine(offset + (layer == 0 ? paddedWords[k] : n) * Long.BYTES);
                n = (n + 63) >>> 6;
            }
            layerOffset[k] = offsets;
        }
        this.totalBytes = offset;
    }

    private static long alignLine(long offset) {
        return (offset + CACHE_LINE - 1) & -CACHE_LINE;
    }

    /** {@return the byte offset of the event word of order {@code k} in {@code stripe}} */
    long eventWord(int stripe, int k) {
        return EVENTS_OFFSET + stripe * stripeBytes + ((long) k << 3);
    }

    /** {@return the index of the order-{@code k} block starting at {@code pa}} */
    long index(long pa, int k) {
        return (pa - origin) >>> (BlockAllocator.PAGE_SHIFT + k);
    }

    /** {@return the physical address of block {@code index} of order {@code k}} */
    long address(long index, int k) {
        return origin + (index << (BlockAllocator.PAGE_SHIFT + k));
    }

    /**
     * @return the physical position of logical block word {@code w} when spread: within each group of 64
     * words (the words one hint word covers), word {@code 8a + b} is stored at {@code 8b + a}, so the 8
     * consecutive words of 8 neighbouring hint bits lie on 8 different cache lines. Threads that pick
     * different hint bits then never share a line of block words. An involution on each group.
     */
    static long spreadWord(long w) {
        return (w & ~63L) | ((w & 7) << 3) | ((w >>> 3) & 7);
    }

    /** @return the byte offset of logical block word {@code w} of order {@code k}. */
    long wordAt(int k, long w) {
        return layerOffset[k][0] + ((spread ? spreadWord(w) : w) << 3);
    }

    /** @return the byte offset of the block word holding block {@code index} of order {@code k}. */
    long word(int k, long index) {
        return wordAt(k, index >>> WORD_SHIFT);
    }

    /** @return the FREE bit of block {@code index} in its block word. */
    static long freeBit(long index) {
        return 1L << (index & (BLOCKS_PER_WORD - 1));
    }

    /** @return the ALLOCATED bit of block {@code index} in its block word. */
    static long allocBit(long index) {
        return 1L << (BLOCKS_PER_WORD + (index & (BLOCKS_PER_WORD - 1)));
    }
}
