package dev.vcmm;

import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemorySpec;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A physical allocation: chunks {@code (pa, order)} taken from one {@link MemoryType} by
 * {@link MemoryType#physAlloc(long, ChunkPolicy, PhysAllocOptions)}, in the order they cover the
 * buffer (byte {@code 0} of the buffer is the first byte of the first chunk).
 *
 * <p><b>Thread-safety:</b> immutable apart from its state (backing count, freed); every method may be called from any
 * thread. {@link #free()} is atomic: of concurrent calls exactly one frees the chunks and the others
 * get an {@link IllegalStateException}. Reading the chunks of a freed allocation is allowed (they
 * describe memory that is no longer the caller's).
 */
public final class PhysMem {

    /**
     * One naturally aligned block of physical memory.
     *
     * <p><b>Thread-safety:</b> immutable.
     *
     * @param pa    physical address of the first byte, a multiple of {@link #size()}
     * @param order block order: the chunk is {@code 4096 << order} bytes
     */
    public record Chunk(long pa, int order) {

        /**
         * Checks the chunk.
         *
         * @throws IllegalArgumentException if the order is out of range or {@code pa} is negative or misaligned
         */
        public Chunk {
            if (order < 0 || order > MemorySpec.MAX_MAX_ORDER) {
                throw new IllegalArgumentException("order=" + order + " must be in [0, " + MemorySpec.MAX_MAX_ORDER + "]");
            }
            if (pa < 0 || (pa & (BlockAllocator.orderSize(order) - 1)) != 0) {
                throw new IllegalArgumentException("pa=" + Sizes.hex(pa) + " must be non-negative and aligned to its size "
                    + Sizes.format(BlockAllocator.orderSize(order)));
            }
        }

        /** {@return the number of bytes, {@code 4096 << order}.} */
        public long size() {
            return BlockAllocator.orderSize(order);
        }

        /** {@return the physical address one past the last byte.} */
        public long end() {
            return pa + size();
        }

        @Override
        public String toString() {
            return Sizes.hex(pa) + "/" + Sizes.format(size());
        }
    }

    private final MemoryType memoryType;
    private final long requestedLength;
    private final ChunkPolicy policy;
    private final PhysAllocOptions options;
    /** The chunks packed one per long, {@code pa | order} (pa is page aligned): 8 bytes a chunk, not a record. */
    private final long[] packed;
    /** {@link #chunks()}: a read-only view over {@link #packed}. */
    private final List<Chunk> chunks;
    /** Start offset of each chunk in the buffer, ascending; for the binary search of {@link #physicalAddress}. */
    private final long[] offsets;
    private final long length;
    private final boolean contiguous;
    /** What the allocator handed out and takes back: usually {@link #chunks}, one larger block if untrimmed. */
    private final List<Chunk> blocks;
    /** -1: freed; n >= 0: the number of reservations it backs (a freed allocation backs nothing). */
    private final AtomicInteger state = new AtomicInteger();
    /**
     * Its record in the reverse map while it backs something, else null: installed by CAS and changed only by
     * {@link ReverseMap} (so finding it is one load, whatever the number of live allocations).
     */
    volatile ReverseMap.Registered registration;

    /** CAS on {@link #registration}. */
    static final java.lang.invoke.VarHandle REGISTRATION;

    static {
        try {
            REGISTRATION = java.lang.invoke.MethodHandles.lookup().findVarHandle(PhysMem.class, "registration",
                ReverseMap.Registered.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    PhysMem(MemoryType memoryType, long requestedLength, ChunkPolicy policy, PhysAllocOptions options,
            List<Chunk> chunks, List<Chunk> blocks) {
        this(memoryType, requestedLength, policy, options, pack(chunks), blocks == chunks ? null : List.copyOf(blocks));
    }

    /**
     * @param packed the chunks, {@code pa | order} each; owned by the new allocation from here on
     * @param blocks what the allocator handed out, or {@code null} if it is the chunks themselves
     */
    PhysMem(MemoryType memoryType, long requestedLength, ChunkPolicy policy, PhysAllocOptions options,
            long[] packed, List<Chunk> blocks) {
        this.memoryType = memoryType;
        this.requestedLength = requestedLength;
        this.policy = policy;
        this.options = options;
        this.packed = packed;
        this.chunks = new ChunkView();
        this.blocks = blocks == null ? this.chunks : blocks;
        this.offsets = new long[packed.length];
        long offset = 0;
        boolean adjacent = true;
        for (int i = 0; i < offsets.length; i++) {
            offsets[i] = offset;
            long size = BlockAllocator.orderSize(chunkOrder(i));
            offset += size;
            if (i > 0 && chunkPa(i) != chunkPa(i - 1) + BlockAllocator.orderSize(chunkOrder(i - 1))) {
                adjacent = false;
            }
        }
        this.length = offset;
        this.contiguous = adjacent;
    }

    private static long[] pack(List<Chunk> chunks) {
        long[] packed = new long[chunks.size()];
        for (int i = 0; i < packed.length; i++) {
            Chunk c = chunks.get(i);
            packed[i] = c.pa() | c.order();
        }
        return packed;
    }

    /** {@return the memory type the chunks came from.} */
    public MemoryType memoryType() {
        return memoryType;
    }

    /** {@return the bytes covered by the chunks: the requested length rounded up to the policy's chunk size.} */
    public long length() {
        return length;
    }

    /** {@return the length the caller asked for, at most {@link #length()}.} */
    public long requestedLength() {
        return requestedLength;
    }

    /** {@return the policy the chunks were chosen by.} */
    public ChunkPolicy policy() {
        return policy;
    }

    /** {@return the options the allocation was made with.} */
    public PhysAllocOptions options() {
        return options;
    }

    /** {@return the chunks in buffer order, an unmodifiable list (its records are made on access).} */
    public List<Chunk> chunks() {
        return chunks;
    }

    /**
     * A physically contiguous run of the buffer: adjacent chunks merged.
     *
     * <p><b>Thread-safety:</b> immutable.
     *
     * @param offset the offset in the buffer (or the window asked for) of the run's first byte
     * @param pa     the physical address of that byte
     * @param length the run's length in bytes
     */
    public record Run(long offset, long pa, long length) {
    }

    /** Receives the runs of a window, see {@link #forEachRun}. */
    @FunctionalInterface
    interface RunVisitor {
        /** @param offset in the window; @param pa of that byte; @param length of the run */
        void run(long offset, long pa, long length);
    }

    /** {@return the physically contiguous runs of the whole buffer, in buffer order (adjacent chunks merged)} */
    public List<Run> runs() {
        return runs(0, length);
    }

    /**
     * {@return the physically contiguous runs of {@code [offset, offset + length)}, each with its offset in that
     *         window, adjacent chunks merged}
     *
     * @param offset the offset in bytes
     * @param length the length in bytes
     * @throws IllegalArgumentException if the window is not inside the buffer
     */
    public List<Run> runs(long offset, long length) {
        List<Run> out = new ArrayList<>();
        forEachRun(offset, length, (o, pa, n) -> out.add(new Run(o, pa, n)));
        return out;
    }

    /**
     * Visits the physically contiguous runs of {@code [offset, offset + length)} in order, adjacent chunks merged,
     * with no allocation per run: the back path maps each run with one call.
     */
    void forEachRun(long offset, long length, RunVisitor visitor) {
        if (offset < 0 || length <= 0 || offset > this.length - length) {
            throw new IllegalArgumentException("window offset=" + offset + " length=" + length + " is outside " + this);
        }
        int i = Arrays.binarySearch(offsets, offset);
        if (i < 0) {
            i = -i - 2;
        }
        long end = offset + length;
        long runOffset = -1;
        long runPa = 0;
        long runLength = 0;
        for (; i < offsets.length && offsets[i] < end; i++) {
            long from = Math.max(offsets[i], offset);
            long to = Math.min(offsets[i] + BlockAllocator.orderSize(chunkOrder(i)), end);
            long pa = chunkPa(i) + (from - offsets[i]);
            if (runOffset >= 0 && runPa + runLength == pa) { // the adjacency rule of runLast
                runLength += to - from;
            } else {
                if (runOffset >= 0) {
                    visitor.run(runOffset, runPa, runLength);
                }
                runOffset = from - offset;
                runPa = pa;
                runLength = to - from;
            }
        }
        visitor.run(runOffset, runPa, runLength);
    }

    /**
     * @return the index of the last chunk of the physically contiguous run that starts at chunk {@code i}, not going
     *         past the chunk that holds byte {@code end - 1} of the buffer
     */
    int runLast(int i, long end) {
        while (i + 1 < packed.length && offsets[i + 1] < end
            && chunkPa(i + 1) == chunkPa(i) + BlockAllocator.orderSize(chunkOrder(i))) {
            i++;
        }
        return i;
    }

    /** @return the index of the chunk holding byte {@code offset} of the buffer, which must be inside it */
    int chunkIndexAt(long offset) {
        if (offset == 0) {
            return 0; // the usual case: a whole buffer from its start
        }
        int i = Arrays.binarySearch(offsets, offset);
        return i < 0 ? -i - 2 : i;
    }

    /** @return the offset in the buffer of chunk {@code i}'s first byte */
    long chunkOffset(int i) {
        return offsets[i];
    }

    /** @return the physical address of chunk {@code i} */
    long chunkPa(int i) {
        return packed[i] & ~(BlockAllocator.PAGE_SIZE - 1);
    }

    /** @return the order of chunk {@code i} */
    int chunkOrder(int i) {
        return (int) (packed[i] & (BlockAllocator.PAGE_SIZE - 1));
    }

    /** The chunks as records, made on access from {@link #packed}. */
    private final class ChunkView extends java.util.AbstractList<Chunk> implements java.util.RandomAccess {
        @Override
        public Chunk get(int i) {
            return new Chunk(chunkPa(i), chunkOrder(i));
        }

        @Override
        public int size() {
            return packed.length;
        }
    }

    /** {@return the number of chunks.} */
    public int chunkCount() {
        return packed.length;
    }

    /**
     * {@return {@code true} if the chunks form one physically contiguous range, whether that was asked for
     *         ({@link PhysAllocOptions#contiguous()}, always {@code true} then) or happened by chance}
     */
    public boolean isContiguous() {
        return contiguous;
    }

    /**
     * Translates an offset in the buffer to the physical address of that byte.
     *
     * @param offset in {@code [0, length())}
     * @return the physical address of byte {@code offset}
     * @throws IllegalArgumentException if {@code offset} is outside the buffer
     */
    public long physicalAddress(long offset) {
        if (offset < 0 || offset >= length) {
            throw new IllegalArgumentException("offset=" + offset + " must be in [0, length=" + length + ")");
        }
        int i = Arrays.binarySearch(offsets, offset);
        if (i < 0) {
            i = -i - 2; // the chunk starting before the insertion point
        }
        return chunkPa(i) + (offset - offsets[i]);
    }

    /** {@return {@code true} once the allocation has been freed.} */
    public boolean isFreed() {
        return state.get() < 0;
    }

    /**
     * Gives the chunks back to the memory type; the same as {@code memoryType().physFree(this)}.
     *
     * @throws IllegalStateException if already freed, or the memory type is closed
     */
    public void free() {
        memoryType.physFree(this);
    }

    /** @return the blocks to give back to the allocator. */
    /** @return whether the allocator handed out exactly the chunks (no larger untrimmed block) */
    boolean blocksAreChunks() {
        return blocks == chunks;
    }

    /** @return the chunks packed {@code pa | order}: the allocation's own array, not to be written */
    long[] packedChunks() {
        return packed;
    }

    List<Chunk> blocks() {
        return blocks;
    }

    /** State bit: the owner let go while the allocation still backed reservations; the last unback frees it. */
    private static final int ORPHAN = 1 << 30;
    private static final int COUNT = ORPHAN - 1;

    /**
     * Marks the allocation freed if it backs nothing.
     *
     * @throws IllegalStateException if it was already freed, or still backs a reservation (the RFC's -EBUSY)
     */
    void markFreed() {
        for (int s = state.get(); ; s = state.get()) {
            if (s < 0) {
                throw new IllegalStateException("already freed: " + this);
            }
            if ((s & COUNT) > 0) {
                throw new VcmmBusyException("busy: " + this + " still backs " + (s & COUNT) + " reservation(s); unback them first");
            }
            if (state.compareAndSet(s, -1)) {
                return;
            }
        }
    }

    /**
     * The owner lets go (a {@link Client} is released): frees the allocation now if it backs nothing, or
     * else marks it so that the unback of its last reservation frees it. Already freed: nothing to do.
     */
    void freeOrOrphan() {
        for (int s = state.get(); ; s = state.get()) {
            if (s < 0 || (s & ORPHAN) != 0) {
                return;
            }
            if ((s & COUNT) == 0) {
                if (state.compareAndSet(s, -1)) {
                    memoryType.giveBackFreed(this);
                    return;
                }
            } else if (state.compareAndSet(s, s | ORPHAN)) {
                return;
            }
        }
    }

    /** Counts one more reservation backed by this allocation. @throws IllegalStateException if it was freed */
    void acquireBacking() {
        for (int s = state.get(); ; s = state.get()) {
            if (s < 0) {
                throw new IllegalStateException("use after free: " + this + " was freed");
            }
            if (state.compareAndSet(s, s + 1)) {
                return;
            }
        }
    }

    /** Counts one reservation fewer; the last one frees an orphaned allocation. */
    void releaseBacking() {
        for (int s = state.get(); ; s = state.get()) {
            if ((s & COUNT) == 1 && (s & ORPHAN) != 0) {
                if (state.compareAndSet(s, -1)) {
                    memoryType.giveBackFreed(this);
                    return;
                }
            } else if (state.compareAndSet(s, s - 1)) {
                return;
            }
        }
    }

    /** {@return how many reservations this allocation backs now.} */
    public int backingCount() {
        int s = state.get();
        return s < 0 ? 0 : s & COUNT;
    }

    /** @return e.g. {@code PhysMem[ddr 17M+68K as 1x16M+1x1M+1x64K+1x4K, scattered, first pa=0x80000000]}. */
    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder("PhysMem[").append(memoryType.name()).append(' ')
            .append(Sizes.format(length)).append(" as ");
        int i = 0;
        boolean first = true;
        while (i < chunks.size()) {
            int order = chunks.get(i).order();
            int run = 0;
            while (i < chunks.size() && chunks.get(i).order() == order) {
                run++;
                i++;
            }
            sb.append(first ? "" : "+").append(run).append('x').append(Sizes.format(BlockAllocator.orderSize(order)));
            first = false;
        }
        sb.append(contiguous ? ", contiguous" : ", scattered");
        if (!chunks.isEmpty()) {
            sb.append(", first pa=").append(Sizes.hex(chunks.getFirst().pa()));
        }
        if (state.get() < 0) {
            sb.append(", freed");
        }
        return sb.append(']').toString();
    }
}
